// What this node tells others: the snapshot the HTTP threads serve, the
// status JSON the SQL functions read (ha_status(), ha_node()), and the
// member row for members/<name>.
//
// Every JSON dump here uses the replacing UTF-8 handler: the data partly
// comes from ZooKeeper, written by whoever could write there.
//
// Thread affinity: the worker's loop only (SnapshotBox is read by any thread).
#pragma once

#include "core/no_postgres.hpp"

#include <cstdint>
#include <string>

#include "core/cluster.hpp"
#include "core/ha_state_machine.hpp"
#include "core/snapshot.hpp"
#include "engine/engine_settings.hpp"

namespace pgha {

struct NodeView {
    LocalState local;
    PublishedRole role = PublishedRole::Uninitialized;
    std::string message;
    std::string sync_waiting;  // strict synchronous mode: why commits wait ("" = they do not)
    bool is_leader = false;
    bool accepts_writes = false;
    std::int64_t lease_remaining_ms = 0;
    bool dcs_ok = false;
    std::int64_t dcs_last_seen = 0;
    std::int64_t postmaster_start_time = 0;
    bool watchdog_failed = false;
    bool failsafe_active = false;
    bool pending_restart = false;
    std::optional<ScheduledRestart> scheduled_restart;
    const ClusterView *cluster = nullptr;
};

class Publisher {
  public:
    explicit Publisher(const EngineSettings &s) : s_(s) {}
    void publish(const NodeView &v);
    Member member_row(const NodeView &v) const;
    const std::string &status_json() const { return status_json_; }
    SnapshotBox &box() { return box_; }

  private:
    const EngineSettings &s_;
    SnapshotBox box_;
    std::string status_json_;
};

}  // namespace pgha
