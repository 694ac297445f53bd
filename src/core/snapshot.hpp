// The immutable state snapshot the worker publishes after every HA loop.
// HTTP threads and the SQL functions read it; nobody modifies a published one.
#pragma once
#include "core/no_postgres.hpp"

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "core/cluster.hpp"
#include "core/monotonic.h"

namespace pgha {

// The clock of every time in a snapshot and of the readers' "now": the
// lease's (CLOCK_BOOTTIME, core/monotonic.h), so the lease end a snapshot
// carries compares with the same clock the backends' commit check reads,
// suspend included.
inline std::int64_t snapshot_clock_ms() { return pgha_monotonic_ms(); }

struct NodeSnapshot {
    std::string scope;
    std::string name;
    std::string version;     // pg_ha version, reported as patroni.version
    std::string api_url;     // http://host:port/patroni
    std::string conn_url;    // postgres://host:port/postgres
    std::string state;       // Patroni's state: running, starting, stopped, crashed
    std::string role;        // primary, replica, uninitialized
    bool is_leader = false;       // holds the leader znode on its current session
    bool accepts_writes = false;  // primary + leader + lease valid + local probe connected
    // snapshot_clock_ms() at which the lease that made accepts_writes true runs
    // out: a snapshot outliving it (a worker stuck in a call) no longer says
    // the server accepts writes (/primary, /read-write: health_check_status).
    std::int64_t lease_until_steady_ms = 0;
    bool dcs_ok = false;
    std::int64_t dcs_last_seen = 0;       // epoch seconds of the last successful cluster read
    std::int64_t loop_steady_ms = 0;      // snapshot_clock_ms() when the HA loop last finished
    std::int64_t postmaster_start_time = 0;  // epoch seconds
    std::string message;                  // the state machine's last message
    std::string sync_waiting;             // strict synchronous mode: why commits wait ("" = they do not)
    bool pending_restart = false;
    std::optional<ScheduledRestart> scheduled_restart;
    bool watchdog_failed = false;
    bool failsafe_active = false;  // leading without ZooKeeper on the members' promises
    Tags tags;
    LocalState local;
    ClusterView cluster;

    bool paused() const { return cluster.config.pause; }
    // Leader position used for lag checks (Patroni: the /status optime).
    Lsn leader_position() const { return cluster.status_optime; }
};

using SnapshotPtr = std::shared_ptr<const NodeSnapshot>;

// Lock-free hand-over of the newest snapshot between the worker's main
// thread (writer) and any number of reader threads.
class SnapshotBox {
  public:
    void publish(SnapshotPtr s) { std::atomic_store(&current_, std::move(s)); }
    SnapshotPtr get() const { return std::atomic_load(&current_); }

  private:
    SnapshotPtr current_;
};

}  // namespace pgha
