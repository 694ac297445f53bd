// Physical replication slots on this node (use_slots): the leader creates a
// slot for every member and publishes the ones it keeps (`status`
// retain_slots); every node drops slots unused longer than member_slots_ttl
// and moves a standby's member slots forward. The rules are in
// core/slot_rules; this part runs them against the server. It also keeps
// the settings of PostgreSQL 17's failover logical slots
// (core/failover_slots), whose list names those physical slots.
//
// Thread affinity: the worker's loop only.
#pragma once

#include "core/no_postgres.hpp"

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "core/cluster.hpp"
#include "core/failover_slots.hpp"
#include "engine/cluster_link.hpp"
#include "engine/deps.hpp"
#include "engine/local_server.hpp"
#include "engine/outbox.hpp"

namespace pgha {

class SlotKeeper {
  public:
    SlotKeeper(const std::string &me, ClusterLink &link, LocalServer &local, Outbox &out, Clock clock);

    // One loop. `run`: a fresh view and a running server; `leading`: we hold
    // the lock as primary with a valid lease (creates slots, writes status).
    // Works at once when the members change, otherwise every 5 s.
    void tick(bool run, bool leading, Lsn write_lsn);
    // What the leader keeps, for every write of the status key.
    const std::vector<std::string> &retain() const { return retain_; }
    // And the positions of the other members' slots (the status key's
    // `slots`), from the leader's view of the member rows, which it alone
    // watches: the standbys move their copies with them.
    const std::map<std::string, Lsn> &positions() const { return positions_; }

  private:
    void keep_failover_settings(const ClusterView &view);

    std::string me_;
    ClusterLink &link_;
    LocalServer &local_;
    Outbox &out_;
    Clock clock_;
    std::map<std::string, std::int64_t> last_seen_;
    std::int64_t last_run_ms_ = 0;
    std::vector<std::string> retain_;
    std::map<std::string, Lsn> positions_;
    std::string last_key_;  // role + member slots of the last run
    std::set<std::string> physical_;  // physical slots on this node at the last listing
    bool listed_ = false;             // physical_ was read since the server last ran
    bool owned_ = false;  // the settings were written (failover slots active)
    ConfParams failover_applied_;     // what keep_failover_settings last wrote
    std::int64_t failover_tried_ms_ = -1;  // last failed write (retried after 5 s)
};

}  // namespace pgha
