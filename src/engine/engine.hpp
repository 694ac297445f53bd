// The HA engine: runs the parts in a fixed order every loop iteration. It
// owns the parts and holds no HA state of its own beyond what sequencing
// needs; each part owns its state and never calls back into the Engine.
//
//   ClusterLink   ZooKeeper session, reads, view, member znode   cluster_link.*
//   LocalServer   the local PostgreSQL server (all SQL)          local_server.*
//   Leadership    lock, lease, failsafe, peers, watchdog         leadership.*
//   CommandDesk   operator commands, each answered once          commands.*
//   Handover      the old leader's switchover steps              handover.*
//   ManagementApi what HTTP threads may run                      management.*
//   Publisher     snapshot, status JSON, member row              publisher.*
//   Background    slow work off the loop                         background.*
//   SyncKeeper    sync key + synchronous_standby_names (leader)  sync_keeper.*
//   SlotKeeper    physical slots: create, move forward, expire   slot_keeper.*
//
// The decisions themselves come from the pure state machine
// (core/ha_state_machine.*). The C boundary is engine_api.* .
//
// Thread affinity: the worker's loop only.
#pragma once

#include "core/no_postgres.hpp"

#include <cstdint>
#include <memory>
#include <string>

#include "core/ha_state_machine.hpp"
#include "engine/background.hpp"
#include "engine/cluster_link.hpp"
#include "engine/commands.hpp"
#include "engine/deps.hpp"
#include "engine/engine_settings.hpp"
#include "engine/handover.hpp"
#include "engine/leadership.hpp"
#include "engine/local_server.hpp"
#include "engine/management.hpp"
#include "engine/outbox.hpp"
#include "engine/publisher.hpp"
#include "engine/slot_keeper.hpp"
#include "engine/sync_keeper.hpp"
#include "http/api_server.hpp"

namespace pgha {

struct EngineDeps {
    std::unique_ptr<ZkClient> zk;      // ZkSession in production
    SqlFactory sql;                    // LocalConn in production
    PeerHttp http;                     // http_parallel in production
    Clock clock;                       // pgha_monotonic_ms in production
    Clock wall_clock = wall_clock_ms;  // CLOCK_REALTIME in production
    bool serve_api = true;             // start the REST API server
    bool inline_background = false;    // run background jobs at once (tests)
};

// A SQL request from the shared-memory slot (id 0: none).
struct SqlRequest {
    std::uint64_t id = 0;
    std::string json;
    int pid = 0;
};

// What the worker applies after a step.
struct StepResult {
    std::int64_t lease_deadline_ms = 0;
    bool lease_enforced = true;
    bool promote = false;
    // A promotion we asked for is under way (at most 10 s): the worker wakes
    // the startup process every step. Asked for right after a stream ended
    // (a switchover's old leader stopped, a failed primary), the startup
    // process takes the request and then still sleeps wal_retrieve_retry_interval
    // (5 s by default) before it finishes recovery; a wake ends that sleep.
    bool promoting = false;
    // Decision::retry_stream: wake the startup process now, so that a standby
    // whose stream ended retries at once (at most every kStreamRetryEveryMs).
    bool retry_stream = false;
    bool flush_wal = false;  // Outbox::flush_wal
    bool fence = false;
    bool shutdown = false;
    bool shutdown_immediate = false;
    int stop_kill_after_s = 0;  // primary_stop_timeout in effect (primary_stop_kill_after_s)
    bool is_leader = false;
    bool sync_strict_waiting = false;  // strict synchronous mode has no synchronous standby
};

class Engine {
  public:
    Engine(const EngineSettings &s, EngineDeps deps);
    ~Engine();
    Engine(const Engine &) = delete;
    Engine &operator=(const Engine &) = delete;

    void wait_interest(int &zk_fd, bool &zk_read, bool &zk_write, int &wake_fd, long &timeout_ms);
    StepResult step(const LocalSample &local, const SqlRequest &req, bool zk_readable, bool zk_writable, bool woken);
    // Clean exit. A stopping primary keeps its session and lock (see .cpp).
    void shutdown(bool release);
    // Tags changed by a configuration reload: every part reads s_.tags, so
    // the next decision and the next member publication use them.
    void set_tags(const Tags &tags);

    const std::vector<std::string> &logs() const { return out_.logs; }
    // Decisions completed so far (the C boundary's proof of recovery after a failed step).
    std::uint64_t decisions() const { return decisions_; }
    const std::string &status_json() const { return publisher_.status_json(); }
    const CommandDesk &desk() const { return desk_; }
    const Leadership &leadership() const { return leadership_; }
    const ClusterLink &link() const { return link_; }
    SnapshotBox &snapshots() { return publisher_.box(); }
    ManagementApi &management() { return management_; }

  private:
    void ensure_api(std::int64_t now);
    void watch_api(std::int64_t now);
    void decide_and_act();
    Observation observe(const LocalState &ls);
    bool dcs_confirmed() const;
    bool lease_grace(std::int64_t now) const;  // see Observation::lease_grace
    void execute(const Decision &d, const Observation &obs);
    void record_promotion(const LocalState &ls);
    NodeView node_view(const LocalState &ls);
    void apply_cluster_parameters();
    void apply_cluster_pg_hba();

    EngineSettings s_;
    Clock clock_;
    Clock wall_clock_;
    PeerHttp http_;
    std::unique_ptr<ZkClient> zk_;
    Outbox out_;
    Waker waker_;
    Background bg_;
    std::unique_ptr<SqlConn> bg_sql_;  // used by background jobs only
    ClusterLink link_;
    LocalServer local_;
    Leadership leadership_;
    CommandDesk desk_;
    Handover handover_;
    SyncKeeper sync_;
    SlotKeeper slots_;
    Publisher publisher_;
    ManagementApi management_;
    std::unique_ptr<ApiServer> api_;
    bool api_started_ = false;
    bool api_warned_ = false;  // the REST API security warnings were logged
    std::int64_t api_retry_ms_ = 0;
    std::uint64_t api_served_seen_ = 0;
    std::int64_t api_next_check_ms_ = 0;
    int api_failed_checks_ = 0;

    PublishedRole role_ = PublishedRole::Uninitialized;
    std::string message_;
    bool recheck_soon_ = false;  // the last decision waits for something no event announces
    bool retry_stream_ = false;  // the last decision's retry_stream
    // LocalServer::take_published_change said so: decide (on the view we
    // have) within kPublishChangeEveryMs, at most that often.
    bool publish_due_ = false;
    std::int64_t publish_decided_ms_ = 0;
    std::int64_t stream_retry_ms_ = 0;  // when the startup process was last woken for it
    std::int64_t status_written_ms_ = 0;  // when this node last wrote `status` (Observation::status_due)
    std::int64_t lease_lapsed_ms_ = 0;   // when a leader's lease was first seen run out (0: valid)
    bool stream_retry_wanted() const;
    std::int64_t promote_requested_ms_ = 0;
    bool promoting(std::int64_t now) const {
        return promote_requested_ms_ != 0 && now - promote_requested_ms_ < 10000 && local_.role() != LocalRole::Primary;
    }
    int history_written_tl_ = 0;
    std::string applied_parameters_;  // the config key's postgresql.parameters last applied (JSON text)
    std::string applied_pg_hba_;      // the config key's postgresql.pg_hba last seen (JSON text, "" = none)
    std::uint64_t decisions_ = 0;
};

}  // namespace pgha
