#include "cli/stop.hpp"

#include <zookeeper/zookeeper.h>

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "cli/boot.hpp"
#include "cli/commands.hpp"
#include "cli/pgdata.hpp"
#include "dcs/cluster_store.hpp"
#include "dcs/session_file.hpp"
#include "dcs/zk_session.hpp"

namespace pgha::cli {

SavedSession read_saved_session(const NodeConfig &c, const std::string &pgdata) {
    SavedSession s;
    s.file = session_file_path(pgdata);
    if (read_session_file(s.file, c.name, s.creds, s.timeout_ms)) s.state = SavedSession::Unreachable;
    return s;
}

void resume_saved_session(const NodeConfig &c, SavedSession &s, ZkSession &zk, int wait_ms) {
    if (s.state == SavedSession::None) return;
    zk.set_auth(c.zk_auth);
    if (!std::getenv("PGHA_ZK_DEBUG")) zoo_set_debug_level(static_cast<ZooLogLevel>(0));
    s.state = SavedSession::Unreachable;
    if (!zk.open(c.zk_hosts, s.timeout_ms, &s.creds, s.error)) return;
    zk_run_until(zk, [&] { return zk.connected() || zk.expired(); }, wait_ms);
    if (zk.expired() || (zk.connected() && zk.session_id() != s.creds.session_id))
        s.state = SavedSession::Expired;
    else if (zk.connected())
        s.state = SavedSession::Resumed;
    else
        s.error = "no answer within " + std::to_string(wait_ms / 1000) + " s";
}

SavedSessionClose close_saved_session(const NodeConfig &c, const std::string &pgdata) {
    SavedSessionClose r;
    ZkSession zk;
    SavedSession s = read_saved_session(c, pgdata);
    resume_saved_session(c, s, zk, 10000);
    const ZkCredentials &creds = s.creds;
    switch (s.state) {
        case SavedSession::None:
            r.message = "no saved ZooKeeper session of member " + c.name + ": nothing to hand over";
            return r;
        case SavedSession::Unreachable:
            r.outcome = SavedSessionClose::Unreachable;
            r.message = "cannot reach ZooKeeper at " + c.zk_hosts + ": " + s.error + "; the leader lock expires after ttl";
            return r;
        case SavedSession::Expired:
            std::remove(s.file.c_str());
            r.message = "ZooKeeper session 0x" + session_id_hex(creds.session_id) + " already expired: nothing to hand over";
            return r;
        case SavedSession::Resumed: break;
    }
    // Which znodes the session owns, for the message only.
    ClusterStore store(zk, c.ns, c.scope);
    bool done = false, leader = false;
    store.read(false, [&](bool ok, const ClusterView &v, const std::string &) {
        done = true;
        leader = ok && v.leader_owner == creds.session_id;
    });
    zk_run_until(zk, [&] { return done; }, 5000);
    zk.close();
    std::remove(s.file.c_str());
    r.outcome = SavedSessionClose::Closed;
    r.released_leader = leader;
    r.message = "closed ZooKeeper session 0x" + session_id_hex(creds.session_id) +
                (leader ? ": released the leader lock" : ": member " + c.name + " left the cluster");
    return r;
}

int cmd_stop(const StopOptions &o) {
    if (o.mode != "smart" && o.mode != "fast" && o.mode != "immediate")
        fail(kExitUsage, "--mode must be smart, fast or immediate, not \"" + o.mode + "\"");
    if (o.pgdata.empty()) fail(kExitUsage, "stop needs --pgdata (or $PGDATA)");
    const NodeConfig c = load_node_config(o.config);
    const PgData pg{o.pgdata, find_bindir(o.pgdata)};

    const std::string pidfile = o.pgdata + "/postmaster.pid";
    bool killed = false;
    if (file_exists(pidfile)) {
        info("stopping PostgreSQL (" + o.mode + ")");
        const long pid = std::atol(read_file(pidfile).c_str());
        const int rc = run(shell_quote(pg.program("pg_ctl")) + " -D " + shell_quote(pg.dir) + " -m " + o.mode +
                           " -W stop");
        if (rc != 0)
            fail(kExitFailed, "pg_ctl stop failed (exit " + std::to_string(rc) +
                                  "); the ZooKeeper session and any leader lock stay (they expire after ttl)");
        // pg_ctl -w would wait for postmaster.pid to go, which a killed postmaster
        // (primary_stop_timeout, see src/pg/worker.cpp) leaves behind.
        // A postmaster that exits removes the file first: gone while the file stays means killed.
        const auto gone = [pid] { return pid > 0 && kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH; };
        const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(o.timeout_s);
        while (file_exists(pidfile) && !gone()) {
            if (std::chrono::steady_clock::now() >= until)
                fail(kExitFailed, "PostgreSQL did not stop within " + std::to_string(o.timeout_s) +
                                      " s; the ZooKeeper session and any leader lock stay (they expire after ttl)");
            usleep(100 * 1000);
        }
        killed = file_exists(pidfile);
    } else {
        info("PostgreSQL is not running in " + o.pgdata);
    }
    if (killed) {
        // As Patroni after its primary_stop_timeout: the lock goes now. Every
        // acknowledged commit is on a synchronous standby; what only this
        // node has is rewound when it rejoins.
        info("the postmaster was killed before it stopped (primary_stop_timeout in synchronous mode, see the "
             "server log): handing the leader lock over now");
        const SavedSessionClose r = close_saved_session(c, o.pgdata);
        if (r.outcome == SavedSessionClose::Unreachable) fail(kExitUnreachable, r.message);
        info(r.message);
        return kExitOk;
    }
    auto cd = controldata(pg);
    const std::string state = cd["Database cluster state"];
    if (file_exists(pidfile)) fail(kExitFailed, "PostgreSQL runs again in " + o.pgdata);
    if (state != "shut down" && state != "shut down in recovery") {
        info("not a clean shutdown (cluster state \"" + state +
             "\"): the session is left to expire after ttl, so a restart within ttl keeps the leader lock");
        return kExitOk;
    }

    const SavedSessionClose r = close_saved_session(c, o.pgdata);
    if (r.outcome == SavedSessionClose::Unreachable) fail(kExitUnreachable, r.message);
    info(r.message + (r.released_leader ? "; a standby with the shutdown checkpoint takes over now" : ""));
    return kExitOk;
}

}  // namespace pgha::cli
