// One row per member, in Patroni's vocabulary, for everything that lists the
// cluster: GET /cluster (core/health_api), pg_hactl list, and ha_status().
// Pure: computed from a ClusterView.
#pragma once
#include "core/no_postgres.hpp"

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/cluster.hpp"

namespace pgha {

// Patroni's roles in a cluster listing.
enum class ReportRole { Leader, StandbyLeader, SyncStandby, QuorumStandby, Replica };
// JSON (Patroni's /cluster): "leader", "standby_leader", "sync_standby", "quorum_standby", "replica".
const char *to_string(ReportRole r);
// Table (patronictl list): "Leader", "Standby Leader", "Sync Standby", "Quorum Standby", "Replica".
const char *display_name(ReportRole r);

struct MemberRow {
    std::string name;
    std::string host;  // from conn_url; "" when unparsable
    int port = 0;      // 0 when unparsable
    std::string api_url;
    ReportRole role = ReportRole::Replica;
    bool is_leader = false;  // holds the leader key
    // Patroni: the replication state ("streaming", "in archive recovery") of
    // a non-leader when it reports one, else the member state ("running", ...).
    std::string state;
    int timeline = 0;  // 0 = not reported
    Lsn lsn = 0;       // Member::position(); 0 = not reported
    // Bytes behind the cluster's last known leader position (`status`
    // optime), 0 when ahead; nullopt = "unknown" (no position reported).
    // Always 0 for the leader.
    std::optional<Lsn> lag;
    Tags tags;
    bool pending_restart = false;
    std::optional<ScheduledRestart> scheduled_restart;

    // lag as Patroni's JSON has it: a number or "unknown".
    nlohmann::json lag_json() const;
};

// The members sorted by name (as Patroni lists them).
std::vector<MemberRow> cluster_report(const ClusterView &view);

}  // namespace pgha
