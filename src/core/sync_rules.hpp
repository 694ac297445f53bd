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
};

// One step toward the wanted state (call again after it is done).
SyncPlan plan_sync(const SyncInput &in);

// Why a standby is not a candidate ("" = it is): not a member, nosync, not
// streaming, too far behind (maximum_lag_on_syncnode).
std::string sync_candidate_problem(const SyncInput &in, const std::string &name);

// Synchronous mode is active: enabled and the `sync` key names a leader.
bool sync_mode_active(const ClusterView &c);
// "" when `name` may be promoted as far as synchronous mode is concerned,
// else the reason: with synchronous mode active only the key's leader and
// its listed standbys hold every acknowledged commit.
std::string sync_ineligibility(const ClusterView &c, const std::string &name);

}  // namespace pgha
