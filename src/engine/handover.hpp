// The old leader's side of a switchover, one named step per phase:
//   Checkpoint  a CHECKPOINT while still writable (background thread), so the
//               final one is short
//   Fence       no commits, no new sessions; terminate client backends except
//               SQL callers waiting for the answer
//   CatchUp     let terminated backends write their abort records (bounded),
//               then wait until the candidate has flushed the current end of
//               WAL; release the lock and stop immediately (no shutdown
//               checkpoint after the candidate's fork point)
//   Released    wait for the candidate to take the lock (Demote follows from
//               decide()), or give up after 15 s
// Writes stop at Fence; the outage lasts until the candidate has promoted,
// which it does as soon as it sees the lock free (a ZooKeeper watch).
//
// Thread affinity: the worker's loop only.
#pragma once

#include "core/no_postgres.hpp"

#include <cstdint>
#include <string>
#include <vector>

#include "core/lsn.hpp"
#include "engine/background.hpp"
#include "engine/cluster_link.hpp"
#include "engine/deps.hpp"
#include "engine/leadership.hpp"
#include "engine/local_server.hpp"
#include "engine/outbox.hpp"

namespace pgha {

class Handover {
  public:
    Handover(std::string self, ClusterLink &link, LocalServer &local, Leadership &leadership, Outbox &out, Background &bg,
             SqlConn &bg_sql, Clock clock);

    bool active() const { return phase_ != Phase::Idle; }
    void begin(const std::string &target);
    void advance(const std::vector<int> &protected_pids);

  private:
    enum class Phase { Idle, Checkpoint, Checkpointing, Fence, CatchUp, Released };
    void checkpoint();
    void fence(const std::vector<int> &protected_pids);
    void catch_up(const std::vector<int> &protected_pids);
    void released();
    void abort(const std::string &why);

    std::string self_;
    ClusterLink &link_;
    LocalServer &local_;
    Leadership &leadership_;
    Outbox &out_;
    Background &bg_;
    SqlConn &bg_sql_;
    Clock clock_;
    Phase phase_ = Phase::Idle;
    std::string target_;
    Lsn lsn_ = 0;
    std::int64_t deadline_ms_ = 0;
    std::int64_t drain_until_ms_ = 0;
};

}  // namespace pgha
