// What the engine's parts tell the worker after a step: log lines and the
// actions only PostgreSQL can carry out (promote, fence, shut down). Parts
// write here instead of calling back into the Engine; the Engine turns it
// into PgHaOutputs at the end of each step.
#pragma once

#include "core/no_postgres.hpp"

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace pgha {

struct Outbox {
    std::vector<std::string> logs;  // this step's log lines (cleared every step)
    bool promote = false;           // request promotion now (one-shot)
    bool fence = false;             // refuse connections and writes (sticky until cleared)
    bool shutdown = false;          // shut the postmaster down once allowed (sticky)
    bool shutdown_immediate = false;
    std::int64_t shutdown_not_before_ms = 0;  // an HTTP answer is still being written
    std::int64_t shutdown_requested_ms = 0;

    void log(std::string line) { logs.push_back(std::move(line)); }
    void fence_and_stop() { fence = shutdown = true; }
    // Without ZooKeeper: immediate shutdown, so walsenders stuck on standbys
    // we cannot reach do not hold the postmaster (and the read-only restart)
    // for wal_sender_timeout.
    void fence_and_stop_now() { fence = shutdown = shutdown_immediate = true; }
    void hold_shutdown_until(std::int64_t ms) { shutdown_not_before_ms = std::max(shutdown_not_before_ms, ms); }
};

}  // namespace pgha
