#include "core/operator_rules.hpp"

#include "core/sync_rules.hpp"
#include "core/timeutil.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

namespace pgha {

namespace {

struct CommandName {
    OperatorCommand command;
    const char *name;
};
constexpr CommandName kCommandNames[] = {
    {OperatorCommand::Switchover, "switchover"},       {OperatorCommand::Failover, "failover"},
    {OperatorCommand::Pause, "pause"},                 {OperatorCommand::Resume, "resume"},
    {OperatorCommand::SetConfig, "set_config"},        {OperatorCommand::ReplaceConfig, "replace_config"},
    {OperatorCommand::Reload, "reload"},               {OperatorCommand::Restart, "restart"},
    {OperatorCommand::Reinitialize, "reinitialize"},   {OperatorCommand::CancelRestart, "cancel_restart"},
};

Refusal refuse(int status, const std::string &message) { return Refusal{status, message}; }

}  // namespace

const char *to_string(OperatorCommand c) {
    for (const auto &n : kCommandNames)
        if (n.command == c) return n.name;
    return "unknown";
}

std::optional<OperatorCommand> parse_operator_command(const std::string &text) {
    for (const auto &n : kCommandNames)
        if (text == n.name) return n.command;
    return std::nullopt;
}

const char *to_string(SwitchoverProgress p) {
    switch (p) {
        case SwitchoverProgress::Waiting: return "waiting";
        case SwitchoverProgress::Done: return "done";
        case SwitchoverProgress::Diverted: return "diverted";
        case SwitchoverProgress::Failed: return "failed";
    }
    return "unknown";
}

std::string switchover_ineligibility(const ClusterView &c, const std::string &leader, const std::string &candidate) {
    if (candidate == leader) return candidate + " is already the leader";
    const Member *m = c.member(candidate);
    if (!m) return "member " + candidate + " does not exist";
    if (m->tags.nofailover) return candidate + " is tagged nofailover";
    if (m->state != "running") return candidate + " is not running (state " + m->state + ")";
    if (m->role == "primary") return candidate + " runs as a primary";
    return sync_ineligibility(c, candidate);
}

std::string best_switchover_candidate(const ClusterView &c, const std::string &leader) {
    std::string best;
    Lsn best_pos = 0;
    for (const auto &m : c.members) {
        if (!switchover_ineligibility(c, leader, m.name).empty()) continue;
        if (best.empty() || c.position_of(m) > best_pos) {
            best = m.name;
            best_pos = c.position_of(m);
        }
    }
    return best;
}

std::string choose_switchover_target(const ClusterView &c, const std::string &leader, const std::string &candidate,
                                     std::string &target) {
    target = candidate.empty() ? best_switchover_candidate(c, leader) : candidate;
    if (target.empty()) return "no member can take over";
    return switchover_ineligibility(c, leader, target);
}

int primary_stop_kill_after_s(const DynamicConfig &cfg, bool local_primary) {
    return local_primary && cfg.synchronous_mode && cfg.primary_stop_timeout > 0 ? cfg.primary_stop_timeout : 0;
}

std::string restart_marker_text(int timeout_s) {
    return timeout_s > 0 ? "timeout=" + std::to_string(timeout_s) + "\n" : std::string();
}

int restart_marker_timeout(const std::string &text) {
    if (text.rfind("timeout=", 0) != 0) return 0;
    const std::string digits = text.substr(8, text.find_first_not_of("0123456789", 8) - 8);
    if (digits.empty() || digits.size() > 9) return 0;
    return std::stoi(digits);
}

std::string crash_failover_target(const ClusterView &view, const std::string &me, bool crashed_primary,
                                  int recovering_s, std::optional<int> start_timeout_s) {
    const int timeout = start_timeout_s.value_or(view.config.master_start_timeout);
    if (!crashed_primary || view.config.pause || recovering_s < 0 || timeout > recovering_s) return std::string();
    if (!view.leader || *view.leader != me) return std::string();
    return best_switchover_candidate(view, me);
}

SwitchoverCheck check_switchover(const ClusterView &view, const SwitchoverRequest &req, std::int64_t now_epoch_s) {
    const std::string kind = req.failover ? "failover" : "switchover";
    const std::string leader = view.leader.value_or("");
    if (req.failover && req.candidate.empty()) return refuse(400, "Failover could be performed only to a specific candidate");
    if (req.failover && req.require_no_leader && !leader.empty())
        return refuse(412, "the cluster has a leader (" + leader + "): use a switchover to move a healthy primary");
    if (!req.failover && leader.empty())
        return refuse(412, "switchover is not possible: the cluster has no leader (use failover with a candidate)");
    if (!req.leader.empty() && req.leader != leader)
        return refuse(412, "leader name does not match the current leader " +
                               (leader.empty() ? std::string("(nobody)") : leader));
    if (view.failover)
        return refuse(409, "a switchover or failover is already pending (to " +
                               (view.failover->candidate.empty() ? std::string("any member") : view.failover->candidate) +
                               (view.failover->scheduled_at.empty() ? std::string() : ", at " + view.failover->scheduled_at) +
                               "); wait for it or clear it");
    if (view.config.pause && req.candidate.empty())
        return refuse(412, "switchover is possible only to a specific candidate in a paused state");
    SwitchoverPlan plan;
    plan.leader = leader;
    plan.target = req.candidate;
    if (!req.scheduled_at.empty()) {
        std::int64_t when = 0;
        std::string err;
        if (!parse_iso8601(req.scheduled_at, when, err)) return refuse(400, "Invalid scheduled_at: " + err);
        if (view.config.pause) return refuse(412, "Can't schedule " + kind + " in the paused state");
        if (when < now_epoch_s) return refuse(422, "Cannot schedule " + kind + " in the past");
        plan.scheduled_at = format_iso8601(when);
    }
    if (!leader.empty()) {
        std::string target;
        const std::string why = choose_switchover_target(view, leader, req.candidate, target);
        if (!why.empty()) return refuse(412, kind + " is not possible: " + why);
        // An immediate switchover without a named candidate names the chosen
        // member in the key: no other member, and not the old leader, may
        // take the lock it releases. (A scheduled one picks when it is due.)
        if (plan.scheduled_at.empty()) plan.target = target;
        return plan;
    }
    // Leader-less failover: the candidate takes the free lock itself.
    const Member *m = view.member(req.candidate);
    if (!m) return refuse(412, "failover is not possible: member " + req.candidate + " does not exist");
    if (m->tags.nofailover) return refuse(412, "failover is not possible: " + req.candidate + " is tagged nofailover");
    if (m->state != "running")
        return refuse(412, "failover is not possible: " + req.candidate + " is not running (state " + m->state + ")");
    if (const std::string why = sync_ineligibility(view, req.candidate); !why.empty())
        return refuse(412, "failover is not possible: " + why);
    return plan;
}

SwitchoverAssessment assess_switchover(const ClusterView &view, OperatorCommand kind, const std::string &old_leader,
                                       const std::string &target, bool key_seen, bool primary_answers_200) {
    const bool sw = kind == OperatorCommand::Switchover;
    const std::string leader = view.leader.value_or("");
    SwitchoverAssessment a;
    if (!leader.empty() && leader != old_leader) {
        if (!target.empty() && leader != target) {
            a.progress = SwitchoverProgress::Diverted;
            a.message = std::string(sw ? "Switched" : "Failed") + " over to \"" + leader + "\" instead of \"" + target + "\"";
            return a;
        }
        // The lock moved to the target: done once it accepts writes.
        if (primary_answers_200) {
            a.progress = SwitchoverProgress::Done;
            a.message = std::string("Successfully ") + (sw ? "switched" : "failed") + " over to \"" + leader + "\"";
            return a;
        }
        const Member *m = view.member(leader);
        if (m && !m->api_url.empty()) a.probe = leader;
        return a;
    }
    if (key_seen && !view.failover && (leader.empty() || leader == old_leader)) {
        a.progress = SwitchoverProgress::Failed;
        a.message = std::string(sw ? "Switchover" : "Failover") + " failed: " +
                    (leader.empty() ? std::string("nobody holds the leader lock") : leader + " is still the leader") +
                    " and the failover key is gone (see the members' logs)";
    }
    return a;
}

// ---- POST /restart conditions ----------------------------------------------------

int postgres_version_to_int(const std::string &version) {
    std::vector<int> parts;
    std::size_t start = 0;
    for (;;) {
        const std::size_t dot = version.find('.', start);
        const std::string part = version.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
        if (part.empty() || part.size() > 4 || part.find_first_not_of("0123456789") != std::string::npos) return -1;
        parts.push_back(std::stoi(part));
        if (dot == std::string::npos) break;
        start = dot + 1;
    }
    // X.Y (10 and later) or X.Y.Z (9.x and before), as Patroni accepts them
    if (parts.size() < 2 || parts.size() > 3 || (parts.size() == 2 && parts[0] < 10)) return -1;
    if (parts.size() == 2) return parts[0] * 10000 + parts[1];
    return (parts[0] * 100 + parts[1]) * 100 + parts[2];
}

std::variant<Refusal, RestartRequest> parse_restart_request(const nlohmann::json &body, std::int64_t now_epoch_s,
                                                            bool paused) {
    RestartRequest r;
    if (!body.is_object()) return Refusal{400, "Bad request: the body must be a JSON object"};
    if (paused && body.contains("schedule")) return Refusal{500, "Can't schedule restart in the paused state"};
    for (auto it = body.begin(); it != body.end(); ++it) {
        const std::string &k = it.key();
        const nlohmann::json &v = it.value();
        if (k == "role") {
            const std::string role = v.is_string() ? v.get<std::string>() : std::string();
            if (role != "primary" && role != "master" && role != "replica")
                return Refusal{400, "PostgreSQL role should be either primary or replica"};
            r.role = role == "master" ? "primary" : role;
        } else if (k == "postgres_version") {
            const int n = v.is_string() ? postgres_version_to_int(v.get<std::string>()) : -1;
            if (n < 0)
                return Refusal{400, "Invalid PostgreSQL version format: X.Y or X.Y.Z is accepted: " +
                                        (v.is_string() ? v.get<std::string>() : v.dump())};
            r.postgres_version = n;
            r.postgres_version_text = v.get<std::string>();
        } else if (k == "timeout") {
            const bool ok = (v.is_number_integer() && v.get<long long>() > 0) ||
                            (v.is_number_float() && v.get<double>() > 0 && v.get<double>() < 1e9);
            if (!ok) return Refusal{400, "Timeout should be a positive number of seconds"};
            r.timeout_s = v.is_number_integer() ? static_cast<int>(std::min<long long>(v.get<long long>(), 999999999))
                                                : static_cast<int>(std::ceil(v.get<double>()));
        } else if (k == "restart_pending") {
            r.restart_pending = true;  // Patroni: the key's presence
        } else if (k == "schedule") {
            std::string err;
            std::int64_t at = 0;
            if (!v.is_string()) return Refusal{400, "Unable to parse scheduled timestamp: it must be a string"};
            if (!parse_iso8601(v.get<std::string>(), at, err))
                return Refusal{400, "Unable to parse scheduled timestamp (" + err +
                                        "). It should be in an unambiguous format with a time zone, e.g. ISO 8601"};
            if (at < now_epoch_s) return Refusal{422, "Cannot schedule restart in the past"};
            r.schedule_epoch_s = at;
            r.schedule = format_iso8601(at);
            if (r.schedule.empty()) return Refusal{422, "Unable to parse scheduled timestamp: out of range"};
        } else {
            return Refusal{400, "Unknown filter for the scheduled restart: " + k};
        }
    }
    return r;
}

ScheduledRestart published(const RestartRequest &r) {
    ScheduledRestart p;
    p.schedule = r.schedule;
    p.role = r.role;
    p.postgres_version = r.postgres_version_text;
    p.restart_pending = r.restart_pending;
    return p;
}

ScheduledStep scheduled_restart_step(std::int64_t at_epoch_s, std::int64_t now_epoch_s, int loop_wait_s, bool paused) {
    if (paused || now_epoch_s < at_epoch_s) return ScheduledStep::Wait;
    // Patroni: stale when more than int(1.5 x loop_wait) late
    if (now_epoch_s - at_epoch_s > (3 * static_cast<std::int64_t>(std::max(loop_wait_s, 1))) / 2)
        return ScheduledStep::Stale;
    return ScheduledStep::Run;
}

const char *to_string(ScheduledStep s) {
    switch (s) {
        case ScheduledStep::Wait: return "wait";
        case ScheduledStep::Run: return "run";
        case ScheduledStep::Stale: return "stale";
    }
    return "wait";
}

std::string restart_mismatch(const RestartRequest &r, bool is_primary, int server_version_num, bool pending_restart) {
    if (!r.role.empty() && r.role != (is_primary ? "primary" : "replica")) return "host role mismatch";
    if (r.postgres_version != 0 && r.postgres_version <= server_version_num) return "postgres version mismatch";
    if (r.restart_pending && !pending_restart) return "pending restart flag is not set";
    return std::string();
}

bool is_standby_directory(const std::string &cluster_state, bool standby_signal) {
    return standby_signal || cluster_state == "in archive recovery" || cluster_state == "shut down in recovery";
}

RejoinPath rejoin_path(const std::string &cluster_state, bool standby_signal, int local_tl, int leader_tl) {
    const bool older = leader_tl > 0 && local_tl > 0 && local_tl < leader_tl;
    if (is_standby_directory(cluster_state, standby_signal)) {
        if (!older) return RejoinPath::Follow;
        if (cluster_state == "in archive recovery") return RejoinPath::FollowCrashed;
        if (cluster_state == "shut down in recovery") return RejoinPath::Rewind;
        // standby.signal beside a primary's control file (written by a boot
        // whose server never started): the primary's rules.
    }
    if (cluster_state == "in production" || cluster_state == "shut down") return RejoinPath::CheckPrimaryWal;
    return RejoinPath::Rewind;
}

const char *to_string(RejoinPath p) {
    switch (p) {
        case RejoinPath::Follow: return "follow";
        case RejoinPath::FollowCrashed: return "follow-crashed";
        case RejoinPath::CheckPrimaryWal: return "check-primary-wal";
        case RejoinPath::Rewind: return "rewind";
    }
    return "rewind";
}

}  // namespace pgha
