#include "engine/commands.hpp"

#include <fcntl.h>
#include <unistd.h>
#include <zookeeper/zookeeper.h>

#include <algorithm>
#include <ctime>

#include "core/dynamic_config.hpp"
#include "core/patroni_codec.hpp"
#include "core/timeutil.hpp"

namespace pgha {
namespace {

const struct {
    CommandKind kind;
    const char *name;
} kKinds[] = {{CommandKind::Switchover, "switchover"},   {CommandKind::Failover, "failover"},
              {CommandKind::Pause, "pause"},             {CommandKind::Resume, "resume"},
              {CommandKind::SetConfig, "set_config"},    {CommandKind::ReplaceConfig, "replace_config"},
              {CommandKind::Reload, "reload"},           {CommandKind::Restart, "restart"},
              {CommandKind::Reinitialize, "reinitialize"}};

std::string jstr(const nlohmann::json &j, const char *k) {
    return j.contains(k) && j[k].is_string() ? j[k].get<std::string>() : std::string();
}

}  // namespace

const char *to_string(CommandKind k) {
    for (const auto &e : kKinds)
        if (e.kind == k) return e.name;
    return "unknown";
}

bool parse_command_kind(const std::string &s, CommandKind &out) {
    for (const auto &e : kKinds)
        if (s == e.name) {
            out = e.kind;
            return true;
        }
    return false;
}

Command::Command(CommandKind k, nlohmann::json a, std::int64_t deadline, AnswerFn done)
    : kind(k), args(std::move(a)), deadline_ms(deadline), done_(std::move(done)) {}

void Command::answer(int status, const std::string &message) {
    if (*answered_) return;
    *answered_ = true;
    if (done_) done_(status, message);
    if (after_answer) after_answer();
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

std::string merge_config(const nlohmann::json &current, const nlohmann::json &patch, bool replace,
                         nlohmann::json &merged) {
    merged = replace ? patch : current;
    if (!merged.is_object()) merged = nlohmann::json::object();
    if (!replace) merged.merge_patch(patch);  // RFC 7386: null deletes
    std::vector<std::string> errors;
    DynamicConfig cfg = DynamicConfig::from_json(merged, errors);
    for (const auto &e : cfg.validate()) errors.push_back(e);
    if (errors.empty()) return "";
    std::string msg = "invalid configuration:";
    for (const auto &e : errors) msg += " " + e + ";";
    msg.pop_back();
    return msg;
}

CommandDesk::CommandDesk(const EngineSettings &s, ClusterLink &link, LocalServer &local, Leadership &leadership,
                         Outbox &out, Background &bg, PeerHttp http, Clock clock, Waker &waker)
    : s_(s),
      link_(link),
      local_(local),
      leadership_(leadership),
      out_(out),
      bg_(bg),
      http_(std::move(http)),
      clock_(std::move(clock)),
      queue_(waker) {}

void CommandDesk::adopt(std::shared_ptr<Command> c) {
    // An HTTP thread still has to write the answer: do not stop the server
    // under it (e.g. the old leader after a switchover).
    c->after_answer = [this] { out_.hold_shutdown_until(clock_() + 500); };
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
    CommandKind kind;
    if (!j.is_object() || !j.contains("kind") || !j["kind"].is_string() || !parse_command_kind(j["kind"], kind)) {
        reply(400, "malformed request");
        return;
    }
    nlohmann::json args = j.contains("args") && j["args"].is_object() ? j["args"] : nlohmann::json::object();
    int timeout = j.contains("timeout_ms") && j["timeout_ms"].is_number_integer() ? j["timeout_ms"].get<int>() : 30000;
    if (pid > 0) protected_pids_.push_back(pid);
    adopt(std::make_shared<Command>(kind, args, clock_() + std::max(1000, timeout), reply));
}

void CommandDesk::intake_http() {
    for (auto &c : queue_.drain()) adopt(c);
}

void CommandDesk::run(bool handover_active) {
    const std::int64_t now = clock_();
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
    commands_.erase(std::remove_if(commands_.begin(), commands_.end(), [](const auto &c) { return c->answered(); }),
                    commands_.end());
    if (commands_.empty()) protected_pids_.clear();
}

void CommandDesk::start(const std::shared_ptr<Command> &c) {
    c->stage = Command::Stage::Writing;
    if (!link_.dcs_ok()) {
        c->answer(503, std::string("ZooKeeper is not reachable from this node: cannot ") + to_string(c->kind));
        return;
    }
    switch (c->kind) {
        case CommandKind::Switchover:
        case CommandKind::Failover: start_switchover(c); return;
        case CommandKind::Pause:
        case CommandKind::Resume: start_pause(c); return;
        case CommandKind::SetConfig:
        case CommandKind::ReplaceConfig: start_config(c); return;
        case CommandKind::Reload: start_reload(*c); return;
        case CommandKind::Restart:
        case CommandKind::Reinitialize: start_restart(c); return;
    }
}

void CommandDesk::start_switchover(const std::shared_ptr<Command> &cmd) {
    Command &c = *cmd;
    const auto &a = c.args;
    const ClusterView &view = link_.view();
    const std::string kind = to_string(c.kind);
    const std::string leader = view.leader ? *view.leader : "";
    std::string want_leader = jstr(a, "leader");
    std::string candidate = jstr(a, "candidate");
    if (candidate.empty()) candidate = jstr(a, "member");
    std::string scheduled = jstr(a, "scheduled_at");
    const bool sw = c.kind == CommandKind::Switchover;
    if (!sw && candidate.empty()) return c.answer(400, "Failover could be performed only to a specific candidate");
    if (!sw && !leader.empty() && a.contains("require_no_leader") && a["require_no_leader"] == true)
        return c.answer(412, "the cluster has a leader (" + leader + "): use a switchover to move a healthy primary");
    if (sw && leader.empty())
        return c.answer(412, "switchover is not possible: the cluster has no leader (use failover with a candidate)");
    if (!want_leader.empty() && want_leader != leader)
        return c.answer(412, "leader name does not match: the leader is " + (leader.empty() ? std::string("nobody") : leader));
    if (view.failover)
        return c.answer(409, "a switchover or failover is already pending (to " +
                                 (view.failover->candidate.empty() ? std::string("any member") : view.failover->candidate) +
                                 "); wait for it or clear it");
    if (view.config.pause && candidate.empty())
        return c.answer(412, "switchover is possible only to a specific candidate in a paused state");
    std::int64_t when = 0;
    if (!scheduled.empty()) {
        std::string err;
        if (!parse_iso8601(scheduled, when, err)) return c.answer(400, "Invalid scheduled_at: " + err);
        if (view.config.pause) return c.answer(412, "Can't schedule " + kind + " in the paused state");
        if (when < std::time(nullptr)) return c.answer(422, "Cannot schedule " + kind + " in the past");
    }
    if (!leader.empty()) {
        std::string target = candidate.empty() ? best_switchover_candidate(view, leader) : candidate;
        std::string why = target.empty() ? "no member can take over" : switchover_ineligibility(view, leader, target);
        if (!why.empty()) return c.answer(412, kind + " is not possible: " + why);
        // Without a named candidate the key names the chosen one, so no
        // other member (nor the old leader) takes the lock meanwhile.
        candidate = target;
    } else {
        const Member *m = view.member(candidate);
        if (!m) return c.answer(412, "failover is not possible: member " + candidate + " does not exist");
        if (m->tags.nofailover) return c.answer(412, "failover is not possible: " + candidate + " is tagged nofailover");
        if (m->state != "running")
            return c.answer(412, "failover is not possible: " + candidate + " is not running (state " + m->state + ")");
    }
    c.target = candidate;
    FailoverRequest f;
    f.leader = leader;
    f.candidate = candidate;
    f.scheduled_at = scheduled.empty() ? "" : format_iso8601(when);
    c.old_leader = leader;
    std::shared_ptr<Command> keep = cmd;
    link_.create("failover", encode_failover(f), false, [this, keep, scheduled, kind](int rc) {
        if (rc == ZNODEEXISTS) return keep->answer(409, "a switchover or failover is already pending");
        if (rc != ZOK) return keep->answer(503, "failed to write the failover key into ZooKeeper: " + zk_error_text(rc));
        if (!scheduled.empty())
            return keep->answer(202, keep->kind == CommandKind::Switchover ? "Switchover scheduled" : "Failover scheduled");
        keep->stage = Command::Stage::Waiting;
        out_.log(kind + " requested to " + keep->target);
    });
}

void CommandDesk::start_pause(const std::shared_ptr<Command> &cmd) {
    Command &c = *cmd;
    const bool p = c.kind == CommandKind::Pause;
    if (link_.view().config.pause == p)
        return c.answer(200, p ? "the cluster is already paused" : "the cluster is not paused");
    nlohmann::json merged;
    std::string err = merge_config(link_.view().config.raw, {{"pause", p}}, false, merged);
    if (!err.empty()) return c.answer(400, err);
    link_.write_config(merged.dump(), [cmd](int st, const std::string &msg) { cmd->answer(st, msg); });
}

void CommandDesk::start_config(const std::shared_ptr<Command> &cmd) {
    Command &c = *cmd;
    nlohmann::json patch = c.args.contains("config") ? c.args["config"] : c.args;
    if (!patch.is_object()) return c.answer(400, "the configuration must be a JSON object");
    nlohmann::json merged;
    std::string err = merge_config(link_.view().config.raw, patch, c.kind == CommandKind::ReplaceConfig, merged);
    if (!err.empty()) return c.answer(400, err);
    link_.write_config(merged.dump(), [cmd](int st, const std::string &msg) { cmd->answer(st, msg); });
}

void CommandDesk::start_reload(Command &c) {
    std::string err;
    if (local_.reload(err)) c.answer(202, "reload scheduled");
    else c.answer(503, "reload failed: " + err);
}

void CommandDesk::start_restart(const std::shared_ptr<Command> &keep) {
    Command &c = *keep;
    const bool reinit = c.kind == CommandKind::Reinitialize;
    std::string member = jstr(c.args, "member");
    if (member.empty() || member == s_.node_name) {
        if (reinit && leadership_.is_leader()) return c.answer(503, "I am the leader, can not reinitialize");
        if (reinit) {
            int fd = ::open((s_.data_dir + "/pg_ha.reinitialize").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
            if (fd < 0) return c.answer(503, "cannot mark the data directory for reinitialization");
            ::close(fd);
        }
        out_.log(std::string(to_string(c.kind)) + " requested: shutting down; pg_hactl boot " +
                 (reinit ? "clones a fresh copy from the leader" : "starts the server again"));
        if (leadership_.is_leader())
            out_.log("the leader restarts and keeps the leader lock: writes pause until it is back (a standby takes "
                     "over only if it is not back within ttl)");
        out_.shutdown = true;  // answering below delays the stop until the answer is out
        return c.answer(200, reinit ? "reinitialize started" : "restarted successfully");
    }
    const Member *m = link_.view().member(member);
    if (!m) return c.answer(404, "member " + member + " does not exist");
    // Forward to the member's API off the loop.
    PeerRequest r = peer_request(s_, member, member_api_endpoint(*m, std::string("/") + to_string(c.kind)), "POST");
    r.body = "{}";
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

// Switchover/failover requests wait until the new leader accepts writes.
void CommandDesk::poll(const std::shared_ptr<Command> &cmd, std::int64_t now, bool handover_active) {
    Command &c = *cmd;
    if (c.probe_in_flight || now < c.next_probe_ms) return;
    c.next_probe_ms = now + 50;
    const ClusterView &view = link_.view();
    const std::string leader = view.leader ? *view.leader : "";
    const std::string kind = c.kind == CommandKind::Switchover ? "switched" : "failed";
    if (view.failover) c.key_seen = true;
    if (!leader.empty() && leader != c.old_leader && (c.target.empty() || leader == c.target)) {
        const Member *m = view.member(leader);
        if (!m) return;
        PeerRequest r = peer_request(s_, leader, member_api_endpoint(*m, "/primary"));
        PeerHttp http = http_;
        c.probe_in_flight = true;
        bg_.submit([r, http, cmd, leader, kind]() -> Background::Continuation {
            auto rep = http({r}, 300);
            return [rep, cmd, leader, kind] {
                cmd->probe_in_flight = false;
                if (!rep.empty() && rep[0].ok && rep[0].status == 200)
                    cmd->answer(200, "Successfully " + kind + " over to \"" + leader + "\"");
            };
        });
        return;
    }
    if (!leader.empty() && leader != c.old_leader && !c.target.empty() && leader != c.target) {
        std::string k = c.kind == CommandKind::Switchover ? "Switched" : "Failed";
        return c.answer(200, k + " over to \"" + leader + "\" instead of \"" + c.target + "\"");
    }
    if (c.key_seen && !view.failover && link_.view_ok() && (leader.empty() || leader == c.old_leader) &&
        !handover_active)
        c.answer(503, c.kind == CommandKind::Switchover ? "Switchover failed (see the leader's log)"
                                                        : "Failover failed (see the log)");
}

}  // namespace pgha
