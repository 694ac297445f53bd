// pg_hactl stop: a clean stop that hands the leader lock over at once.
//
// A stopping primary's worker exits before PostgreSQL writes its shutdown
// checkpoint, so the worker keeps its ZooKeeper session (and the leader lock)
// for a restart: `pg_ctl restart` or a crash-restart within ttl resumes the
// session and leads on. When the server is stopped for good, that costs ttl
// seconds without a primary. `pg_hactl stop` says which: it stops PostgreSQL
// (pg_ctl stop -w; the walsenders send the shutdown checkpoint to connected
// standbys before the postmaster exits), and once the control file shows a
// clean shutdown it resumes the node's saved session and closes it: the
// leader and member znodes go at once and a standby that has the shutdown
// checkpoint takes over (the old primary rejoins without pg_rewind).
// After an unclean stop (immediate mode, a crash) it leaves the session to
// expire after ttl.
#pragma once
#include "core/no_postgres.hpp"

#include <string>

#include "dcs/zk_client.hpp"

namespace pgha {
class ZkSession;
}

namespace pgha::cli {

struct StopOptions {
    std::string config;   // the node's settings file
    std::string pgdata;   // its data directory
    std::string mode = "fast";  // pg_ctl -m: smart, fast, immediate
    int timeout_s = 120;        // pg_ctl -t
};

int cmd_stop(const StopOptions &o);

// Resumes the node's saved ZooKeeper session (the session file in `pgdata`)
// and closes it: its leader and member znodes go at once. Shared by
// `pg_hactl stop` and boot's failover after a crash (primary_start_timeout 0).
struct SavedSessionClose {
    enum Outcome { Nothing, Closed, Unreachable } outcome = Nothing;  // Nothing: no file, or already expired
    bool released_leader = false;
    std::string message;
};
struct NodeConfig;
SavedSessionClose close_saved_session(const NodeConfig &c, const std::string &pgdata);

// The node's saved ZooKeeper session (the session file in `pgdata`), resumed
// in a ZkSession of the caller's. Shared by close_saved_session and the boot
// of a restart (which resumes it to restart its expiry clock, then abandons it).
struct SavedSession {
    enum State { None, Unreachable, Expired, Resumed } state = None;  // None: no (valid) session file
    ZkCredentials creds;
    int timeout_ms = 30000;  // the saved session timeout (30 s when the file does not say)
    std::string file;        // its path
    std::string error;       // why Unreachable
};
// Reads the session file: state None (no valid file) or Unreachable (not tried yet).
SavedSession read_saved_session(const NodeConfig &c, const std::string &pgdata);
// Opens `s` in `zk` and waits up to `wait_ms` for ZooKeeper's answer: Resumed, Expired or Unreachable.
void resume_saved_session(const NodeConfig &c, SavedSession &s, ZkSession &zk, int wait_ms);

}  // namespace pgha::cli
