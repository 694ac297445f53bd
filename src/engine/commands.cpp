#include "engine/commands.hpp"
#include "core/json_text.hpp"

#include <fcntl.h>
#include <unistd.h>
#include <zookeeper/zookeeper.h>

#include <algorithm>
#include <ctime>
#include <optional>
#include <variant>

#include "core/dynamic_config.hpp"
#include "core/operator_rules.hpp"
#include "core/patroni_codec.hpp"
#include "core/timeutil.hpp"

namespace pgha {
namespace {

std::string jstr(const nlohmann::json &j, const char *k) {
    return j.contains(k) && j[k].is_string() ? j[k].get<std::string>() : std::string();
}

}  // namespace

Command::Command(OperatorCommand k, nlohmann::json a, std::int64_t deadline, AnswerFn done)
    : kind(k), args(std::move(a)), deadline_ms(deadline), done_(std::move(done)) {}

void Command::answer(int status, const std::string &message) {
    if (*answered_) return;
    *answered_ = true;
    if (done_) done_(status, message);
}

void CommandQueue::push(std::shared_ptr<Command> c) {
    {
        std::lock_guard<std::mutex> g(mu_);
        q_.push_back(std::move(c));
    }
    waker_.signal();
}

std::vector<std::shared_ptr<Command>> CommandQueue::drain() {
    std::lock_guard<std::mutex> g(mu_);
    std::vector<std::shared_ptr<Command>> out(q_.begin(), q_.end());
    q_.clear();
    return out;
}

CommandDesk::CommandDesk(const EngineSettings &s, ClusterLink &link, LocalServer &local, Leadership &leadership,
                         Outbox &out, Background &bg, PeerHttp http, Clock clock, Clock wall_clock, Waker &waker)
    : s_(s),
      link_(link),
      local_(local),
      leadership_(leadership),
      out_(out),
      bg_(bg),
      http_(std::move(http)),
      clock_(std::move(clock)),
      wall_clock_(std::move(wall_clock)),
      queue_(waker) {}

void CommandDesk::adopt(std::shared_ptr<Command> c) {
    commands_.push_back(std::move(c));
}

void CommandDesk::take_sql_request(std::uint64_t id, const std::string &json, int pid) {
    if (id == 0 || id == sql_request_seen_) return;
    sql_request_seen_ = id;
    AnswerFn reply = [this, id](int st, const std::string &msg) {
        reply_id_ = id;
        reply_status_ = st;
        reply_message_ = msg;
    };
    nlohmann::json j = nlohmann::json::parse(json, nullptr, false);
    std::optional<OperatorCommand> kind;
    if (j.is_object() && j.contains("kind") && j["kind"].is_string()) kind = parse_operator_command(j["kind"]);
    if (!kind) {
        reply(400, "malformed request");
        return;
    }
    nlohmann::json args = j.contains("args") && j["args"].is_object() ? j["args"] : nlohmann::json::object();
    int timeout = j.contains("timeout_ms") && j["timeout_ms"].is_number_integer() ? j["timeout_ms"].get<int>() : 30000;
    if (pid > 0) protected_pids_.push_back(pid);
    auto c = std::make_shared<Command>(*kind, args, clock_() + std::max(1000, timeout), reply);
    c->caller_pid = pid;
    adopt(std::move(c));
}

void CommandDesk::intake_http() {
    for (auto &c : queue_.drain()) adopt(c);
}

void CommandDesk::run(bool handover_active) {
    run_scheduled_restart();
    const std::int64_t now = clock_();
    delivering_.erase(std::remove_if(delivering_.begin(), delivering_.end(),
                                     [&](const Delivery &d) { return now >= d.until_ms || d.cmd->delivered(); }),
                      delivering_.end());
    for (auto &c : commands_) {
        if (c->answered()) continue;
        switch (c->stage) {
            case Command::Stage::New:
                // The members' states in our view may be a loop old: read first.
                c->need_view = link_.view_seq() + (link_.reading() ? 2 : 1);
                link_.request_read();
                c->stage = Command::Stage::Validating;
                [[fallthrough]];
            case Command::Stage::Validating:
                if (link_.view_seq() >= c->need_view || !link_.connected()) start(c);
                break;
            case Command::Stage::Writing:
                break;
            case Command::Stage::Waiting:
                poll(c, now, handover_active);
                break;
        }
        if (!c->answered() && now > c->deadline_ms) c->answer(503, std::string(to_string(c->kind)) + " status unknown: timed out");
    }
    for (auto &c : commands_)
        if (c->answered()) delivering_.push_back({c, now + 500});
    commands_.erase(std::remove_if(commands_.begin(), commands_.end(), [](const auto &c) { return c->answered(); }),
                    commands_.end());
    if (commands_.empty()) protected_pids_.clear();
}

bool CommandDesk::holds_shutdown() {
    const std::int64_t now = clock_();
    delivering_.erase(std::remove_if(delivering_.begin(), delivering_.end(),
                                     [&](const Delivery &d) {
                                         if (now >= d.until_ms || d.cmd->delivered()) return true;
                                         // SQL: the result is on its way once the caller's statement ended.
                                         return d.cmd->caller_pid > 0 && !local_.backend_active(d.cmd->caller_pid);
                                     }),
                      delivering_.end());
    return !commands_.empty() || !delivering_.empty();
}

void CommandDesk::start(const std::shared_ptr<Command> &c) {
    c->stage = Command::Stage::Writing;
    if (c->kind == OperatorCommand::CancelRestart) return cancel_restart(*c);  // local: no ZooKeeper needed
    if (!link_.dcs_ok()) {
        c->answer(503, std::string("ZooKeeper is not reachable from this node: cannot ") + to_string(c->kind));
        return;
    }
    switch (c->kind) {
        case OperatorCommand::Switchover:
        case OperatorCommand::Failover: start_switchover(c); return;
        case OperatorCommand::Pause:
        case OperatorCommand::Resume:
        case OperatorCommand::SetConfig:
        case OperatorCommand::ReplaceConfig: start_config(c); return;
        case OperatorCommand::Reload: start_reload(*c); return;
        case OperatorCommand::Restart:
        case OperatorCommand::Reinitialize: start_restart(c); return;
        case OperatorCommand::CancelRestart: cancel_restart(*c); return;
    }
}

void CommandDesk::start_switchover(const std::shared_ptr<Command> &cmd) {
    const auto &a = cmd->args;
    SwitchoverRequest req;
    req.failover = cmd->kind == OperatorCommand::Failover;
    req.leader = jstr(a, "leader");
    req.candidate = jstr(a, "candidate");
    if (req.candidate.empty()) req.candidate = jstr(a, "member");
    req.scheduled_at = jstr(a, "scheduled_at");
    req.require_no_leader = a.contains("require_no_leader") && a["require_no_leader"] == true;
    SwitchoverCheck check = check_switchover(link_.view(), req, wall_now_s());
    if (const Refusal *r = std::get_if<Refusal>(&check)) return cmd->answer(r->http_status, r->message);
    const SwitchoverPlan &plan = std::get<SwitchoverPlan>(check);
    cmd->target = plan.target;
    cmd->old_leader = plan.leader;
    const std::string kind = to_string(cmd->kind);
    const bool scheduled = !plan.scheduled_at.empty();
    link_.create("failover", encode_failover(plan.failover_key()), false, [this, cmd, scheduled, kind](int rc) {
        if (rc == ZNODEEXISTS) return cmd->answer(409, "a switchover or failover is already pending");
        if (rc != ZOK) return cmd->answer(503, "failed to write the failover key into ZooKeeper: " + zk_error_text(rc));
        if (scheduled)
            return cmd->answer(202, cmd->kind == OperatorCommand::Switchover ? "Switchover scheduled" : "Failover scheduled");
        cmd->stage = Command::Stage::Waiting;
        out_.log(kind + " requested" + (cmd->target.empty() ? std::string() : " to " + cmd->target));
    });
}

// pause / resume / PATCH / PUT: a validated, versioned write of the config key.
void CommandDesk::start_config(const std::shared_ptr<Command> &cmd) {
    nlohmann::json patch;
    bool replace = cmd->kind == OperatorCommand::ReplaceConfig;
    if (cmd->kind == OperatorCommand::Pause || cmd->kind == OperatorCommand::Resume) {
        const bool p = cmd->kind == OperatorCommand::Pause;
        if (link_.view().config.pause == p)
            return cmd->answer(200, p ? "the cluster is already paused" : "the cluster is not paused");
        patch = {{"pause", p}};
    } else {
        patch = cmd->args.contains("config") ? cmd->args["config"] : cmd->args;
        if (!patch.is_object()) return cmd->answer(400, "the configuration must be a JSON object");
    }
    ConfigPatchResult r = apply_config_patch(link_.view().config.raw, patch, replace);
    if (!r.ok()) return cmd->answer(400, config_errors_text(r.errors));
    link_.write_config(json_text(r.merged),
                       [cmd](int st, const std::string &msg) { cmd->answer(st, msg); });
}

void CommandDesk::start_reload(Command &c) {
    std::string err;
    if (local_.reload(err)) c.answer(202, "reload scheduled");
    else c.answer(503, "reload failed: " + err);
}

void CommandDesk::start_restart(const std::shared_ptr<Command> &keep) {
    Command &c = *keep;
    const bool reinit = c.kind == OperatorCommand::Reinitialize;
    std::string member = jstr(c.args, "member");
    nlohmann::json conditions = c.args.is_object() ? c.args : nlohmann::json::object();
    conditions.erase("member");
    int timeout_s = 0;
    if (!reinit) {
        // POST /restart's conditions, checked where the restart happens (Patroni's codes)
        auto parsed = parse_restart_request(conditions, wall_now_s(), link_.view().config.pause);
        if (const Refusal *r = std::get_if<Refusal>(&parsed)) return c.answer(r->http_status, r->message);
        const RestartRequest &req = std::get<RestartRequest>(parsed);
        timeout_s = req.timeout_s;
        if ((member.empty() || member == s_.node_name) && req.schedule_epoch_s != 0) {
            // Patroni checks the conditions when the restart is due, not now.
            if (scheduled_) return c.answer(409, "Another restart is already scheduled");
            scheduled_ = req;
            out_.log("restart scheduled at " + req.schedule);
            return c.answer(202, "Restart scheduled");
        }
        if (member.empty() || member == s_.node_name) {
            const std::string why = restart_mismatch(req, leadership_.is_leader(),
                                                     local_.sample().server_version, local_.pending_restart());
            if (!why.empty()) {
                out_.log("not restarting: " + why);
                return c.answer(503, "restart conditions are not satisfied");
            }
        }
    }
    if (member.empty() || member == s_.node_name) return restart_now(&c, reinit, timeout_s);
    const Member *m = link_.view().member(member);
    if (!m) return c.answer(404, "member " + member + " does not exist");
    // Forward to the member's API off the loop.
    PeerRequest r = peer_request(s_, member, m->api_endpoint(std::string("/") + to_string(c.kind)), "POST");
    r.body = conditions.dump();
    PeerHttp http = http_;
    bg_.submit([r, http, keep, member]() -> Background::Continuation {
        auto rep = http({r}, 5000);
        return [rep, keep, member] {
            if (rep.empty() || !rep[0].ok)
                keep->answer(503, member + " did not answer: " + (rep.empty() ? std::string("no reply") : rep[0].error));
            else keep->answer(static_cast<int>(rep[0].status), rep[0].body);
        };
    });
}

// Shut down for pg_hactl boot to start again (or clone afresh); `c` (if any)
// is answered.
void CommandDesk::restart_now(Command *c, bool reinit, int timeout_s) {
    if (reinit && leadership_.is_leader()) return c->answer(503, "I am the leader, can not reinitialize");
    // pg_ha.restart tells pg_hactl boot that the server stopped on request,
    // not in a crash (the leader stops in immediate mode to keep its lock):
    // primary_start_timeout 0 must not hand the lock over for a restart.
    // Its text carries the restart's "timeout" (the next start's primary_start_timeout).
    int fd = ::open((s_.data_dir + (reinit ? "/pg_ha.reinitialize" : std::string("/") + kRestartMarkerFile)).c_str(),
                    O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 && reinit) return c->answer(503, "cannot mark the data directory for reinitialization");
    if (fd >= 0) {
        const std::string text = reinit ? std::string() : restart_marker_text(timeout_s);
        if (!text.empty() && ::write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size()))
            out_.log("cannot record the restart's timeout in pg_ha.restart: the config key's primary_start_timeout "
                     "applies");
        ::close(fd);
    }
    out_.log(std::string(reinit ? "reinitialize" : c ? "restart" : "scheduled restart") +
             " requested: shutting down; pg_hactl boot " +
             (reinit ? "clones a fresh copy from the leader" : "starts the server again"));
    if (leadership_.is_leader())
        out_.log("the leader restarts and keeps the leader lock: writes pause until it is back (a standby takes "
                 "over only if it is not back within ttl)");
    scheduled_.reset();  // the restart it stood for happens now
    out_.shutdown = true;  // answering below delays the stop until the answer is out
    if (c) c->answer(200, reinit ? "reinitialize started" : "restarted successfully");
}

void CommandDesk::cancel_restart(Command &c) {
    if (!scheduled_) return c.answer(404, "no restarts are scheduled");
    out_.log("scheduled restart at " + scheduled_->schedule + " deleted");
    scheduled_.reset();
    c.answer(200, "scheduled restart deleted");
}

void CommandDesk::run_scheduled_restart() {
    if (!scheduled_ || out_.shutdown) return;
    const ClusterView &view = link_.view();
    switch (scheduled_restart_step(scheduled_->schedule_epoch_s, wall_now_s(), (view.config.loop_wait_ms + 999) / 1000,
                                   view.config.pause)) {
        case ScheduledStep::Wait: return;
        case ScheduledStep::Stale:
            out_.log("WARNING: found a stale scheduled restart (" + scheduled_->schedule + "), cleaning up");
            scheduled_.reset();
            return;
        case ScheduledStep::Run: break;
    }
    const std::string why = restart_mismatch(*scheduled_, leadership_.is_leader(), local_.sample().server_version,
                                             local_.pending_restart());
    if (!why.empty()) {
        out_.log("scheduled restart at " + scheduled_->schedule + " cancelled: " + why);
        scheduled_.reset();
        return;
    }
    out_.log("scheduled restart at " + scheduled_->schedule + " is due");
    restart_now(nullptr, false, scheduled_->timeout_s);
}

// Switchover/failover requests wait until the new leader accepts writes
// (core/operator_rules decides; we only probe /primary when it asks).
void CommandDesk::poll(const std::shared_ptr<Command> &cmd, std::int64_t now, bool handover_active) {
    Command &c = *cmd;
    if (c.probe_in_flight || now < c.next_probe_ms) return;
    c.next_probe_ms = now + 50;
    const ClusterView &view = link_.view();
    if (view.failover) c.key_seen = true;
    // This node stops (the old leader, demoted): it cannot wait for the new
    // leader's /primary, which comes only after our stream ended (the new
    // leader promotes once it has our shutdown checkpoint). The lock moved:
    // that is the answer, as Patroni gives it.
    SwitchoverAssessment a = assess_switchover(view, c.kind, c.old_leader, c.target, c.key_seen, out_.shutdown);
    switch (a.progress) {
        case SwitchoverProgress::Done:
        case SwitchoverProgress::Diverted: return c.answer(200, a.message);
        case SwitchoverProgress::Failed:
            // Our own handover may still be releasing the lock; a stale view decides nothing.
            if (!handover_active && link_.view_ok()) c.answer(503, a.message);
            return;
        case SwitchoverProgress::Waiting: break;
    }
    const Member *m = a.probe.empty() ? nullptr : view.member(a.probe);
    if (!m) return;
    PeerRequest r = peer_request(s_, m->name, m->api_endpoint("/primary"));
    PeerHttp http = http_;
    c.probe_in_flight = true;
    ClusterView snapshot = view;
    bg_.submit([r, http, cmd, snapshot]() -> Background::Continuation {
        auto rep = http({r}, 300);
        const bool up = !rep.empty() && rep[0].ok && rep[0].status == 200;
        return [cmd, snapshot, up] {
            cmd->probe_in_flight = false;
            if (!up) return;
            SwitchoverAssessment done = assess_switchover(snapshot, cmd->kind, cmd->old_leader, cmd->target,
                                                          cmd->key_seen, true);
            if (done.progress == SwitchoverProgress::Done) cmd->answer(200, done.message);
        };
    });
}

}  // namespace pgha
