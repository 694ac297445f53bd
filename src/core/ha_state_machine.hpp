// The HA state machine: a pure function from what the worker observed (local
// server + ZooKeeper + peers) to what it should do. No I/O, no clocks: the
// worker supplies everything, executes the actions and comes back next loop.
#pragma once
#include "core/no_postgres.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/cluster.hpp"
#include "core/operator_rules.hpp"  // switchover_ineligibility, best_switchover_candidate

namespace pgha {

// Where the local server stands, as the state machine sees it.
enum class LocalRole {
    Primary,    // not in recovery
    Standby,    // in recovery with standby.signal
    Recovering, // in crash/archive recovery without standby.signal: will come up as a primary
    Stopped,    // not (yet) running
};
const char *to_string(LocalRole r);

struct Observation {
    std::string me;
    Tags tags;
    LocalRole role = LocalRole::Stopped;
    bool running = false;  // accepts connections (hot standby or primary)
    LocalState local;
    bool dcs_ok = false;            // the cluster view below was read on a live session this loop
    std::int64_t session_id = 0;    // our current ZooKeeper session
    bool lease_valid = false;       // our leader lease has not run out
    // Our lease ran out less than retry_timeout ago while ZooKeeper stays
    // connected (answers come late): commits are refused (the lease), but no
    // demotion yet, as Patroni's retry_timeout.
    bool lease_grace = false;
    // The leader's `status` (optime) was written loop_wait or longer ago: a
    // new position is published then, not on every loop (under write load
    // every loop has one, and each write wakes every watcher).
    bool status_due = true;
    ClusterView cluster;
    // Positions of peers as confirmed directly over their REST API this loop
    // (name -> position); peers missing here were unreachable. When
    // `peers_checked` is false the znode data alone is used.
    bool peers_checked = false;
    std::map<std::string, Lsn> peer_positions;
    // The same for quorum votes: every running standby that answered,
    // nofailover ones too (a voter need not be a candidate).
    std::map<std::string, Lsn> vote_positions;
    // Peers whose API said this loop that they run as a primary (not in
    // recovery). While one does, nobody else takes over (Patroni's "primary
    // is still alive"): it either still leads through failsafe mode or is
    // about to fence itself.
    std::vector<std::string> primaries_alive;
    // We held the leader lock the last time ZooKeeper told us anything. With
    // `dcs_ok` false and the lease run out, such a primary fences itself.
    bool was_leader = false;
    // failsafe_mode: a leader that lost ZooKeeper told us over POST /failsafe,
    // less than ttl ago, that it still leads. While set we treat it as the
    // leader even though the leader znode is gone.
    std::optional<Member> failsafe_leader;
    // Why this node may not lead (watchdog required but not usable, a safety
    // margin that leaves no usable lease, ...): "" when it may.
    std::string cannot_lead;
    // The `failover` key's scheduled_at has passed (or is empty). The worker
    // compares clocks; the state machine only reads this.
    bool failover_due = true;
    // Seconds this standby's WAL receiver has not been streaming (0 = it is).
    int not_streaming_s = 0;
    // This standby's WAL receiver is streaming right now.
    bool streaming = false;
    // Milliseconds since this node took the leader lock (0 when it does not
    // hold it, or has just taken it).
    std::int64_t leader_for_ms = 0;
    // Seconds the local server has been Recovering (crash recovery after a
    // crash, as this worker saw it; -1 when not, also while a standby is
    // being promoted). Holding the lock, past primary_start_timeout it is
    // given up (Patroni's rule).
    int recovering_s = -1;
    // primary_start_timeout for this start when a restart request set one
    // (POST /restart "timeout"); unset: the config key's.
    std::optional<int> start_timeout_s;
    // Another live node runs under our name (it owns our member znode, or a
    // leader znode naming us): "" when not, else the message. Such a node
    // takes no action at all: deleting "our" stale lock would be deleting the
    // real member's.
    std::string name_conflict;
};

enum class ActionKind {
    WriteInitialize,     // create `initialize` with our system identifier
    WriteDefaultConfig,  // create `config` with defaults
    AcquireLeader,       // create the ephemeral `leader` znode with our name
    DeleteStaleLeader,   // `leader` names us but belongs to an older session of ours
    RepairLeader,        // `leader` is owned by our session but its content names someone else: rewrite it
    Promote,             // in-place promotion (pg_promote path)
    RecordPromotion,     // append to `history` after our promotion finished
    Demote,              // fence now, then shut down; next boot follows the leader
    Follow,              // point primary_conninfo at `target` and reload
    WriteStatus,         // `status` optime
    EnsureSlots,         // this primary keeps slots for `names` (the other members; see SlotKeeper)
    Handover,            // switchover: fence, let `target` catch up, release the lock to it
    ClearFailover,       // delete the `failover` key (done, or not possible: reason in message)
    WriteFailsafe,       // failsafe_mode: write `failsafe` = failsafe_members(view)
    DeleteFailsafe,      // failsafe_mode is off: remove a `failsafe` key left behind
    ReleaseLeader,       // recovery outlasted primary_start_timeout: delete our `leader` znode
};
const char *to_string(ActionKind k);

struct Action {
    ActionKind kind;
    std::string target;              // Follow: leader member name
    std::vector<std::string> names;  // EnsureSlots: slot names
    Lsn lsn = 0;                     // WriteStatus
    bool operator==(const Action &o) const { return kind == o.kind && target == o.target && names == o.names; }
};

// The role this member publishes (members/<me>, /patroni, ha_node()).
enum class PublishedRole { Primary, Replica, Uninitialized };
const char *to_string(PublishedRole r);  // Patroni's words: primary, replica, uninitialized

// A switchover's new leader holds the lock but does not promote while it
// still streams from the old leader, for at most this long: the old leader
// shuts down cleanly once it sees the lock move, and its walsender ends the
// stream only after this standby flushed everything, the shutdown checkpoint
// included. Promoting after that forks the new timeline past the old
// leader's last record, so it rejoins without pg_rewind.
constexpr std::int64_t kHandoverStreamWaitMs = 5000;

struct Decision {
    // Role published to members/<me> and the API: primary, replica, uninitialized
    PublishedRole role = PublishedRole::Uninitialized;
    bool is_leader = false;   // we hold the leader znode on our current session
    std::vector<Action> actions;
    std::string message;      // one line: why (shown in logs, /patroni and ha_node())
    // ClearFailover because the `failover` key cannot be honoured (it names
    // another leader, or the switchover is not possible): `message` says why
    // and deserves a log line. False when the key is cleared because it is done.
    bool failover_refused = false;
    // The decision waits for something no event announces (the end of the
    // old leader's stream): decide again within a few milliseconds.
    bool recheck_soon = false;
    // A standby whose stream ended retries only every
    // wal_retrieve_retry_interval (5 s by default). While the leader it
    // follows runs as a primary and the stream has been down for less than
    // kStreamRetryWindowS, the worker wakes its startup process every
    // kStreamRetryEveryMs, so that it retries at once: a rejoin, a new
    // leader, a leader back from a restart. Past the window the server's own
    // pace resumes (a leader that keeps refusing the stream is not hammered).
    bool retry_stream = false;

    bool has(ActionKind k) const;
    const Action *find(ActionKind k) const;
};

Decision decide(const Observation &obs);

inline constexpr int kStreamRetryEveryMs = 500;
inline constexpr int kStreamRetryWindowS = 30;

// failsafe_mode: the members the leader lists in the `failsafe` key (every
// member that published an api_url, the leader included).
std::map<std::string, std::string> failsafe_members(const ClusterView &view);

// Failover eligibility (also used by switchover validation and for error text).
// Returns "" when `name` may take over, else the reason it may not.
std::string failover_ineligibility(const Observation &obs, const Member &candidate);

// The switchover rules (switchover_ineligibility, best_switchover_candidate,
// choose_switchover_target) live in core/operator_rules.hpp.

}  // namespace pgha
