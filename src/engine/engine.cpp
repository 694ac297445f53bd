#include "engine/engine.hpp"

#include "core/failover_slots.hpp"
#include "core/patroni_parameters.hpp"
#include "core/json_text.hpp"

#include <zookeeper/zookeeper.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <string>
#include <vector>

#include "core/patroni_codec.hpp"
#include "core/timeutil.hpp"

namespace pgha {

// A change members/<me> shows is decided on (and published) at most this often.
constexpr std::int64_t kPublishChangeEveryMs = 250;

namespace {

ApiServerOptions api_options(const EngineSettings &s) {
    ApiServerOptions o;
    o.auth_username = s.restapi_username;
    o.auth_password = s.restapi_password;
    o.certfile = s.restapi_certfile;
    o.keyfile = s.restapi_keyfile;
    o.keyfile_password = s.restapi_keyfile_password;
    o.cafile = s.restapi_cafile;
    o.verify_client = s.restapi_verify_client.empty() ? "none" : s.restapi_verify_client;
    o.allow_unauthenticated = s.restapi_allow_unauthenticated;
    o.allowlist = s.restapi_allowlist;
    o.allowlist_include_members = s.restapi_allowlist_include_members;
    return o;
}

// What the operator should hear about the REST API's access control at start.
std::vector<std::string> api_security_warnings(const EngineSettings &s) {
    std::vector<std::string> w;
    const bool certs = !s.restapi_certfile.empty() && (s.restapi_verify_client == "optional" ||
                                                       s.restapi_verify_client == "required");
    if (s.restapi_username.empty() && !s.restapi_password.empty())
        w.push_back("WARNING: pg_ha.restapi_password is set but pg_ha.restapi_username is empty: no credentials are "
                    "configured");
    if (s.restapi_allow_unauthenticated && s.restapi_username.empty() && !certs)
        w.push_back("WARNING: pg_ha.restapi_allow_unauthenticated = on: anyone who reaches " + s.api_listen +
                    " may restart, reinitialize, fail over or reconfigure this node (POST/PATCH/PUT/DELETE without "
                    "credentials)");
    else if (s.restapi_username.empty() && !certs)
        w.push_back("the REST API refuses unsafe methods (401): no pg_ha.restapi_username/restapi_password or client "
                    "certificates are configured");
    if (!s.restapi_username.empty() && s.restapi_certfile.empty() && !s.restapi_allow_http_credentials)
        w.push_back("WARNING: REST API credentials are configured but this cluster speaks plain http: calls to other "
                    "members that need them (failsafe heartbeats, forwarded restarts) are refused unless "
                    "pg_ha.restapi_allow_http_credentials = on");
    return w;
}

}  // namespace

std::int64_t wall_clock_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

Engine::Engine(const EngineSettings &s, EngineDeps deps)
    : s_(s),
      clock_(deps.clock),
      wall_clock_(deps.wall_clock),
      http_(deps.http),
      zk_(std::move(deps.zk)),
      bg_(waker_, deps.inline_background),
      bg_sql_(deps.sql()),
      link_(*zk_, s_, out_, clock_),
      local_(deps.sql(), s_, out_, clock_),
      leadership_(s_, link_, out_, bg_, http_, clock_),
      desk_(s_, link_, local_, leadership_, out_, bg_, http_, clock_, wall_clock_, waker_),
      handover_(s_.node_name, link_, local_, leadership_, out_, bg_, *bg_sql_, clock_),
      sync_(s_.node_name, link_, local_, out_, clock_),
      slots_(s_.node_name, link_, local_, out_, clock_),
      publisher_(s_),
      management_(desk_.queue(), leadership_.failsafe_box(), clock_, wall_clock_) {
    const std::string kept = leadership_.failsafe_box().load(clock_(), wall_clock_());
    if (!kept.empty()) out_.log(kept);
    if (deps.serve_api) {
        api_ = std::make_unique<ApiServer>(api_options(s_));
        api_->set_management_hook(
            [this](const NodeSnapshot *snap, const HttpRequestView &req) { return management_.handle(snap, req); });
    }
}

Engine::~Engine() {
    if (api_) api_->stop();
    bg_.stop();
}

void Engine::set_tags(const Tags &tags) {
    if (tags == s_.tags) return;
    s_.tags = tags;
    s_.nofailover = tags.nofailover;
    s_.noloadbalance = tags.noloadbalance;
    s_.nosync = tags.nosync;
    s_.clonefrom = tags.clonefrom;
    out_.log("member tags changed by a configuration reload: " + tags.to_json().dump());
}

void Engine::shutdown(bool release) {
    if (api_) api_->stop();
    bg_.stop();
    if (release) leadership_.disarm_watchdog_on_exit();  // magic close: a clean stop must not reset the host
    // A stopping primary keeps its lock: the worker exits before the shutdown
    // checkpoint is written and streamed, and a standby that took over now
    // would fork before it (the old primary would need a rewind). Restarted
    // within ttl, the node resumes the session and leads on; otherwise the
    // session expires after ttl and the standbys, which by then have all WAL,
    // race for the lock. A stop for good (`pg_hactl stop`: the systemd
    // unit's ExecStop, the container's stop) closes the saved session once the
    // shutdown checkpoint is written, so the lock goes at once. To move the
    // primary with no write refused, use a switchover.
    // A standby's clean stop leaves the cluster at once.
    // A demoted node (Outbox::keep_session_on_exit) comes back at once as a
    // standby and resumes its session.
    link_.shutdown(release, (leadership_.is_leader() && !handover_.active()) || out_.keep_session_on_exit);
}

void Engine::wait_interest(int &zk_fd, bool &zk_read, bool &zk_write, int &wake_fd, long &timeout_ms) {
    link_.wait_interest(zk_fd, zk_read, zk_write, timeout_ms);
    wake_fd = waker_.fd();
    if (handover_.active() || desk_.busy() || desk_.delivering() || recheck_soon_) timeout_ms = std::min<long>(timeout_ms, 10);
    // A promotion under way: the worker wakes the startup process every step
    // (see StepResult::promoting), and the end of the promotion is seen
    // (nothing announces it) and published at once.
    if (promoting(clock_())) timeout_ms = std::min<long>(timeout_ms, 20);
    if (publish_due_)
        timeout_ms = std::min<long>(timeout_ms, std::max<long>(1, publish_decided_ms_ + kPublishChangeEveryMs - clock_()));
    if (stream_retry_wanted())
        timeout_ms = std::min<long>(timeout_ms, std::max<long>(1, stream_retry_ms_ + kStreamRetryEveryMs - clock_()));
    if (bg_.pending() > 0 && api_ == nullptr) timeout_ms = 0;  // inline jobs (tests) signal nothing
    timeout_ms = std::max<long>(0, std::min<long>(timeout_ms, 1000));
}

void Engine::ensure_api(std::int64_t now) {
    if (!api_ || api_started_ || now < api_retry_ms_) return;
    std::string err;
    if (api_->start(s_.api_listen, publisher_.box(), err)) {
        api_started_ = true;
        api_served_seen_ = api_->requests_served();
        api_next_check_ms_ = now + 5000;
        out_.log("REST API listening on " + s_.api_listen);
        if (!api_warned_) {
            api_warned_ = true;
            for (const std::string &w : api_security_warnings(s_)) out_.log(w);
        }
    } else {
        out_.log("cannot start the REST API on " + s_.api_listen + ": " + err + "; retrying in 10 s");
        api_retry_ms_ = now + 10000;
    }
}

// The HTTP threads are alive when they answer someone: HAProxy's checks, or
// our own /liveness probe when nobody else got an answer for 5 s. Three
// checks 5 s apart without a single answer (a dead or stuck server): restart
// the REST API.
void Engine::watch_api(std::int64_t now) {
    if (!api_ || !api_started_ || now < api_next_check_ms_) return;
    api_next_check_ms_ = now + 5000;
    const std::uint64_t served = api_->requests_served();
    if (served != api_served_seen_ && api_->alive()) {
        api_served_seen_ = served;
        api_failed_checks_ = 0;
        return;
    }
    if (!api_->alive() || ++api_failed_checks_ >= 3) {
        out_.log(api_->alive() ? "the REST API answered nothing for 15 s, not even its own /liveness probe: restarting it"
                               : "the REST API server stopped: restarting it");
        api_->stop();
        api_started_ = false;
        api_failed_checks_ = 0;
        return;
    }
    if (s_.restapi_verify_client == "required") {
        api_failed_checks_ = 0;  // no client certificate to probe with: trust the listener
        return;
    }
    // Fire and forget: an answer shows as a served request at the next check.
    PeerRequest r = peer_request(s_, s_.node_name, s_.api_scheme() + "://" + s_.api_connect_address + "/liveness");
    r.insecure = true;  // liveness only; nothing secret is sent
    PeerHttp http = http_;
    bg_.submit([r, http]() -> Background::Continuation {
        http({r}, 2000);
        return nullptr;
    });
}

bool Engine::lease_grace(std::int64_t now) const {
    return lease_lapsed_ms_ != 0 && link_.connected() &&
           now - lease_lapsed_ms_ < link_.view().config.retry_timeout_ms;
}

// A leader whose lease ran out cannot trust a view the ZooKeeper leader did
// not confirm (reads may come from a follower cut off from it): it decides as
// without ZooKeeper, which fences.
bool Engine::dcs_confirmed() const {
    return link_.dcs_ok() && !(leadership_.is_leader() && !leadership_.lease_valid());
}

Observation Engine::observe(const LocalState &ls) {
    const std::int64_t now = clock_();
    const ClusterView &view = link_.view();
    Observation obs;
    obs.me = s_.node_name;
    obs.tags = s_.tags;
    obs.role = local_.role();
    obs.running = local_.probe_ok();
    obs.local = ls;
    obs.dcs_ok = dcs_confirmed();
    obs.session_id = link_.session_id();
    obs.lease_valid = leadership_.lease_valid();
    obs.lease_grace = lease_grace(now);
    obs.status_due = status_written_ms_ == 0 || now - status_written_ms_ >= view.config.loop_wait_ms;
    obs.was_leader = leadership_.is_leader();
    obs.cluster = view;
    if (view.config.failsafe_mode) obs.failsafe_leader = leadership_.failsafe_box().active(now);
    if (!leadership_.is_leader()) obs.cannot_lead = leadership_.cannot_lead();
    obs.not_streaming_s = local_.not_streaming_s();
    obs.streaming = local_.sample().walreceiver_streaming;
    obs.leader_for_ms = leadership_.leader_for_ms();
    obs.recovering_s = local_.recovering_s();
    obs.start_timeout_s = local_.start_timeout_s();
    if (obs.dcs_ok) obs.name_conflict = link_.name_conflict();
    if (view.failover && !view.failover->scheduled_at.empty()) {
        std::int64_t when = 0;
        std::string err;
        obs.failover_due = parse_iso8601(view.failover->scheduled_at, when, err) && when <= std::time(nullptr);
    }
    return obs;
}

// The config key's postgresql.parameters on this member (Patroni's
// precedence: the local settings file wins, shell commands only where
// pg_ha.dcs_shell_parameters allows them), through set_parameters, whenever
// they change. Restart-only ones then show as pending_restart.
void Engine::apply_cluster_parameters() {
    const ClusterView &view = link_.view();
    if (!local_.probe_ok() || !view.config_present || !view.config.raw.is_object()) return;
    std::string wanted = "{}";
    if (auto pg = view.config.raw.find("postgresql"); pg != view.config.raw.end() && pg->is_object())
        if (auto p = pg->find("parameters"); p != pg->end()) wanted = p->dump();
    // While failover logical slots are kept, their parameters are pg_ha's,
    // not the config key's: turning that on or off applies again.
    const int version = local_.sample().server_version;
    if (failover_slots_active(version, view.config)) wanted += " +failover slots";
    if (wanted == applied_parameters_) return;  // (empty at start: the first pass always runs)
    std::set<std::string> local;
    std::string error;
    if (!local_.local_parameter_names(local, error)) {
        out_.log("cannot read the local configuration's parameters: " + error);
        return;
    }
    applied_parameters_ = wanted;
    std::vector<std::string> keep, removed;
    const ClusterParameters cp = member_parameters(view.config, local, s_.dcs_shell_parameters, version, keep);
    for (const auto &why : cp.skipped) out_.log("config key postgresql.parameters." + why);
    // Parameters taken out of the config key (or now set locally) go back to
    // the server's default or the local value.
    if (!local_.remove_other_parameters(keep, removed, error)) {
        out_.log("cannot remove parameters no longer in the config key: " + error);
        applied_parameters_.clear();  // try again next loop
    } else if (!removed.empty()) {
        std::string list;
        for (const auto &n : removed) list += (list.empty() ? "" : ", ") + n;
        out_.log("removed parameters no longer in the config key's postgresql.parameters: " + list);
    }
    if (cp.apply.empty()) return;
    std::string names;
    for (const auto &kv : cp.apply) names += (names.empty() ? "" : ", ") + kv.first;
    if (local_.set_parameters(cp.apply, error)) {
        out_.log("applied the config key's postgresql.parameters: " + names);
        return;
    }
    // One bad parameter must not keep the others out.
    for (const auto &kv : cp.apply)
        if (!local_.set_parameters({kv}, error)) out_.log("cannot apply postgresql.parameters." + kv.first + ": " + error);
}

// The config key's postgresql.pg_hba becomes this member's pg_hba.conf when
// pg_ha.dcs_pg_hba allows it (like shell parameters, an opening anyone who
// can write the znode would otherwise have). Applied when it changes; a
// failure is retried only when the key changes again.
void Engine::apply_cluster_pg_hba() {
    const ClusterView &view = link_.view();
    if (!local_.probe_ok() || !view.config_present || !view.config.raw.is_object()) return;
    const nlohmann::json *hba = nullptr;
    if (auto pg = view.config.raw.find("postgresql"); pg != view.config.raw.end() && pg->is_object())
        if (auto h = pg->find("pg_hba"); h != pg->end() && !h->is_null()) hba = &*h;
    const std::string wanted = hba ? hba->dump() : std::string();
    if (wanted == applied_pg_hba_) return;
    applied_pg_hba_ = wanted;
    if (!hba) return;  // taken out: pg_hba.conf stays as it is
    std::vector<std::string> lines;
    std::string error;
    if (!parse_pg_hba_lines(*hba, lines, error)) {
        out_.log("config key postgresql.pg_hba is not applied: " + error);
        return;
    }
    if (!s_.dcs_pg_hba) {
        out_.log("config key postgresql.pg_hba is not applied on this member: pg_ha.dcs_pg_hba is off");
        return;
    }
    if (local_.write_pg_hba(lines, error))
        out_.log("pg_hba.conf written from the config key's postgresql.pg_hba (" + std::to_string(lines.size()) +
                 " lines) and reloaded");
    else out_.log("config key postgresql.pg_hba is not applied: " + error);
}

void Engine::decide_and_act() {
    local_.probe();
    apply_cluster_parameters();
    apply_cluster_pg_hba();
    LocalState ls = local_.state();
    leadership_.failsafe_tick(local_.role(), dcs_confirmed());
    Observation obs = observe(ls);
    Decision d = decide(obs);
    if (d.has(ActionKind::AcquireLeader) && obs.role == LocalRole::Standby) {
        // Failover race: confirm over the peers' APIs before taking the lock
        // (off the loop; we decide again when the answers are in).
        if (leadership_.peers_ready(obs)) d = decide(obs);
        else d.actions.erase(std::remove_if(d.actions.begin(), d.actions.end(),
                                            [](const Action &a) { return a.kind == ActionKind::AcquireLeader; }),
                             d.actions.end());
    }
    if (d.message != message_) out_.log(d.message);
    message_ = d.message;
    role_ = d.role;
    recheck_soon_ = d.recheck_soon;
    retry_stream_ = d.retry_stream;
    leadership_.adopt(d, obs.dcs_ok);
    execute(d, obs);  // without ZooKeeper decide() asks for nothing but fencing
    sync_.tick(obs.dcs_ok && d.is_leader && obs.role == LocalRole::Primary && leadership_.lease_valid() &&
                   local_.probe_ok() && !out_.fence && !handover_.active(),
               ls);
    {
        const bool leading = d.has(ActionKind::EnsureSlots) && obs.role == LocalRole::Primary &&
                             leadership_.lease_valid() && !handover_.active();
        slots_.tick(obs.dcs_ok && local_.probe_ok() && !out_.fence && (leading || obs.role == LocalRole::Standby),
                    leading, ls.write_lsn);
    }
    const NodeView nv = node_view(ls);
    if (obs.dcs_ok && obs.name_conflict.empty()) link_.touch_member(publisher_.member_row(nv));
    publisher_.publish(nv);
    ++decisions_;
}

void Engine::execute(const Decision &d, const Observation &obs) {
    const std::int64_t now = clock_();
    const ClusterView &view = link_.view();
    for (const auto &a : d.actions) {
        switch (a.kind) {
            case ActionKind::WriteInitialize:
                link_.create("initialize", obs.local.system_identifier, false, [this](int rc) {
                    if (rc != ZOK && rc != ZNODEEXISTS) out_.log("cannot write initialize: " + zk_error_text(rc));
                });
                break;
            case ActionKind::WriteDefaultConfig:
                link_.create("config", json_text(DynamicConfig{}.to_json()), false, [this](int rc) {
                    if (rc == ZOK) out_.log("wrote the default dynamic configuration to ZooKeeper");
                });
                break;
            case ActionKind::AcquireLeader:
                if (!leadership_.claim_lock()) {
                    out_.log("not taking the leader lock: a failsafe leader heartbeat arrived less than ttl ago");
                    break;
                }
                link_.create("leader", s_.node_name, true, [this](int rc) {
                    if (rc == ZOK) out_.log("acquired the leader lock");
                    else if (rc != ZNODEEXISTS) out_.log("cannot create the leader lock: " + zk_error_text(rc));
                });
                break;
            case ActionKind::DeleteStaleLeader:
                link_.remove("leader");
                break;
            case ActionKind::RepairLeader:
                out_.log("the leader znode is owned by this node's session but names \"" + view.leader.value_or("") +
                         "\": rewriting its content");
                link_.set_or_create("leader", s_.node_name);
                break;
            case ActionKind::Promote:
                if (now - promote_requested_ms_ > 10000) {
                    promote_requested_ms_ = now;
                    out_.promote = true;
                    out_.log("promoting this standby to primary");
                }
                link_.request_read();
                break;
            case ActionKind::RecordPromotion:
                record_promotion(obs.local);
                break;
            case ActionKind::Demote:
                if (!out_.shutdown) {
                    out_.log(a.target.empty()
                                 ? "fencing: refusing connections and writes, shutting down to rejoin as a standby"
                                 : "fencing: " + a.target +
                                       " holds the leader lock; refusing writes and shutting down to rejoin as a standby");
                    if (a.target.empty()) out_.fence_and_stop_now();  // no ZooKeeper: see Outbox
                    else out_.fence_and_stop();
                    out_.keep_session_on_exit = true;
                }
                break;
            case ActionKind::Follow:
                if (const Member *m = view.member(a.target)) local_.follow(*m, view.config.use_slots);
                break;
            case ActionKind::WriteStatus:
                status_written_ms_ = clock_();
                link_.set_or_create("status", encode_status(a.lsn, slots_.retain(), slots_.positions()));
                break;
            case ActionKind::Handover:
                handover_.begin(a.target);
                break;
            case ActionKind::WriteFailsafe:
                link_.set_or_create("failsafe", encode_failsafe(failsafe_members(view)));
                break;
            case ActionKind::DeleteFailsafe:
                link_.remove("failsafe");
                break;
            case ActionKind::ClearFailover:
                if (!handover_.active()) {
                    if (d.failover_refused) out_.log(d.message);
                    link_.clear_failover();
                }
                break;
            case ActionKind::ReleaseLeader:
                if (leadership_.is_leader() || view.leader == s_.node_name) {
                    out_.log(d.message);
                    link_.remove("leader");
                }
                leadership_.drop();
                break;
            case ActionKind::EnsureSlots:  // SlotKeeper::tick, after the actions
                break;
        }
    }
}

void Engine::record_promotion(const LocalState &ls) {
    if (history_written_tl_ == ls.timeline) return;
    history_written_tl_ = ls.timeline;
    HistoryEntry e;
    e.timeline = ls.timeline - 1;
    const Lsn switch_lsn = local_.switch_point(ls.timeline);
    e.lsn = switch_lsn ? switch_lsn : link_.view().status_optime ? link_.view().status_optime : ls.write_lsn;
    e.reason = "pg_ha: " + s_.node_name + " promoted";
    e.timestamp = format_iso8601(std::time(nullptr));
    e.new_leader = s_.node_name;
    // pg_control shows the new timeline only after a checkpoint; pg_rewind on
    // the old primary compares against it (Patroni:
    // ensure_checkpoint_after_promote). Off the loop; history afterwards.
    SqlConn *sql = bg_sql_.get();
    bg_.submit([this, sql, e]() -> Background::Continuation {
        std::string err;
        bool ok = LocalServer::checkpoint(*sql, err);
        return [this, ok, err, e] {
            if (!ok) out_.log("checkpoint after promotion failed: " + err);
            std::vector<HistoryEntry> h = link_.view().history;
            h.push_back(e);
            link_.set_or_create("history", encode_history(h));
        };
    });
}

// What the node publishes (snapshot, status JSON, its member znode): one view.
NodeView Engine::node_view(const LocalState &ls) {
    const std::int64_t now = clock_();
    const std::int64_t lease = leadership_.lease_deadline();
    NodeView v;
    v.local = ls;
    v.role = role_;
    v.message = message_;
    v.sync_waiting = sync_.waiting();
    v.is_leader = leadership_.is_leader();
    v.accepts_writes = v.is_leader && lease > now && local_.probe_ok() && !ls.in_recovery && !out_.fence;
    v.lease_remaining_ms = lease > now ? lease - now : 0;
    v.dcs_ok = link_.dcs_ok();
    v.dcs_last_seen = link_.dcs_last_seen();
    v.postmaster_start_time = local_.sample().postmaster_start_time;
    v.watchdog_failed = leadership_.watchdog_failed();
    v.failsafe_active = leadership_.failsafe_active();
    v.pending_restart = local_.pending_restart();
    v.scheduled_restart = desk_.scheduled_restart();
    v.cluster = &link_.view();
    return v;
}

// Only while the server still is a standby whose WAL receiver does not
// stream: the decision is a loop old, the sample is this step's.
bool Engine::stream_retry_wanted() const {
    return retry_stream_ && local_.role() == LocalRole::Standby && !local_.sample().walreceiver_streaming;
}

StepResult Engine::step(const LocalSample &local, const SqlRequest &req, bool zk_readable, bool zk_writable,
                        bool woken) {
    out_.logs.clear();
    local_.observe(local);
    const std::int64_t now = clock_();

    ensure_api(now);
    // A revoked lease is renewed by the next read: send it now, not a loop later.
    if (leadership_.check_clocks(wall_clock_())) link_.request_read();
    link_.pump(zk_readable, zk_writable, leadership_.is_leader());
    if (link_.take_session_expired()) leadership_.on_session_expired(local_.role());
    // Connected, but no answer renewed the lease in time (ZooKeeper stalled,
    // or its answers come late): commits stop at the lease's end (the
    // backends check it); after retry_timeout more without an answer,
    // decide on what we know, which fences. As Patroni's retry_timeout, a
    // ZooKeeper or network hiccup shorter than that does not demote: a
    // renewal answered late restores the lease and writes go on.
    const bool lapsed =
        leadership_.is_leader() && !out_.fence && local_.role() == LocalRole::Primary && !leadership_.lease_valid();
    if (!lapsed) lease_lapsed_ms_ = 0;
    else if (lease_lapsed_ms_ == 0) lease_lapsed_ms_ = now;
    if (lapsed && link_.connected() && link_.read_due() && !lease_grace(now)) link_.force_blind_decision();
    if (local_.take_role_change()) link_.request_read();  // promotion finished, ...: act now, not a loop later
    desk_.take_sql_request(req.id, req.json, req.pid);
    if (woken) {
        waker_.clear();
        desk_.intake_http();
    }
    if (bg_.pending() > 0) bg_.drain();
    if (recheck_soon_) link_.request_decision();  // on the view we have: nothing announces what we wait for
    if (local_.take_published_change()) publish_due_ = true;
    if (publish_due_ && now - publish_decided_ms_ >= kPublishChangeEveryMs) {
        link_.request_decision();  // probes, publishes members/<me> if it changed
        publish_due_ = false;
        publish_decided_ms_ = now;
    }
    if (link_.take_decision_due()) {
        if (link_.dcs_ok()) leadership_.on_fresh_view();  // the lock, not failsafe, counts again
        decide_and_act();
    }
    desk_.run(handover_.active());
    handover_.advance(desk_.protected_pids());
    leadership_.tend_watchdog(local_.role());
    watch_api(now);
    if (publisher_.status_json().empty()) publisher_.publish(node_view(local_.state()));

    StepResult r;
    r.fence = out_.fence;
    r.lease_deadline_ms = out_.fence ? 0 : leadership_.lease_deadline();
    r.lease_enforced = leadership_.enforced();
    r.sync_strict_waiting = !sync_.waiting().empty();
    r.promote = out_.promote;
    out_.promote = false;
    r.promoting = promoting(clock_());
    if (stream_retry_wanted() && now - stream_retry_ms_ >= kStreamRetryEveryMs) {
        r.retry_stream = true;
        stream_retry_ms_ = now;
    }
    r.flush_wal = out_.flush_wal;
    out_.flush_wal = false;
    r.is_leader = leadership_.is_leader();
    // Leave a moment for answers to waiting callers before stopping (the
    // node is fenced meanwhile).
    if (out_.shutdown && out_.shutdown_requested_ms == 0) out_.shutdown_requested_ms = now;
    r.shutdown = out_.shutdown && (now >= out_.shutdown_requested_ms + 5000 || !desk_.holds_shutdown());
    r.shutdown_immediate = out_.shutdown_immediate;
    r.stop_kill_after_s = primary_stop_kill_after_s(link_.view().config, local_.role() == LocalRole::Primary);
    return r;
}

}  // namespace pgha
