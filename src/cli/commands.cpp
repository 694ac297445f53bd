// pg_hactl operator commands (list, switchover, failover, pause/resume,
// history, show/edit-config, restart, reinit). See commands.hpp for the
// contract. One file for all of them: they share the ZooKeeper and REST
// helpers at the top, and each command is a short function of its own.
#include "cli/commands.hpp"
#include "core/json_text.hpp"

#include "core/node_settings.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>
#include <zookeeper/zookeeper.h>

#include "cli/render.hpp"
#include "core/cluster.hpp"
#include "core/cluster_report.hpp"
#include "core/dynamic_config.hpp"
#include "core/operator_rules.hpp"
#include "core/lsn.hpp"
#include "core/patroni_codec.hpp"
#include "core/settings_file.hpp"
#include "core/timeutil.hpp"
#include "dcs/cluster_store.hpp"
#include "dcs/zk_session.hpp"
#include "http/peer_client.hpp"
#include "watchdog/watchdog.hpp"

namespace pgha::cli {

using nlohmann::json;

namespace {

constexpr int kZkConnectMs = 10000;
constexpr int kZkOpMs = 10000;
// A member answers a switchover once the lock moved (the old leader) or the
// candidate accepts writes (any other; it gives up after 35 s); allow for that
// plus the transfer.
constexpr int kSwitchoverHttpMs = 45000;
constexpr int kProbeHttpMs = 3000;
constexpr int kActionHttpMs = 15000;

void note(const std::string &msg) { std::cerr << msg << std::endl; }

// ---- ZooKeeper ---------------------------------------------------------------

// One session for one command; every failure to talk to ZooKeeper is exit 3.
class Dcs {
  public:
    explicit Dcs(const OperatorSettings &s) : hosts_(s.zk_hosts), auth_(s.zk_auth) {
        std::string err;
        zk_.set_auth(s.zk_auth);
        if (!zk_.open(s.zk_hosts, 30000, nullptr, err))
            fail(kExitUnreachable, "cannot open a ZooKeeper session to " + s.zk_hosts + ": " + err);
        // The C client logs every failed connection attempt on stderr; our
        // own message says what went wrong. PGHA_ZK_DEBUG=1 brings them back.
        // (After open(): it sets the level on its first call.)
        if (!std::getenv("PGHA_ZK_DEBUG")) zoo_set_debug_level(static_cast<ZooLogLevel>(0));
        if (!zk_run_until(zk_, [&] { return zk_.connected(); }, kZkConnectMs))
            fail(kExitUnreachable, "cannot connect to ZooKeeper at " + s.zk_hosts + " within " +
                                       std::to_string(kZkConnectMs / 1000) + " s");
        store_ = std::make_unique<ClusterStore>(zk_, s.ns, s.scope);
    }

    ClusterStore &store() { return *store_; }

    ClusterView view() {
        bool done = false, ok = false;
        ClusterView out;
        std::string error;
        store_->read(false, [&](bool k, const ClusterView &v, const std::string &e) {
            done = true;
            ok = k;
            out = v;
            error = e;
        });
        if (!zk_run_until(zk_, [&] { return done; }, kZkOpMs))
            fail(kExitUnreachable, "timed out reading the cluster from ZooKeeper at " + hosts_);
        if (!ok) fail(kExitUnreachable, "cannot read the cluster from ZooKeeper: " + error);
        return out;
    }

    struct Raw {
        bool exists = false;
        std::string data;
        int version = -1;
    };
    Raw get(const std::string &key) {
        bool done = false;
        int rc = ZOK;
        Raw r;
        int src = zk_.get(store_->path(key), false, [&](int c, const std::string &data, const ZkStat &st) {
            done = true;
            rc = c;
            r.data = data;
            r.version = st.version;
        });
        if (src != ZOK) fail(kExitUnreachable, "cannot read " + store_->path(key) + ": " + ZkSession::error_text(src));
        if (!zk_run_until(zk_, [&] { return done; }, kZkOpMs))
            fail(kExitUnreachable, "timed out reading " + store_->path(key) + " from ZooKeeper");
        if (rc == ZNONODE) return Raw{};
        if (rc != ZOK) fail(kExitUnreachable, "cannot read " + store_->path(key) + ": " + ZkSession::error_text(rc));
        r.exists = true;
        return r;
    }

    // Writes `key` only if it is still at `version` (-1 with exists=false: create it).
    int put_versioned(const std::string &key, const std::string &data, bool exists, int version) {
        int result = -999;
        auto cb = [&](int rc) { result = rc; };
        if (exists) store_->set_versioned(key, data, version, cb);
        else store_->create(key, data, false, cb);
        if (!zk_run_until(zk_, [&] { return result != -999; }, kZkOpMs))
            fail(kExitUnreachable, "timed out writing " + store_->path(key) + " to ZooKeeper");
        return result;
    }

    // The session timeout ZooKeeper grants a client that asks for `ms` (a
    // session of its own, closed at once); 0 when none could be opened.
    int granted_session_timeout(int ms) const {
        ZkSession probe;
        std::string err;
        probe.set_auth(auth_);
        if (!probe.open(hosts_, ms, nullptr, err)) return 0;
        if (!zk_run_until(probe, [&] { return probe.connected(); }, kZkConnectMs)) return 0;
        return probe.negotiated_timeout_ms();
    }

  private:
    std::string hosts_;
    ZkAuth auth_;
    ZkSession zk_;
    std::unique_ptr<ClusterStore> store_;
};

// ---- REST --------------------------------------------------------------------

PeerRequest make_request(const OperatorSettings &s, const Member &m, const std::string &method,
                         const std::string &path, const std::string &body) {
    PeerRequest r;
    r.name = m.name;
    r.url = m.api_endpoint(path);
    r.method = method;
    r.body = body;
    r.ca_file = s.rest_cafile;
    r.client_cert_file = s.rest_certfile;
    r.client_key_file = s.rest_keyfile;
    r.insecure = s.rest_insecure;
    // The peer client sends them with unsafe methods only, and over plain
    // http only with pg_ha.restapi_allow_http_credentials (api_url comes from ZooKeeper).
    if (!s.rest_username.empty()) r.basic_auth = s.rest_username + ":" + s.rest_password;
    r.allow_http_credentials = s.rest_allow_http_credentials;
    return r;
}

std::string trim(std::string t) {
    while (!t.empty() && (t.back() == '\n' || t.back() == '\r' || t.back() == ' ')) t.pop_back();
    return t;
}

// Maps an HTTP answer to an exit code, printing the body (stdout on success).
int report_reply(const PeerReply &r, const std::string &what, const OperatorSettings &s) {
    if (!r.ok) {
        note("pg_hactl: " + what + ": no answer from " + r.name + "'s REST API: " + r.error);
        return kExitUnreachable;
    }
    const std::string body = trim(r.body);
    if (r.status >= 200 && r.status < 300) {
        std::cout << (body.empty() ? what + ": HTTP " + std::to_string(r.status) : body) << std::endl;
        return kExitOk;
    }
    std::string msg = "pg_hactl: " + what + " refused by " + r.name + " (HTTP " + std::to_string(r.status) + ")";
    if (!body.empty()) msg += ": " + body;
    if (r.status == 401)
        msg += s.rest_username.empty()
                   ? "; the REST API needs credentials: set pg_ha.restapi_username and pg_ha.restapi_password"
                   : "; check pg_ha.restapi_username and pg_ha.restapi_password";
    note(msg);
    return kExitFailed;
}

// ---- confirmation ------------------------------------------------------------

bool confirm(const std::string &question, bool force, const std::string &action) {
    if (force) return true;
    if (!isatty(STDIN_FILENO))
        fail(kExitFailed, "refusing to " + action + " without confirmation: standard input is not a terminal "
                          "(use --force to skip the question)");
    std::cerr << question << " [y/N]: " << std::flush;
    std::string answer;
    if (!std::getline(std::cin, answer)) return false;
    return answer == "y" || answer == "Y" || answer == "yes" || answer == "YES" || answer == "Yes";
}

// ---- output helpers ------------------------------------------------------------

// patronictl's "Lag in MB": one decimal, "unknown" when not reported.
std::string lag_mb(const MemberRow &r) {
    if (!r.lag) return "unknown";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f", double(*r.lag) / 1048576.0);
    return buf;
}

void print_list_table(const OperatorSettings &s, const ClusterView &v) {
    // The shape of the original `pg_hactl list`; maintenance mode and a
    // scheduled switchover are reported after the table, as patronictl does.
    std::printf("+ Cluster: %s (%s) %s\n", s.scope.c_str(), v.initialize.value_or("uninitialized").c_str(),
                v.config.pause ? " [maintenance mode]" : "");
    // Role is wide enough for "Quorum Standby" and "Standby Leader"
    std::printf("%-12s %-22s %-14s %-12s %-4s %-10s\n", "Member", "Host", "Role", "State", "TL", "Lag in MB");
    for (const MemberRow &r : cluster_report(v)) {
        std::printf("%-12s %-22s %-14s %-12s %-4d %-10s%s\n", r.name.c_str(),
                    (r.host + ":" + std::to_string(r.port)).c_str(), display_name(r.role), r.state.c_str(), r.timeline,
                    lag_mb(r).c_str(), r.pending_restart ? " *" : "");
    }
    for (const MemberRow &r : cluster_report(v))
        if (r.scheduled_restart)
            std::printf(" Restart of %s scheduled at: %s\n", r.name.c_str(), r.scheduled_restart->schedule.c_str());
    if (v.config.pause) std::printf(" Maintenance mode: on\n");
    if (v.failover && !v.failover->scheduled_at.empty()) {
        std::printf(" Switchover scheduled at: %s\n", v.failover->scheduled_at.c_str());
        if (!v.failover->leader.empty()) std::printf("                    from: %s\n", v.failover->leader.c_str());
        if (!v.failover->candidate.empty()) std::printf("                      to: %s\n", v.failover->candidate.c_str());
    }
    std::fflush(stdout);
}

void check_format(const std::string &format, std::initializer_list<const char *> allowed) {
    for (const char *a : allowed)
        if (format == a) return;
    std::string list;
    for (const char *a : allowed) list += std::string(list.empty() ? "" : ", ") + a;
    fail(kExitUsage, "unknown format \"" + format + "\" (use " + list + ")");
}

json parse_config_znode(const Dcs::Raw &raw, const std::string &path) {
    if (!raw.exists || raw.data.empty()) return json::object();
    json j = json::parse(raw.data, nullptr, false);
    if (j.is_discarded() || !j.is_object())
        fail(kExitFailed, path + " does not hold a JSON object; fix it by hand (e.g. with zkCli) first");
    return j;
}

}  // namespace

// ---- settings --------------------------------------------------------------------

OperatorSettings load_operator_settings(const std::string &path) {
    SettingsFile f;
    std::string err;
    if (!load_settings_file(path, f, err)) fail(kExitUsage, err);
    if (!f.errors.empty()) fail(kExitUsage, path + ": " + f.errors.front());
    // The one settings table: the same names, defaults and parsing as the server.
    std::vector<std::string> errors;
    const NodeSettings n = NodeSettings::from_map(f.values, errors, kCliOnlySettings);
    if (!errors.empty()) fail(kExitUsage, path + ": " + errors.front());
    OperatorSettings s;
    s.scope = n.scope;
    s.ns = n.ns;
    s.zk_hosts = n.zookeeper_hosts;
    if (!make_zk_auth(n.zookeeper_user, n.zookeeper_password, n.zookeeper_set_acls, s.zk_auth, err))
        fail(kExitUsage, path + ": " + err);
    s.rest_username = n.restapi_username;
    s.rest_password = n.restapi_password;
    s.rest_cafile = n.restapi_cafile;
    s.rest_allow_http_credentials = n.restapi_allow_http_credentials;
    s.rest_certfile = f.get("pg_ha.ctl_certfile");
    s.rest_keyfile = f.get("pg_ha.ctl_keyfile");
    s.rest_insecure = f.get_bool("pg_ha.ctl_insecure", false);
    if (s.scope.empty()) fail(kExitUsage, path + ": pg_ha.scope is not set");
    if (s.zk_hosts.empty()) fail(kExitUsage, path + ": pg_ha.zookeeper_hosts is not set");
    while (s.ns.size() > 1 && s.ns.back() == '/') s.ns.pop_back();
    if (s.ns.empty() || s.ns.front() != '/') s.ns = "/" + s.ns;
    return s;
}

// ---- list ------------------------------------------------------------------------

// Members for `list --format json`: core/cluster_report in Patroni's JSON roles.
static json list_members_json(const ClusterView &v) {
    json arr = json::array();
    for (const MemberRow &r : cluster_report(v)) {
        json row = {{"name", r.name},           {"host", r.host},         {"port", r.port},
                    {"role", to_string(r.role)}, {"state", r.state},       {"timeline", r.timeline},
                    {"lsn", format_lsn(r.lsn)},  {"lag", r.lag_json()}};
        json tags = r.tags.to_json();
        if (!tags.empty()) row["tags"] = tags;
        if (r.pending_restart) row["pending_restart"] = true;
        if (r.scheduled_restart) row["scheduled_restart"] = r.scheduled_restart->to_json();
        arr.push_back(row);
    }
    return arr;
}


int cmd_list(const OperatorSettings &s, const std::string &format) {
    check_format(format, {"table", "json"});
    Dcs dcs(s);
    ClusterView v = dcs.view();
    for (const auto &w : v.warnings) note("pg_hactl: warning: " + w);
    if (format == "json") {
        const json arr = list_members_json(v);
        json out = {{"scope", s.scope}, {"system_identifier", v.initialize.value_or("")},
                    {"paused", v.config.pause}, {"members", arr}};
        if (v.failover && !v.failover->scheduled_at.empty())
            out["scheduled_switchover"] = {{"at", v.failover->scheduled_at}, {"from", v.failover->leader},
                                           {"to", v.failover->candidate}};
        std::cout << out.dump(2) << std::endl;
        return kExitOk;
    }
    print_list_table(s, v);
    return kExitOk;
}

// ---- switchover / failover ---------------------------------------------------------

namespace {

// After a lost answer, or the old leader's (given when the lock moved): wait
// (bounded) until core/operator_rules says the switchover happened (the new leader's /primary answers 200), went to
// another member, or did not happen.
int await_new_leader(const OperatorSettings &s, Dcs &dcs, OperatorCommand kind, const std::string &old_leader,
                     const std::string &candidate) {
    const std::int64_t start = ZkSession::steady_ms();
    const std::int64_t deadline = start + kSwitchoverHttpMs;
    bool key_seen = false;
    std::string last;
    while (ZkSession::steady_ms() < deadline) {
        ClusterView v = dcs.view();
        if (v.failover) key_seen = true;
        // The key may have come and gone between two reads: after 5 s without
        // a change, its absence means the request was consumed.
        const bool consumed = key_seen || ZkSession::steady_ms() - start > 5000;
        SwitchoverAssessment a = assess_switchover(v, kind, old_leader, candidate, consumed, false);
        if (a.progress == SwitchoverProgress::Waiting && !a.probe.empty()) {
            const Member *m = v.member(a.probe);
            auto r = http_parallel({make_request(s, *m, "GET", "/primary", "")}, 1000);
            const bool ok = !r.empty() && r[0].ok && r[0].status == 200;
            if (!ok && !r.empty())
                last = a.probe + " holds the leader key but its /primary says " +
                       (r[0].ok ? "HTTP " + std::to_string(r[0].status) : r[0].error);
            a = assess_switchover(v, kind, old_leader, candidate, consumed, ok);
        }
        switch (a.progress) {
            case SwitchoverProgress::Done:
            case SwitchoverProgress::Diverted:
                std::cout << a.message << std::endl;
                return kExitOk;
            case SwitchoverProgress::Failed:
                fail(kExitFailed, a.message);
            case SwitchoverProgress::Waiting:
                break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    fail(kExitUnreachable, "outcome of the " + std::string(to_string(kind)) + " unknown after " +
                               std::to_string(kSwitchoverHttpMs / 1000) + " s" +
                               (last.empty() ? std::string() : ": " + last) + "; check pg_hactl list");
}

}  // namespace

int cmd_switchover(const OperatorSettings &s, const SwitchoverOptions &o) {
    const OperatorCommand command = o.failover ? OperatorCommand::Failover : OperatorCommand::Switchover;
    const std::string kind = to_string(command);
    std::string scheduled_at;
    if (!o.scheduled.empty() && o.scheduled != "now") {
        std::int64_t when = 0;
        std::string err;
        if (!parse_iso8601(o.scheduled, when, err))
            fail(kExitUsage, "--scheduled \"" + o.scheduled + "\": " + err +
                                 " (give an ISO 8601 time with a zone, e.g. 2030-01-31T23:00:00+00:00, or \"now\")");
        scheduled_at = o.scheduled;
    }
    if (o.failover && o.candidate.empty()) fail(kExitUsage, "failover needs --candidate");

    Dcs dcs(s);
    ClusterView v = dcs.view();
    // The same rules, in the same words, as the members' REST API applies.
    SwitchoverRequest req;
    req.failover = o.failover;
    req.leader = o.leader;
    req.candidate = o.candidate;
    req.scheduled_at = scheduled_at;
    const SwitchoverCheck check = check_switchover(v, req, static_cast<std::int64_t>(std::time(nullptr)));
    if (const Refusal *r = std::get_if<Refusal>(&check)) {
        std::string msg = r->message;
        if (!o.candidate.empty() && !v.member(o.candidate) && r->message.find("does not exist") != std::string::npos) {
            std::string names;
            for (const auto &m : v.members) names += (names.empty() ? "" : ", ") + m.name;
            msg += " in cluster " + s.scope + " (members: " + (names.empty() ? std::string("none") : names) + ")";
        }
        fail(r->http_status == 400 ? kExitUsage : kExitFailed, msg);
    }
    const SwitchoverPlan &plan = std::get<SwitchoverPlan>(check);
    const std::string &leader = plan.leader;
    const Member *cand = o.candidate.empty() ? nullptr : v.member(o.candidate);

    // The plan.
    print_list_table(s, v);
    std::string says = o.failover && leader.empty()
                           ? "Failover to " + o.candidate
                           : (o.failover ? "Failover" : "Switchover") + std::string(" from ") + leader + " to " +
                                 (o.candidate.empty() ? "the most suitable replica" : o.candidate);
    says += plan.scheduled_at.empty() ? ", now" : ", at " + plan.scheduled_at;
    note(says);
    if (!confirm("Are you sure you want to " + kind + " cluster " + s.scope +
                     (leader.empty() ? std::string() : ", demoting current leader " + leader) + "?",
                 o.force, kind))
        fail(kExitFailed, "aborted");

    json body = json::object();
    if (!leader.empty()) body["leader"] = leader;
    if (!o.candidate.empty()) body["candidate"] = o.candidate;
    if (!plan.scheduled_at.empty()) body["scheduled_at"] = plan.scheduled_at;

    // Ask the leader (or, leader-less, the candidate) first; if its API does
    // not answer, any other member's: every member can write the failover key.
    // A short probe first, so a slow switchover is never sent twice.
    std::vector<const Member *> order;
    const Member *first = !leader.empty() ? v.member(leader) : cand;
    if (first) order.push_back(first);
    for (const auto &m : v.members)
        if (&m != first && !m.api_url.empty()) order.push_back(&m);
    std::string tried;
    for (const Member *m : order) {
        if (m->api_url.empty()) continue;
        auto probe = http_parallel({make_request(s, *m, "GET", "/patroni", "")}, kProbeHttpMs);
        if (probe.empty() || !probe[0].ok) {
            note("pg_hactl: " + m->name + "'s REST API (" + m->api_endpoint("") + ") does not answer: " +
                 (probe.empty() ? std::string("no request made") : probe[0].error));
            tried += (tried.empty() ? "" : ", ") + m->name;
            continue;
        }
        auto rep = http_parallel({make_request(s, *m, "POST", "/" + kind, json_text(body))}, kSwitchoverHttpMs);
        if (rep.empty()) fail(kExitFailed, "could not send the " + kind + " request (out of memory?)");
        if (!rep[0].ok && plan.scheduled_at.empty()) {
            // The request went out but its answer was lost (the old leader's
            // API stops with its server during the handover): never send it
            // twice, find out from ZooKeeper what happened.
            note("pg_hactl: no answer from " + m->name + " (" + rep[0].error + "); checking the outcome in ZooKeeper");
            return await_new_leader(s, dcs, command, leader, o.candidate);
        }
        // An old leader answers once the lock moved (it stops right after;
        // the new leader promotes once it has that server's shutdown
        // checkpoint): wait here until the new leader accepts writes.
        if (rep[0].status == 200 && plan.scheduled_at.empty() && m->name == leader)
            return await_new_leader(s, dcs, command, leader, o.candidate);
        return report_reply(rep[0], kind, s);
    }
    fail(kExitUnreachable, "no member's REST API answered (tried " + tried + ")");
}

// ---- pause / resume ------------------------------------------------------------------

int cmd_pause(const OperatorSettings &s, bool pause, int wait_s) {
    Dcs dcs(s);
    const std::string path = dcs.store().path("config");
    bool settled = false;
    for (int attempt = 0; attempt < 10 && !settled; ++attempt) {
        Dcs::Raw raw = dcs.get("config");
        json cfg = parse_config_znode(raw, path);
        std::vector<std::string> ignored;
        const bool now = DynamicConfig::from_json(cfg, ignored).pause;
        if (now == pause) {
            note(pause ? "cluster " + s.scope + " is already paused" : "cluster " + s.scope + " is not paused");
            settled = true;
            break;
        }
        // As PATCH /config does it: {"pause": true} to pause, null to resume.
        const ConfigPatchResult r = apply_config_patch(cfg, json{{"pause", pause ? json(true) : json(nullptr)}}, false);
        if (!r.ok())
            fail(kExitFailed, "the configuration in " + path + " cannot be changed; fix it with edit-config first: " +
                                  config_errors_text(r.errors));
        cfg = r.merged;
        int rc = dcs.put_versioned("config", json_text(cfg), raw.exists, raw.version);
        if (rc == ZOK) {
            note(pause ? "Success: cluster management is paused" : "Success: cluster management is resumed");
            settled = true;
            break;
        }
        if (rc != ZBADVERSION && rc != ZNODEEXISTS)
            fail(kExitUnreachable, "cannot write " + path + ": " + ZkSession::error_text(rc));
        // someone else changed the config meanwhile: read it again
    }
    if (!settled) fail(kExitFailed, path + " kept changing under us; nothing written, try again");
    if (wait_s <= 0) return kExitOk;

    // Wait until every member reports the new state on GET /patroni.
    const std::int64_t deadline = ZkSession::steady_ms() + std::int64_t(wait_s) * 1000;
    std::string pending;
    for (;;) {
        ClusterView v = dcs.view();
        std::vector<PeerRequest> reqs;
        for (const auto &m : v.members)
            if (!m.api_url.empty()) reqs.push_back(make_request(s, m, "GET", "/patroni", ""));
        auto reps = http_parallel(reqs, kProbeHttpMs);
        pending.clear();
        for (const auto &r : reps) {
            if (!r.ok || r.status != 200) {
                pending += (pending.empty() ? "" : ", ") + r.name + " (" + (r.ok ? "HTTP " + std::to_string(r.status) : r.error) + ")";
                continue;
            }
            json j = json::parse(r.body, nullptr, false);
            const bool p = j.is_object() && j.contains("pause") && j["pause"].is_boolean() && j["pause"].get<bool>();
            if (p != pause) pending += (pending.empty() ? "" : ", ") + r.name;
        }
        if (pending.empty() && !reqs.empty()) {
            note(std::string("every member reports ") + (pause ? "maintenance mode" : "normal operation"));
            return kExitOk;
        }
        if (ZkSession::steady_ms() >= deadline) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
    fail(kExitFailed, std::string("timed out after ") + std::to_string(wait_s) + " s waiting for " +
                          (pending.empty() ? std::string("members") : pending) + " to " +
                          (pause ? "report the pause" : "report the resume"));
}

// ---- history ---------------------------------------------------------------------------

int cmd_history(const OperatorSettings &s, const std::string &format) {
    check_format(format, {"table", "json"});
    Dcs dcs(s);
    ClusterView v = dcs.view();
    for (const auto &w : v.warnings) note("pg_hactl: warning: " + w);
    if (format == "json") {
        json arr = json::array();
        for (const auto &h : v.history)
            arr.push_back({{"timeline", h.timeline}, {"lsn", h.lsn}, {"lsn_text", format_lsn(h.lsn)},
                           {"reason", h.reason}, {"timestamp", h.timestamp}, {"new_leader", h.new_leader}});
        std::cout << arr.dump(2) << std::endl;
        return kExitOk;
    }
    std::vector<std::vector<std::string>> rows = {{"TL", "LSN", "Reason", "Timestamp", "New Leader"}};
    for (const auto &h : v.history)
        rows.push_back({std::to_string(h.timeline), format_lsn(h.lsn), h.reason, h.timestamp, h.new_leader});
    std::vector<std::size_t> width(5, 0);
    for (const auto &r : rows)
        for (std::size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
    std::string sep = "+";
    for (auto w : width) sep += std::string(w + 2, '-') + "+";
    std::cout << sep << "\n";
    for (std::size_t k = 0; k < rows.size(); ++k) {
        std::string line = "|";
        for (std::size_t i = 0; i < rows[k].size(); ++i)
            line += " " + rows[k][i] + std::string(width[i] - rows[k][i].size(), ' ') + " |";
        std::cout << line << "\n";
        if (k == 0) std::cout << sep << "\n";
    }
    std::cout << sep << std::endl;
    return kExitOk;
}

// ---- show-config / edit-config ---------------------------------------------------------

int cmd_show_config(const OperatorSettings &s, const std::string &format) {
    check_format(format, {"yaml", "json"});
    Dcs dcs(s);
    Dcs::Raw raw = dcs.get("config");
    if (!raw.exists) fail(kExitFailed, "no configuration in " + dcs.store().path("config"));
    json cfg = parse_config_znode(raw, dcs.store().path("config"));
    if (format == "json") std::cout << cfg.dump(2) << std::endl;
    else std::cout << to_yaml(cfg) << std::flush;
    return kExitOk;
}

namespace {

// "a.b.c=value": value is JSON when it parses as JSON (numbers, booleans,
// null, objects, quoted strings), text otherwise; null or empty removes the key.
void apply_set(json &patch, const std::string &kv) {
    auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) fail(kExitUsage, "--set \"" + kv + "\": expected key=value");
    const std::string key = kv.substr(0, eq), text = kv.substr(eq + 1);
    json value = text.empty() ? json(nullptr) : json::parse(text, nullptr, false);
    if (value.is_discarded()) value = text;
    json *node = &patch;
    std::size_t start = 0;
    for (;;) {
        auto dot = key.find('.', start);
        const std::string part = key.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
        if (part.empty()) fail(kExitUsage, "--set \"" + kv + "\": empty key segment");
        if (dot == std::string::npos) {
            (*node)[part] = value;
            return;
        }
        json &child = (*node)[part];
        if (!child.is_object()) child = json::object();
        node = &child;
        start = dot + 1;
    }
}

std::string read_input(const std::string &file) {
    std::stringstream ss;
    if (file == "-") {
        ss << std::cin.rdbuf();
    } else {
        std::ifstream f(file);
        if (!f) fail(kExitUsage, "cannot read " + file);
        ss << f.rdbuf();
    }
    return ss.str();
}

}  // namespace

namespace {

// What a profile needs beyond the config key: ZooKeeper's granted session
// timeout (checked with a session of that length) and the nodes' settings,
// for the ttl written (the profile's unless --set changed it).
void profile_notes(const Dcs &dcs, const TimingProfile &p, int ttl_ms) {
    const int want = ttl_ms;
    const std::string ttl = seconds_text(ttl_ms);
    const int granted = dcs.granted_session_timeout(want);
    if (granted <= 0)
        note("warning: could not check the session timeout ZooKeeper grants for ttl " + ttl);
    else if (granted != want)
        note("warning: ZooKeeper grants " + std::to_string(granted) + " ms to a session that asks for " +
             std::to_string(want) + " ms (ttl " + ttl +
             "): the members' sessions, and so a failover, then take " + std::to_string(granted) +
             " ms. Set minSessionTimeout <= " + std::to_string(want) + " and maxSessionTimeout >= " +
             std::to_string(want) + " in zoo.cfg");
    const int ttl_s = ttl_ms / 1000;
    const std::string watchdog =
        ttl_s < kMinLeaderWatchdogTimeout
            ? "no watchdog (its timeout is whole seconds, at least " + std::to_string(kMinLeaderWatchdogTimeout) +
                  ", and below ttl): pg_ha.watchdog_mode = automatic leads without one, required refuses to lead"
            : "pg_ha.watchdog_safety_margin at most " + std::to_string(ttl_s - kMinLeaderWatchdogTimeout) + " s" +
                  (ttl_s / 2 >= kMinLeaderWatchdogTimeout ? " or -1" : "");
    note("profile " + std::string(p.name) + ": " + p.summary + ". It needs ZooKeeper tickTime <= " +
         std::to_string(p.max_tick_time_ms) + " ms; on every node pg_ha.lease_safety_margin = " +
         std::to_string(p.lease_safety_margin_ms) + " (at least tickTime, below " + std::to_string(want * 2 / 3) +
         " ms) and " + watchdog + " (README \"Timing profiles\")");
    const NodeSettings defaults;
    if (std::string why = lease_margin_problem(defaults.lease_safety_margin, want); !why.empty())
        note("warning: with its default " + why);
    else if (defaults.lease_safety_margin != p.lease_safety_margin_ms)
        note("note: the nodes' default pg_ha.lease_safety_margin (" + std::to_string(defaults.lease_safety_margin) +
             " ms) leads too, but then ZooKeeper answers more than " +
             std::to_string(want - defaults.lease_safety_margin - p.loop_wait_ms) +
             " ms late end the lease (commits stop; after retry_timeout more the primary fences)");
}

}  // namespace

int cmd_edit_config(const OperatorSettings &s, const EditConfigOptions &o) {
    if (o.set.empty() && o.file.empty() && o.profile.empty())
        fail(kExitUsage, "edit-config needs --set key=value, --profile NAME, --file FILE or --file - (stdin)");
    const TimingProfile *profile = nullptr;
    if (!o.profile.empty()) {
        profile = find_timing_profile(o.profile);
        if (!profile)
            fail(kExitUsage, "no timing profile \"" + o.profile + "\" (profiles: " + timing_profile_names() + ")");
    }
    if (o.replace && o.file.empty()) fail(kExitUsage, "--replace needs --file");
    json file_patch;
    if (!o.file.empty()) {
        file_patch = json::parse(read_input(o.file), nullptr, false);
        if (file_patch.is_discarded() || !file_patch.is_object())
            fail(kExitUsage, (o.file == "-" ? std::string("standard input") : o.file) + " is not a JSON object");
    }
    if (o.file == "-" && !o.force)
        fail(kExitUsage, "--file - reads standard input, so there is no way to confirm: add --force");
    // The profile's timings, then --set (which wins over the profile).
    json set_patch = profile ? timing_profile_patch(*profile) : json::object();
    for (const auto &kv : o.set) apply_set(set_patch, kv);

    Dcs dcs(s);
    const std::string path = dcs.store().path("config");
    Dcs::Raw raw = dcs.get("config");
    const json before = parse_config_znode(raw, path);
    // The file's patch (or whole configuration with --replace), then --set.
    // Validated once, on the final result.
    ConfigPatchResult r;
    if (o.replace) {
        json whole = file_patch;
        whole.merge_patch(set_patch);
        r = apply_config_patch(before, whole, true);
    } else {
        json mid = before;
        if (!file_patch.is_null()) mid.merge_patch(file_patch);  // RFC 7386: null removes
        r = apply_config_patch(mid, set_patch, false);
    }
    if (!r.ok()) fail(kExitFailed, config_errors_text(r.errors) + "; nothing changed");
    for (const auto &a : r.config.adjusted) note("warning: " + a + " (as Patroni; the key keeps what you wrote)");
    const json after = r.merged;
    if (after == before && raw.exists) {
        note("Not changed");
        if (profile) profile_notes(dcs, *profile, r.config.ttl_ms);
        return kExitOk;
    }
    std::cout << "--- " << path << " (version " << raw.version << ")\n+++ new\n"
              << line_diff(to_yaml(before), to_yaml(after)) << std::flush;
    if (!confirm("Apply these changes?", o.force, "edit the configuration")) fail(kExitFailed, "aborted, nothing changed");
    int rc = dcs.put_versioned("config", json_text(after), raw.exists, raw.version);
    if (rc == ZBADVERSION || rc == ZNODEEXISTS)
        fail(kExitFailed, "the configuration changed while you edited it; nothing written, run edit-config again");
    if (rc != ZOK) fail(kExitUnreachable, "cannot write " + path + ": " + ZkSession::error_text(rc));
    note("Configuration changed");
    if (profile) profile_notes(dcs, *profile, r.config.ttl_ms);
    return kExitOk;
}

// ---- restart / reinit -------------------------------------------------------------------

int cmd_member_action(const OperatorSettings &s, const std::string &action, const std::string &member, bool force) {
    Dcs dcs(s);
    ClusterView v = dcs.view();
    const Member *m = v.member(member);
    if (!m) fail(kExitFailed, "member " + member + " does not exist in cluster " + s.scope);
    if (m->api_url.empty()) fail(kExitFailed, member + " publishes no REST API address");
    const bool leader = v.leader && *v.leader == member;
    const std::string verb = action == "reinitialize" ? "reinitialize" : "restart";
    if (!confirm("Are you sure you want to " + verb + " " + member + (leader ? " (the leader)" : "") + "?", force, verb))
        fail(kExitFailed, "aborted");
    auto rep = http_parallel({make_request(s, *m, "POST", "/" + action, "{}")}, kActionHttpMs);
    return report_reply(rep[0], verb + " " + member, s);
}

int cmd_restart(const OperatorSettings &s, const RestartOptions &o) {
    Dcs dcs(s);
    ClusterView v = dcs.view();
    std::vector<const Member *> targets;
    if (o.members.empty()) {
        const Member *leader = nullptr;
        for (const auto &m : v.members) {
            if (v.leader && *v.leader == m.name) leader = &m;
            else targets.push_back(&m);
        }
        std::sort(targets.begin(), targets.end(), [](const Member *a, const Member *b) { return a->name < b->name; });
        if (leader) targets.push_back(leader);
        if (targets.empty()) fail(kExitFailed, "cluster " + s.scope + " has no members");
    } else {
        for (const auto &name : o.members) {
            const Member *m = v.member(name);
            if (!m) fail(kExitFailed, "member " + name + " does not exist in cluster " + s.scope);
            targets.push_back(m);
        }
    }
    std::string names;
    for (const auto *m : targets) names += (names.empty() ? "" : ", ") + m->name;
    if (o.cancel) {
        if (o.pending || !o.role.empty() || !o.scheduled.empty())
            fail(kExitUsage, "--cancel takes no --pending, --role or --scheduled");
        int worst = kExitOk;
        for (const auto *m : targets) {
            if (m->api_url.empty()) continue;
            auto rep = http_parallel({make_request(s, *m, "DELETE", "/restart", "")}, kActionHttpMs);
            if (rep[0].ok && (rep[0].status == 200 || rep[0].status == 404)) {
                std::cout << m->name << ": " << trim(rep[0].body) << std::endl;
                continue;
            }
            worst = std::max(worst, report_reply(rep[0], "cancel the scheduled restart of " + m->name, s));
        }
        return worst;
    }
    nlohmann::json body = nlohmann::json::object();
    if (o.pending) body["restart_pending"] = true;
    if (o.timeout_s > 0) body["timeout"] = o.timeout_s;
    if (!o.role.empty() && o.role != "any") body["role"] = o.role;
    if (!o.scheduled.empty() && o.scheduled != "now") {
        // the one parser of timestamps (the members check it again)
        std::int64_t at = 0;
        std::string err;
        if (!parse_iso8601(o.scheduled, at, err)) fail(kExitUsage, "--scheduled " + o.scheduled + ": " + err);
        body["schedule"] = format_iso8601(at);
    }
    std::string conditions;
    if (o.pending) conditions += " with a pending restart";
    if (body.contains("role")) conditions += std::string(o.pending ? " and" : "") + " in role " + o.role;
    if (!confirm("Are you sure you want to " + std::string(body.contains("schedule") ? "schedule a restart of " : "restart ") +
                     names + (body.contains("schedule") ? " at " + body["schedule"].get<std::string>() : "") +
                     (conditions.empty() ? "" : " (only those" + conditions + ")") + "?",
                 o.force, "restart"))
        fail(kExitFailed, "aborted");
    int worst = kExitOk;
    for (const auto *m : targets) {
        if (m->api_url.empty()) {
            note("pg_hactl: " + m->name + " publishes no REST API address: not restarted");
            worst = std::max(worst, kExitFailed);
            continue;
        }
        auto rep = http_parallel({make_request(s, *m, "POST", "/restart", body.dump())}, kActionHttpMs);
        if (rep[0].ok && rep[0].status == 503 && rep[0].body.find("restart conditions are not satisfied") != std::string::npos) {
            std::cout << m->name << ": skipped (the restart conditions do not hold" << conditions << ")" << std::endl;
            continue;
        }
        if (rep[0].ok && rep[0].status >= 200 && rep[0].status < 300) {
            const std::string answer = trim(rep[0].body);
            std::cout << m->name << ": " << (answer.empty() ? "restarted" : answer) << std::endl;
            continue;
        }
        worst = std::max(worst, report_reply(rep[0], "restart " + m->name, s));
    }
    return worst;
}

}  // namespace pgha::cli
