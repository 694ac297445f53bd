// The operator's commands and the rules for switchover and failover, in one
// place for everyone who applies them: the engine (REST and SQL requests),
// the state machine (the leader acting on the `failover` key) and pg_hactl.
// Pure: no I/O, no clocks (the caller passes the time).
#pragma once
#include "core/no_postgres.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <variant>

#include "core/cluster.hpp"
#include <nlohmann/json.hpp>

namespace pgha {

// What an operator can ask a member to do (REST, SQL or pg_hactl).
enum class OperatorCommand {
    Switchover,
    Failover,
    Pause,
    Resume,
    SetConfig,      // PATCH /config, ha_set_config(): a merge patch
    ReplaceConfig,  // PUT /config: the whole configuration
    Reload,
    Restart,
    Reinitialize,
    CancelRestart,  // DELETE /restart: drop this node's scheduled restart
};
// "switchover", "failover", "pause", "resume", "set_config", "replace_config",
// "reload", "restart", "reinitialize", "cancel_restart" (the names the SQL
// request slot and the REST paths use).
const char *to_string(OperatorCommand c);
std::optional<OperatorCommand> parse_operator_command(const std::string &text);

// ---- may this switchover/failover start? -----------------------------------

struct SwitchoverRequest {
    bool failover = false;          // failover (also leader-less) instead of switchover
    std::string leader;             // the leader the operator expects; "" = not checked
    std::string candidate;          // "" = the leader picks the most suitable member
    std::string scheduled_at;       // ISO 8601 with zone; "" = now
    bool require_no_leader = false; // ha_failover(): refuse while a leader exists
};

// The request is refused: answer `http_status` with `message` (Patroni's
// wording where Patroni has one). pg_hactl prints the message.
struct Refusal {
    int http_status = 412;
    std::string message;
};

// The request may go ahead: write `failover_key()` and wait for `target`.
struct SwitchoverPlan {
    std::string leader;        // the current leader ("" for a leader-less failover)
    std::string target;        // the named candidate, or for an immediate switchover the chosen member;
                               // "" = the leader picks when a scheduled switchover is due
    std::string scheduled_at;  // normalised (format_iso8601), "" = now
    FailoverRequest failover_key() const { return FailoverRequest{leader, target, scheduled_at}; }
};

using SwitchoverCheck = std::variant<Refusal, SwitchoverPlan>;

// Every precondition of a switchover or failover, checked in this order:
// failover without candidate (400); require_no_leader with a leader (412);
// switchover without leader (412); leader mismatch (412); a pending request
// (409); paused without candidate (412); scheduled_at unparsable (400),
// while paused (412), in the past (422); candidate eligibility (412).
SwitchoverCheck check_switchover(const ClusterView &view, const SwitchoverRequest &req, std::int64_t now_epoch_s);

// Whether `candidate` may receive the lock by switchover from the running
// leader (it catches up during the handover, so lag does not count). "" = yes,
// else the reason, e.g. "pg-3 is tagged nofailover".
std::string switchover_ineligibility(const ClusterView &c, const std::string &leader, const std::string &candidate);

// The member a switchover without a named candidate goes to: the most
// advanced eligible member ("" when there is none).
std::string best_switchover_candidate(const ClusterView &c, const std::string &leader);

// The switchover target: `candidate` when named, else the best member. Sets
// `target` and returns "" when it may take over, else the reason
// ("no member can take over" when nobody can).
std::string choose_switchover_target(const ClusterView &c, const std::string &leader, const std::string &candidate,
                                     std::string &target);

// ---- did it happen? -----------------------------------------------------------

enum class SwitchoverProgress {
    Waiting,   // not decided yet: look again later (probe `probe` first, if set)
    Done,      // the target (or any new leader, if none was named) leads and accepts writes
    Diverted,  // another member than the named target took over (still a success: HTTP 200)
    Failed,    // the request is gone and the old leader still leads (or nobody does)
};
const char *to_string(SwitchoverProgress p);

struct SwitchoverAssessment {
    SwitchoverProgress progress = SwitchoverProgress::Waiting;
    std::string message;  // Done/Diverted/Failed: the answer, in Patroni's words
    // Waiting: the new leader whose GET /primary must answer 200 before the
    // switchover counts as done; probe it and call again with the result.
    std::string probe;
};

// One look at the cluster after the failover key was written.
//   old_leader            the leader when the request was made ("" = none)
//   target                the named candidate ("" = any member but old_leader)
//   key_seen              the failover key was seen since the request (its
//                         disappearance then means the request was consumed)
//   primary_answers_200   the last probe of `probe` answered 200
SwitchoverAssessment assess_switchover(const ClusterView &view, OperatorCommand kind, const std::string &old_leader,
                                       const std::string &target, bool key_seen, bool primary_answers_200);

// Patroni's primary_start_timeout: the member a primary that crashed hands
// its lock to once it has been recovering for `recovering_s` seconds, at
// least primary_start_timeout (0: at once, "Primary crashed. Failing over.";
// pg_hactl boot asks with 0 before starting a primary whose control file says
// it was not shut down, the worker asks every loop while the server is in
// crash recovery). "" = keep the lock: not crashed, not yet timed out, the
// cluster is paused, `me` does not hold the lock, or nobody can take over
// (the switchover rules: running, not nofailover, within
// maximum_lag_on_failover, the synchronous rules).
// `start_timeout_s` replaces the config key's primary_start_timeout when set
// (a restart's "timeout").
std::string crash_failover_target(const ClusterView &view, const std::string &me, bool crashed_primary,
                                  int recovering_s = 0, std::optional<int> start_timeout_s = std::nullopt);

// How pg_hactl boot brings back an existing data directory while another
// member leads, from pg_controldata's "Database cluster state", whether
// standby.signal exists and the timelines (0 = unknown).
//   Follow          a standby directory on the leader's timeline: follow it.
//   FollowCrashed   a standby directory that did not shut down cleanly ("in
//                   archive recovery": a crashed standby, or a rewind whose
//                   server never started), on an older timeline. If its WAL
//                   ends, and its minimum recovery point lies, at or before
//                   the leader's switch point, it starts as the leader's
//                   standby (PostgreSQL's standby recovery reads what its
//                   pg_wal lacks from the leader). Otherwise it is started in
//                   standby mode on its own timeline and stopped cleanly,
//                   then rewound. Never crash recovery in single-user mode:
//                   that ends recovery on the old timeline, without the
//                   archive or the leader, and once read a segment of the new
//                   timeline whose start the walreceiver never wrote.
//   CheckPrimaryWal a primary's directory ("in production", "shut down"):
//                   rewind only if its WAL ends after the leader's fork.
//   Rewind          pg_rewind (a primary's directory that is not shut down is
//                   first recovered in single-user mode).
enum class RejoinPath { Follow, FollowCrashed, CheckPrimaryWal, Rewind };
bool is_standby_directory(const std::string &cluster_state, bool standby_signal);
RejoinPath rejoin_path(const std::string &cluster_state, bool standby_signal, int local_tl, int leader_tl);
const char *to_string(RejoinPath p);

// Patroni's primary_stop_timeout: how long a primary's shutdown may take
// before its postmaster is killed (SIGKILL), in seconds; 0 = no limit. Only
// in synchronous mode (Patroni's rule: there a shutdown can wait for a
// standby that does not answer, and every acknowledged commit is on a
// synchronous standby anyway).
int primary_stop_kill_after_s(const DynamicConfig &cfg, bool local_primary);

// ---- POST /restart conditions (Patroni's do_POST_restart / restart_matches) ----

struct RestartRequest {
    std::string role;              // "" = any; "primary" or "replica" ("master" = "primary")
    int postgres_version = 0;      // 0 = any; restart only if the running server is older
    bool restart_pending = false;  // restart only if a parameter change waits for it
    std::string postgres_version_text;  // as the operator wrote it ("" = any)
    // "schedule": restart at this time, not now (0 = now). The text is the
    // canonical ISO 8601 form (format_iso8601).
    std::int64_t schedule_epoch_s = 0;
    std::string schedule;
    // "timeout": primary_start_timeout for the restarted server (seconds,
    // rounded up; 0 = the config key's), Patroni's "fail over if the start
    // takes longer". Carried to the next worker in the pg_ha.restart marker.
    int timeout_s = 0;
};

// The pg_ha.restart marker the worker writes for pg_hactl boot: empty, or
// "timeout=N" (the restart's start timeout); boot moves one with a timeout to
// pg_ha.start_timeout for the next worker. The text is written and read here only.
inline constexpr const char *kRestartMarkerFile = "pg_ha.restart";
inline constexpr const char *kStartTimeoutFile = "pg_ha.start_timeout";
std::string restart_marker_text(int timeout_s);
int restart_marker_timeout(const std::string &text);  // 0 when none or unreadable

// Validates the body of POST /restart (without pg_ha's own "member" key):
// unknown keys, a bad role, version or timeout get 400 with Patroni's
// wording; a "schedule" that cannot be parsed or has no time zone gets 400,
// one in the past 422, any schedule while the cluster is paused 500 (all
// Patroni's codes and words).
// What a member publishes of its scheduled restart.
ScheduledRestart published(const RestartRequest &r);

std::variant<Refusal, RestartRequest> parse_restart_request(const nlohmann::json &body, std::int64_t now_epoch_s,
                                                            bool paused);

// What a scheduled restart does on this loop (Patroni's
// should_run_scheduled_action): Wait until it is due (and while paused), Run
// when due, Stale when it was due more than 1.5 x loop_wait ago (the loop was
// stuck: dropped with a warning rather than restarting at a surprising time).
enum class ScheduledStep { Wait, Run, Stale };
ScheduledStep scheduled_restart_step(std::int64_t at_epoch_s, std::int64_t now_epoch_s, int loop_wait_s, bool paused);
const char *to_string(ScheduledStep s);

// "" when this node matches the conditions, else why not (the answer is then
// 503 "restart conditions are not satisfied", as Patroni's).
std::string restart_mismatch(const RestartRequest &r, bool is_primary, int server_version_num, bool pending_restart);

// "15.4" -> 150004, "9.6.24" -> 90624 (Patroni's postgres_version_to_int); -1 when invalid.
int postgres_version_to_int(const std::string &version);

}  // namespace pgha
