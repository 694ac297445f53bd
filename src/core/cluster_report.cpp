#include "core/cluster_report.hpp"

#include <algorithm>

namespace pgha {

const char *to_string(ReportRole r) {
    switch (r) {
        case ReportRole::Leader: return "leader";
        case ReportRole::StandbyLeader: return "standby_leader";
        case ReportRole::SyncStandby: return "sync_standby";
        case ReportRole::QuorumStandby: return "quorum_standby";
        case ReportRole::Replica: return "replica";
    }
    return "replica";
}

const char *display_name(ReportRole r) {
    switch (r) {
        case ReportRole::Leader: return "Leader";
        case ReportRole::StandbyLeader: return "Standby Leader";
        case ReportRole::SyncStandby: return "Sync Standby";
        case ReportRole::QuorumStandby: return "Quorum Standby";
        case ReportRole::Replica: return "Replica";
    }
    return "Replica";
}

nlohmann::json MemberRow::lag_json() const { return lag ? nlohmann::json(*lag) : nlohmann::json("unknown"); }

std::vector<MemberRow> cluster_report(const ClusterView &c) {
    std::vector<const Member *> sorted;
    for (const auto &m : c.members) sorted.push_back(&m);
    std::sort(sorted.begin(), sorted.end(), [](const Member *a, const Member *b) { return a->name < b->name; });
    const auto &sync = c.sync.sync_standby;
    std::vector<MemberRow> rows;
    rows.reserve(sorted.size());
    for (const Member *m : sorted) {
        MemberRow r;
        r.name = m->name;
        r.host = m->host();
        r.port = m->port();
        r.api_url = m->api_url;
        r.is_leader = c.leader && *c.leader == m->name;
        if (r.is_leader) r.role = m->role == "standby_leader" ? ReportRole::StandbyLeader : ReportRole::Leader;
        else if (c.config.synchronous_mode && std::find(sync.begin(), sync.end(), m->name) != sync.end())
            r.role = c.config.synchronous_mode_quorum ? ReportRole::QuorumStandby : ReportRole::SyncStandby;
        else r.role = ReportRole::Replica;
        r.state = !r.is_leader && !m->replication_state.empty() ? m->replication_state : m->state;
        r.timeline = m->timeline;
        r.lsn = c.position_of(*m);
        if (r.is_leader) r.lag = 0;
        else if (r.lsn != 0) r.lag = c.status_optime > r.lsn ? c.status_optime - r.lsn : 0;
        r.tags = m->tags;
        r.pending_restart = m->pending_restart;
        r.scheduled_restart = m->scheduled_restart;
        rows.push_back(std::move(r));
    }
    return rows;
}

}  // namespace pgha
