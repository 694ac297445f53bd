// PostgreSQL 17's failover logical slots (issue 13 item 5): a logical slot
// created with failover = true on the primary is copied to the standbys by
// their slot sync worker, so it exists, at the position its consumer
// confirmed, on whichever standby is promoted. PostgreSQL needs, on every
// standby that may be promoted: sync_replication_slots = on (with
// wal_level = logical; off otherwise, see FailoverSlotInputs),
// hot_standby_feedback = on, a physical slot on the primary
// (primary_slot_name: use_slots) and a dbname in primary_conninfo (pg_ha's
// conninfo always names one, core/conninfo's replication_conninfo); and, on
// the primary, synchronized_standby_slots naming the physical slots of those
// standbys, so no consumer receives a change a standby that could take over
// does not have yet.
//
// pg_ha keeps these settings on every member (the same values whatever the
// role, so nothing changes at a promotion but the list) while the config
// key's logical_slot_failover is on (the default), use_slots is on and the
// server is 17 or newer. synchronized_standby_slots names the slots, present
// on this node, of the members that may be promoted now: running, not this
// node, not a primary, not tagged nofailover and, with synchronous_mode, in
// the sync key (sync_rules' sync_ineligibility, the rule the failover uses).
// A member that stops running (its host died, it restarts) leaves the list,
// so consumers are not held up for good by a member that cannot be promoted.
//
// Pure: no I/O.
#pragma once
#include "core/no_postgres.hpp"

#include <set>
#include <string>
#include <vector>

#include "core/cluster.hpp"
#include "core/patroni_parameters.hpp"
#include "core/server_conf.hpp"

namespace pgha {

// The parameters pg_ha owns while logical slot failover is active (the config
// key's postgresql.parameters entries for them are then not applied).
const std::vector<std::string> &failover_slot_parameter_names();

// Whether pg_ha keeps those parameters: PostgreSQL 17+, logical_slot_failover
// and use_slots on. `why` (may be null): the reason when not.
bool failover_slots_active(int server_version, const DynamicConfig &config, std::string *why = nullptr);

// The config key's postgresql.parameters as a member applies them (pg_hactl
// boot before the start, the worker afterwards): cluster_parameters()
// without the parameters pg_ha owns while failover slots are active (each
// one logged in `skipped`). `keep`: the names pg_ha.auto.conf keeps besides
// pg_ha's own (the applied ones, and the owned ones while active).
ClusterParameters member_parameters(const DynamicConfig &config, const std::set<std::string> &local_names,
                                    bool allow_shell, int server_version, std::vector<std::string> &keep);

struct FailoverSlotInputs {
    int server_version = 0;            // e.g. 170012; 0: not running
    std::string me;
    const ClusterView *view = nullptr;  // members, sync key, config
    std::set<std::string> physical_slots;  // physical slots on this node
    // wal_level = logical here: without it PostgreSQL's slot sync worker
    // cannot run (and logs so every few seconds), so sync_replication_slots
    // stays off; there is no logical slot to copy anyway.
    bool wal_level_logical = false;
};

struct FailoverSlotPlan {
    bool active = false;   // the parameters below are pg_ha's
    ConfParams params;     // when active: every name of failover_slot_parameter_names()
    std::string inactive_why;  // when not active (one line)
};

FailoverSlotPlan plan_failover_slots(const FailoverSlotInputs &in);

}  // namespace pgha
