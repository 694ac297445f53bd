// Leadership: the one place that says whether this node may commit.
//
// Owns: whether we hold the leader lock, the lease deadline (the formula is
// lease_deadline() below, checked by every backend in src/pg/lease.cpp),
// failsafe_mode (promises given to/received from other members), the peer
// check of the failover race and the watchdog.
//
// Lease rule: while this session owns the leader znode, the lease ends at
// send time of the newest request ZooKeeper answered on it + the negotiated
// session timeout - the safety margin. The server cannot expire the session
// (and so free the lock) before that send time + timeout.
//
// Thread affinity: the worker's loop only, except FailsafeBox (any thread).
#pragma once

#include "core/no_postgres.hpp"

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/cluster.hpp"
#include "core/ha_state_machine.hpp"
#include "engine/background.hpp"
#include "engine/cluster_link.hpp"
#include "engine/deps.hpp"
#include "engine/engine_settings.hpp"
#include "engine/outbox.hpp"
#include "watchdog/watchdog.hpp"

namespace pgha {

// What a leader that lost ZooKeeper told us over POST /failsafe (written by
// HTTP threads, read by the loop).
//
// A promise given to a failsafe leader and our own bid for the lock exclude
// each other under one mutex: once we accepted a failsafe heartbeat we do not
// take the lock for ttl, and once we bid for (or hold) the lock we refuse
// heartbeats, so the old leader cannot extend its lease past our promotion.
//
// The promise is kept in `path` (when not empty) so that it survives a worker
// or server restart (review F3c): written before the leader hears "Accepted",
// read back by the next worker. Same boot (/proc/sys/kernel/random/boot_id):
// the stored lease-clock deadline holds. After a reboot the lease clock
// restarted, so a promise whose wall-clock end has not passed is honoured for
// its whole length again from the load.
class FailsafeBox {
  public:
    explicit FailsafeBox(std::string path = std::string());
    // A failsafe leader's heartbeat: promise not to take the lock for
    // promise_ms from now. False (nothing promised) while we bid for or hold
    // the lock, or when the promise cannot be stored.
    bool accept(const Member &leader, std::int64_t now_ms, std::int64_t wall_ms, int promise_ms);
    // Before creating the leader znode: false while a promise is active.
    bool claim(std::int64_t now_ms);
    void release();
    std::optional<Member> active(std::int64_t now_ms) const;
    // At start: the promise an earlier worker gave, if it still runs.
    // Returns a line for the log ("" when there was none).
    std::string load(std::int64_t now_ms, std::int64_t wall_ms);

  private:
    bool store(std::int64_t deadline_ms, std::int64_t wall_deadline_ms, int promise_ms) const;
    const std::string path_;
    mutable std::mutex mu_;
    Member leader_;
    std::int64_t deadline_ms_ = 0;  // lease clock; 0 = no promise
    bool claimed_ = false;
};

// POST /failsafe's answer: Patroni's "Accepted", then the promise length this
// member honours ("Accepted promise_ms=30000"). Parsed by the leader; an
// answer without a length is no confirmation.
std::string failsafe_accepted_body(int promise_ms);
bool parse_failsafe_accepted(const std::string &body, int &promise_ms);

// The authenticated request to another member's API.
PeerRequest peer_request(const EngineSettings &s, const std::string &name, const std::string &url,
                         const std::string &method = "GET");

class Leadership {
  public:
    Leadership(const EngineSettings &s, ClusterLink &link, Outbox &out, Background &bg, PeerHttp http, Clock clock);

    bool is_leader() const { return is_leader_; }
    // Milliseconds since this node took the lock (0 when it does not hold it).
    std::int64_t leader_for_ms() const { return is_leader_ ? clock_() - leader_since_ms_ : 0; }
    // The lease formula (0 = no lease).
    std::int64_t lease_deadline() const;
    bool lease_valid() const { return lease_deadline() > clock_(); }
    // Leading on the members' promises (failsafe_mode without ZooKeeper).
    bool failsafe_active() const { return is_leader_ && failsafe_deadline_ > clock_(); }
    // Every step: a wall clock that ran ahead of the lease clock means this
    // machine was stopped (a paused VM; the lease clock may not count that
    // time): no answer sent before now renews the lease. True when that
    // happened to a leader, which should then renew at once.
    bool check_clocks(std::int64_t wall_ms);
    // Maintenance mode stops automatic actions, never fencing (review F5).
    bool enforced() const { return s_.lease_enforcement; }

    // After decide(): adopt its verdict when the view was fresh.
    void adopt(const Decision &d, bool dcs_ok);
    // The session expired: the lock is gone with it (unless failsafe holds).
    void on_session_expired(LocalRole role);
    // ZooKeeper answers again: the lock, not failsafe, counts.
    void on_fresh_view() { failsafe_deadline_ = 0; }
    // We gave the lock away (switchover) or lost it.
    void drop() { is_leader_ = false; }

    // Failover race: the peers' answers for decide(), or nothing yet (a
    // check runs on the background thread and wakes the loop when done).
    bool peers_ready(Observation &obs);
    // failsafe_mode without ZooKeeper: ask every member for a promise.
    void failsafe_tick(LocalRole role, bool dcs_ok);
    FailsafeBox &failsafe_box() { return box_; }
    // Before bidding for the lock.
    bool claim_lock() { return box_.claim(clock_()); }

    // Why this node may not bid for the lock ("" = it may): the watchdog is
    // required but unusable, or the safety margin leaves no usable lease.
    std::string cannot_lead() const;
    // Every loop: keepalive while leading, disarm otherwise.
    void tend_watchdog(LocalRole role);
    bool watchdog_failed() const { return watchdog_failed_; }
    void disarm_watchdog_on_exit();

  private:
    int peer_timeout_ms() const;
    const EngineSettings &s_;
    ClusterLink &link_;
    Outbox &out_;
    Background &bg_;
    PeerHttp http_;
    Clock clock_;
    bool is_leader_ = false;
    std::int64_t leader_since_ms_ = 0;
    std::int64_t lease_floor_ms_ = 0;  // answers to requests sent before this do not count
    std::int64_t last_wall_ms_ = 0, last_clock_ms_ = 0;
    FailsafeBox box_;
    std::int64_t failsafe_deadline_ = 0;  // lease extension confirmed by every member
    std::int64_t next_failsafe_ms_ = 0;
    bool failsafe_in_flight_ = false;
    bool failsafe_alone_logged_ = false;
    // failover race
    bool peers_in_flight_ = false;
    std::int64_t peers_done_ms_ = 0;
    std::map<std::string, Lsn> peer_positions_;
    std::map<std::string, Lsn> vote_positions_;
    std::vector<std::string> primaries_alive_;
    Watchdog watchdog_;
    std::string watchdog_msg_;
    bool watchdog_failed_ = false;
};

}  // namespace pgha
