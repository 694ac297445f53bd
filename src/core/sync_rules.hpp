// Synchronous replication (synchronous_mode): which standbys the leader makes
// synchronous, in which order it changes the `sync` key and
// synchronous_standby_names, and who may be promoted. Pure: no I/O, no clocks
// (the caller passes durations).
//
// The `sync` key lists the members that may be promoted (besides its
// `leader`). Every acknowledged commit must be on each of them, so the key
// never names a standby the server does not wait for:
//   - adding: synchronous_standby_names first, the key once pg_stat_replication
//     shows the standby as `sync` (the server waits for it);
//   - removing: the key first, then synchronous_standby_names.
// (Patroni's _process_multisync_replication.) synchronous_standby_names is
// `N ("a","b")` with N = the number of names: every listed standby confirms
// every commit.
#pragma once
#include "core/no_postgres.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/cluster.hpp"

namespace pgha {

// What strict mode waits for when no member can be synchronous: a name no
// standby uses, so commits wait (Patroni: __patroni_strict_sync_replica_placeholder__).
// `*` would let any standby, one the key does not name, confirm commits.
constexpr const char *kStrictPlaceholder = "__pg_ha_strict_placeholder__";

// synchronous_standby_names as pg_ha writes it: `N ("a","b")`, "" for none.
std::string format_synchronous_standby_names(const std::vector<std::string> &names);
// Reads `N (a, "b")`, `FIRST N (...)`, `ANY N (...)`, `a, b` (N = 1) and "".
// False for anything else (names/num left empty).
bool parse_synchronous_standby_names(const std::string &text, int &num, std::vector<std::string> &names,
                                     bool &any);

// Quorum commit (synchronous_mode: quorum), Patroni 4's meaning:
//   synchronous_standby_names = ANY k (S): every commit is on the leader and
//     on k members of S;
//   the `sync` key's sync_standby (V, the voters besides its leader) and
//     quorum q: a member of V racing for the lock needs q votes, members of
//     V + leader whose WAL position is not ahead of its own.
// Safe when every set of q + 1 voters shares a member with every k members of
// S that confirmed a commit (quorum_safe). The leader changes one side at a
// time and only to a state that is safe against every guarantee still
// standing: after synchronous_standby_names changes, commits acknowledged
// before it are only known to be on the old set until k members of the new
// set flushed past the change (QuorumProgress).
struct QuorumSsn {
    int k = 0;                       // 0: no standby confirms anything
    std::vector<std::string> names;  // S
};
struct QuorumKey {
    std::vector<std::string> voters;  // V (sorted)
    int quorum = 0;
};
bool operator==(const QuorumKey &a, const QuorumKey &b);
bool operator==(const QuorumSsn &a, const QuorumSsn &b);
// Every q + 1 voters meet every k members of S (no voters: nobody but the
// leader may be promoted, always safe).
bool quorum_safe(const QuorumKey &key, const QuorumSsn &ssn);
// `a` lets no candidate win that `b` would not (fewer voters, more votes).
bool quorum_stronger(const QuorumKey &a, const QuorumKey &b);
// synchronous_standby_names as the guarantee it gives ('*' or unreadable: none).
QuorumSsn quorum_ssn_of(const std::string &ssn);
std::string format_quorum_ssn(const QuorumSsn &g);  // `ANY k ("a","b")`, "" for k = 0

// What the leader knows about the guarantees still standing (kept by the
// caller between loops; the plan says when to change it).
struct QuorumProgress {
    enum class Prev {
        None,     // only synchronous_standby_names as it is now
        Known,    // also `prev` (changed from it, not confirmed yet)
        Unknown,  // also something older: only keys at least as strong as `frozen`
    };
    Prev prev = Prev::Unknown;
    QuorumSsn prev_ssn;
    QuorumKey frozen;
    // Commits up to here are on k members of S once k of them flushed past it
    // (0: not taken yet, nothing is confirmed).
    Lsn confirm_lsn = 0;
};

struct SyncInput {
    std::string me;  // the leader (this node)
    DynamicConfig config;
    std::vector<Member> members;        // from the view (tags: nosync)
    std::vector<WalSender> walsenders;  // pg_stat_replication on this primary
    Lsn primary_lsn = 0;                // current WAL position, for the lag
    SyncState key;                      // the `sync` key as read
    std::string ssn;                    // synchronous_standby_names as the server runs with it
    bool ssn_managed = false;           // pg_ha wrote that value (mode off: clear it only then)
    // Standbys listed in `ssn` that are not healthy now: for how long (ms).
    // A listed standby is kept while unhealthy for less than `grace_ms`
    // (blips do not re-pick); absent from the map = just now.
    std::map<std::string, std::int64_t> unhealthy_ms;
    std::int64_t grace_ms = 10000;
    QuorumProgress quorum;  // quorum mode only
    // Quorum mode: for how long each candidate has been healthy without a
    // break (ms; absent = long enough). A standby joins only after grace_ms,
    // so one that connects and drops (a clone, a flapping link) does not
    // make the leader rewrite synchronous_standby_names on every loop.
    std::map<std::string, std::int64_t> healthy_ms;
};

enum class SyncStep {
    None,
    WriteKey,  // write `key` (versioned), then look again
    SetSsn,    // set synchronous_standby_names to `ssn`, then look again
};

struct SyncPlan {
    SyncStep step = SyncStep::None;
    SyncState key;    // WriteKey
    std::string ssn;  // SetSsn
    std::vector<std::string> picked;  // the target set of synchronous standbys
    // Strict mode and no listed standby streams: commits wait. `message` names why.
    bool strict_waiting = false;
    // Non-strict: a listed standby is unhealthy, degrading when the grace ends.
    bool degrade_pending = false;
    std::string message;  // one line: what and why ("" when steady)
    // Quorum mode: k members of S flushed past confirm_lsn, so only the
    // current synchronous_standby_names stands (the caller drops `prev`).
    bool quorum_confirmed = false;
};

// One step toward the wanted state (call again after it is done).
SyncPlan plan_sync(const SyncInput &in);

// What the leader knows after `p` (planned on `in`) was handed to be carried
// out: confirmed drops the old guarantee; a changed synchronous_standby_names
// keeps the old one standing (confirm_lsn is cleared: the caller takes it
// once the walsenders run with the new value); taking the key over starts
// from what was written. A new leader starts from QuorumProgress{} with
// `frozen` = the key as it found it.
void quorum_progress_after(QuorumProgress &pr, const SyncInput &in, const SyncPlan &p);

// Why a standby is not a candidate ("" = it is): not a member, nosync, not
// streaming, too far behind (maximum_lag_on_syncnode).
std::string sync_candidate_problem(const SyncInput &in, const std::string &name);

// Synchronous mode is active: enabled and the `sync` key names a leader.
bool sync_mode_active(const ClusterView &c);
// "" when `name` may be promoted as far as synchronous mode is concerned,
// else the reason: with synchronous mode active only the key's leader and
// its listed standbys hold every acknowledged commit (quorum: see
// quorum_vote_problem for the votes a listed standby needs).
std::string sync_ineligibility(const ClusterView &c, const std::string &name);
// Quorum commit (the key's quorum > 0): "" when `name` at WAL position `pos`
// has the key's quorum of votes among `positions` (what the other members'
// APIs answered: running standbys and their positions), else why not. The
// key's leader needs no votes.
std::string quorum_vote_problem(const ClusterView &c, const std::string &name, Lsn pos,
                                const std::map<std::string, Lsn> &positions);

}  // namespace pgha
