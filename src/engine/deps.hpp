// What the engine's parts get from outside, injectable so that the unit tests
// can run the engine against an in-memory ZooKeeper, canned SQL answers, a
// manual clock and scripted peers (tests/unit/test_engine.cpp).
#pragma once

#include "core/no_postgres.hpp"

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "http/peer_client.hpp"

namespace pgha {

// Milliseconds on the lease clock (the same clock the backends compare the
// lease against).
using Clock = std::function<std::int64_t()>;

// Wall-clock milliseconds (CLOCK_REALTIME), only to notice that this machine
// was stopped (the lease clock may not count a paused VM).
std::int64_t wall_clock_ms();

// Calls to other members' REST APIs (http_parallel in production). Runs on
// the background thread, never on the loop.
using PeerHttp = std::function<std::vector<PeerReply>(const std::vector<PeerRequest> &, int timeout_ms)>;

using SqlRows = std::vector<std::vector<std::string>>;

// A connection to the local server (libpq in production). Blocking, bounded
// by connect_timeout and statement_timeout. Owned by one thread.
class SqlConn {
  public:
    virtual ~SqlConn() = default;
    // Rows as text (NULL -> ""); nullopt on error (see error()).
    virtual std::optional<SqlRows> query(const std::string &sql, const std::vector<std::string> &params = {}) = 0;
    virtual const std::string &error() const = 0;
};

// Makes a new connection with the engine's conninfo (one for the loop, one
// for the background thread).
using SqlFactory = std::function<std::unique_ptr<SqlConn>()>;

}  // namespace pgha
