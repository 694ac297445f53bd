// The leader's synchronous replication upkeep (synchronous_mode): each loop it
// runs the pure plan (core/sync_rules) on the walsenders and the `sync` key
// and carries out its one step: a versioned write of the `sync` key, or
// synchronous_standby_names through LocalServer::set_parameters. The plan
// orders the steps so the key never names a standby the server does not wait
// for. Also keeps what the node publishes about it (strict mode waiting).
//
// Thread affinity: the worker's loop only.
#pragma once

#include "core/no_postgres.hpp"

#include <cstdint>
#include <map>
#include <string>

#include "core/sync_rules.hpp"
#include "engine/cluster_link.hpp"
#include "engine/deps.hpp"
#include "engine/local_server.hpp"
#include "engine/outbox.hpp"

namespace pgha {

class SyncKeeper {
  public:
    SyncKeeper(const std::string &me, ClusterLink &link, LocalServer &local, Outbox &out, Clock clock);

    // One loop. `leading`: we hold the lock, run as primary with a valid
    // lease and a fresh view. Pause does not re-pick (nothing is done).
    void tick(bool leading, const LocalState &ls);
    // Strict mode with no streaming synchronous standby: why commits wait ("" when they do not).
    const std::string &waiting() const { return waiting_; }

  private:
    std::string me_;
    ClusterLink &link_;
    LocalServer &local_;
    Outbox &out_;
    Clock clock_;
    std::map<std::string, std::int64_t> unhealthy_since_;
    std::map<std::string, std::int64_t> healthy_since_;  // candidates, healthy without a break since
    std::string waiting_;
    std::string last_message_;
    std::int64_t last_log_ms_ = 0;
    std::int64_t write_pending_ms_ = 0;  // a sync key write is under way since (0: none)
    // Quorum commit: the guarantees still standing (see core/sync_rules).
    // Starts Unknown (a new leader or a restarted worker does not know what
    // was in force before); confirm_lsn is taken a second after
    // synchronous_standby_names changed (the walsenders reload on SIGHUP
    // within milliseconds; commits they release after it follow the new value).
    QuorumProgress quorum_;
    std::int64_t confirm_at_ms_ = 0;  // take confirm_lsn at or after this time (0: taken)
    bool was_leading_ = false;
};

}  // namespace pgha
