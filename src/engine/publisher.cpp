#include "engine/publisher.hpp"
#include "core/json_text.hpp"


#include <nlohmann/json.hpp>

#include "core/cluster_report.hpp"
#include "core/version.hpp"

namespace pgha {
namespace {

// ha_status()'s rows: the same rows as /cluster and pg_hactl list.
nlohmann::json member_rows(const ClusterView &view) {
    nlohmann::json members = nlohmann::json::array();
    for (const MemberRow &r : cluster_report(view))
        members.push_back({{"name", r.name},
                           {"host", r.host},
                           {"port", r.port},
                           {"role", to_string(r.role)},
                           {"state", r.state},
                           {"timeline", r.timeline},
                           {"lsn", format_lsn(r.lsn)},
                           // lag bigint in ha_status(): NULL when unknown
                           {"lag", r.is_leader ? nlohmann::json(0) : r.lag ? nlohmann::json(*r.lag) : nlohmann::json(nullptr)},
                           {"tags", r.tags.to_json()},
                           {"pending_restart", r.pending_restart},
                           {"scheduled_restart", r.scheduled_restart ? nlohmann::json(r.scheduled_restart->schedule)
                                                                     : nlohmann::json(nullptr)},
                           {"is_leader", r.is_leader}});
    return members;
}

}  // namespace


Member Publisher::member_row(const NodeView &v) const {
    Member m;
    m.name = s_.node_name;
    m.conn_url = s_.member_conn_url();
    m.api_url = s_.member_api_url();
    m.state = to_string(v.local.state);
    m.role = to_string(v.role);
    m.version = PG_HA_VERSION;
    m.xlog_location = v.local.position();
    m.timeline = v.local.timeline;
    if (v.local.in_recovery) {
        m.replication_state = v.local.replication_state;
        m.receive_lsn = v.local.receive_lsn;
        m.replay_lsn = v.local.replay_lsn;
    }
    m.tags = s_.tags;
    m.pause = v.cluster && v.cluster->config.pause;
    m.pending_restart = v.pending_restart;
    m.scheduled_restart = v.scheduled_restart;
    return m;
}

void Publisher::publish(const NodeView &v) {
    static const ClusterView kEmpty;
    const ClusterView &view = v.cluster ? *v.cluster : kEmpty;
    auto snap = std::make_shared<NodeSnapshot>();
    snap->scope = s_.scope;
    snap->name = s_.node_name;
    snap->version = PG_HA_VERSION;
    snap->api_url = s_.member_api_url();
    snap->conn_url = s_.member_conn_url();
    snap->state = to_string(v.local.state);
    snap->role = to_string(v.role);
    snap->is_leader = v.is_leader;
    snap->accepts_writes = v.accepts_writes;
    snap->dcs_ok = v.dcs_ok;
    snap->dcs_last_seen = v.dcs_last_seen;
    snap->loop_steady_ms = snapshot_clock_ms();
    snap->lease_until_steady_ms = v.accepts_writes ? snap->loop_steady_ms + v.lease_remaining_ms : 0;
    snap->postmaster_start_time = v.postmaster_start_time;
    snap->message = v.message;
    snap->sync_waiting = v.sync_waiting;
    snap->watchdog_failed = v.watchdog_failed;
    snap->failsafe_active = v.failsafe_active;
    snap->pending_restart = v.pending_restart;
    snap->scheduled_restart = v.scheduled_restart;
    snap->tags = s_.tags;
    snap->local = v.local;
    snap->cluster = view;
    box_.publish(snap);

    nlohmann::json j;
    j["node"] = {{"name", s_.node_name},
                 {"scope", s_.scope},
                 {"role", to_string(v.role)},
                 {"state", snap->state},
                 {"is_leader", v.is_leader},
                 {"accepts_writes", v.accepts_writes},
                 {"timeline", v.local.timeline},
                 {"lsn", format_lsn(v.local.position())},
                 {"leader", view.leader ? *view.leader : ""},
                 {"paused", view.config.pause},
                 {"dcs_ok", v.dcs_ok},
                 {"lease_remaining_ms", v.lease_remaining_ms},
                 {"pending_restart", v.pending_restart},
                 {"scheduled_restart", v.scheduled_restart ? v.scheduled_restart->to_json() : nlohmann::json(nullptr)},
                 {"watchdog_failed", v.watchdog_failed},
                 {"message", v.message},
                 {"sync_waiting", v.sync_waiting},
                 {"tags", s_.tags.to_json()},
                 {"api_url", snap->api_url},
                 {"conn_url", snap->conn_url}};
    j["members"] = member_rows(view);
    j["config"] = view.config_present ? view.config.raw : view.config.to_json();
    nlohmann::json hist = nlohmann::json::array();
    for (const auto &h : view.history)
        hist.push_back({{"timeline", h.timeline},
                        {"lsn", format_lsn(h.lsn)},
                        {"reason", h.reason},
                        {"timestamp", h.timestamp.empty() ? nlohmann::json(nullptr) : nlohmann::json(h.timestamp)},
                        {"new_leader", h.new_leader}});
    j["history"] = hist;
    status_json_ = json_text(j);
}

}  // namespace pgha
