// What the engine's parts tell the worker after a step: log lines and the
// actions only PostgreSQL can carry out (promote, fence, shut down). Parts
// write here instead of calling back into the Engine; the Engine turns it
// into PgHaOutputs at the end of each step.
#pragma once

#include "core/no_postgres.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace pgha {

struct Outbox {
    std::vector<std::string> logs;  // this step's log lines (cleared every step)
    bool promote = false;           // request promotion now (one-shot)
    // Flush the WAL written so far (one-shot). A switchover's catch-up: the
    // abort records of the terminated clients are not flushed by anyone but
    // the WAL writer (wal_writer_delay, 200 ms), and walsenders send only
    // flushed WAL.
    bool flush_wal = false;
    bool fence = false;             // refuse connections and writes (sticky until cleared)
    bool shutdown = false;          // shut the postmaster down once allowed (sticky)
    bool shutdown_immediate = false;
    std::int64_t shutdown_requested_ms = 0;
    // Demoted: the node stops to come straight back through pg_hactl boot as
    // a standby. Its ZooKeeper session (and so its member znode) is kept for
    // the next worker to resume, as across a restart: a member that vanished
    // for the seconds of its rejoin was "not a member" to a switchover then.
    bool keep_session_on_exit = false;

    void log(std::string line) { logs.push_back(std::move(line)); }
    void fence_and_stop() { fence = shutdown = true; }
    // Without ZooKeeper: immediate shutdown, so walsenders stuck on standbys
    // we cannot reach do not hold the postmaster (and the read-only restart)
    // for wal_sender_timeout.
    void fence_and_stop_now() { fence = shutdown = shutdown_immediate = true; }
};

}  // namespace pgha
