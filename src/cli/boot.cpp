// pg_hactl boot. See boot.hpp.
#include "cli/boot.hpp"

#include "core/node_settings.hpp"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iostream>
#include <set>
#include <sstream>
#include <vector>

#include <zookeeper/zookeeper.h>

#include "cli/commands.hpp"
#include "cli/pgdata.hpp"
#include "cli/stop.hpp"
#include "core/cluster.hpp"
#include "core/conninfo.hpp"
#include "core/failover_slots.hpp"
#include "core/dynamic_config.hpp"
#include "core/json_text.hpp"
#include "core/operator_rules.hpp"
#include "core/patroni_parameters.hpp"
#include "core/patroni_codec.hpp"
#include "core/settings_file.hpp"
#include "dcs/cluster_store.hpp"
#include "dcs/session_file.hpp"
#include "dcs/zk_session.hpp"

namespace pgha::cli {

namespace {

[[noreturn]] void die(const std::string &msg) { fail(kExitFailed, msg); }

// ---- ZooKeeper ------------------------------------------------------------------

// A connected, authenticated session, or false (and a closed session) when
// ZooKeeper does not answer within timeout_ms.
bool try_connect_zk(ZkSession &zk, const NodeConfig &c, int timeout_ms) {
    std::string err;
    zk.set_auth(c.zk_auth);
    if (!zk.open(c.zk_hosts, 30000, nullptr, err)) die(err);
    if (zk_run_until(zk, [&] { return zk.connected(); }, timeout_ms)) return true;
    zk.close();
    return false;
}

// A connected session, or a CommandError with a clear message.
void connect_zk(ZkSession &zk, const NodeConfig &c, int timeout_ms) {
    if (!try_connect_zk(zk, c, timeout_ms))
        die("cannot connect to ZooKeeper at " + c.zk_hosts + " within " + std::to_string(timeout_ms / 1000) + " s");
}

// True when postmaster.pid names a live postgres process (its worker then
// uses the saved session).
bool postmaster_alive(const std::string &pgdata) {
    const std::string pidfile = pgdata + "/postmaster.pid";
    if (!file_exists(pidfile)) return false;
    const long pid = std::atol(read_file(pidfile).c_str());
    if (pid <= 0 || (kill(static_cast<pid_t>(pid), 0) != 0 && errno != EPERM)) return false;
    std::string comm = read_file("/proc/" + std::to_string(pid) + "/comm");
    while (!comm.empty() && (comm.back() == '\n' || comm.back() == ' ')) comm.pop_back();
    return comm == "postgres" || comm == "postmaster";
}

// A restart (pg_ctl restart, a container restarted by its policy) keeps the
// leader lock only if the stopped worker's ZooKeeper session outlives the
// gap until the next worker resumes it: ttl from the stopped worker's last
// request. The boot of a restart resumes that session first thing, which
// restarts ZooKeeper's expiry clock for it, and leaves it without closing it
// (closing would drop the lock): a full ttl from here for the boot and the
// server's start, whatever the restart took so far. Resuming proves nothing
// to anyone (the lease starts over with the next worker's own answers) and
// extends the lock by at most one ttl if this boot then fails.
void touch_saved_session(const NodeConfig &c) {
    SavedSession s = read_saved_session(c, c.pgdata);
    if (s.state == SavedSession::None) return;
    if (postmaster_alive(c.pgdata)) return;  // its worker has the session; taking it over would break its link
    ZkSession zk;
    resume_saved_session(c, s, zk, std::min(s.timeout_ms / 2, 2000));
    if (s.state == SavedSession::Resumed)
        info("resumed ZooKeeper session 0x" + session_id_hex(s.creds.session_id) +
             " of the stopped server: its leader lock (if it holds it) lasts another " +
             std::to_string(s.timeout_ms / 1000) + " s for this start");
    zk.abandon();  // never zookeeper_close(): that would end the session and free the lock
}

// boot_steps' answer for "started as a read-only standby without ZooKeeper".
constexpr int kBootWithoutZooKeeper = -100;

bool read_view(ZkSession &zk, ClusterStore &store, ClusterView &view, std::string &error) {
    bool done = false, ok = false;
    store.read(false, [&](bool k, const ClusterView &v, const std::string &e) {
        done = true;
        ok = k;
        view = v;
        error = e;
    });
    if (!zk_run_until(zk, [&] { return done; }, 10000)) {
        error = "timed out reading the cluster from ZooKeeper";
        return false;
    }
    // Data that was ignored (e.g. a member znode no session owns), said once per boot.
    static std::set<std::string> said;
    for (const std::string &w : view.warnings)
        if (said.insert(w).second) info("warning: " + w);
    return ok;
}

int zk_sync(ZkSession &zk, const std::function<void(ClusterStore::DoneCb)> &op) {
    int result = -999;
    op([&](int rc) { result = rc; });
    zk_run_until(zk, [&] { return result != -999; }, 10000);
    return result == -999 ? ZOPERATIONTIMEOUT : result;
}

void pause_ms(ZkSession &zk, int ms) { zk_run_until(zk, [] { return false; }, ms); }

// ---- the bootstrap's undo ----------------------------------------------------------

// Armed once this node won the initialize race: if the bootstrap does not
// get to commit() (an exception leaves the scope), it gives the race back,
// as Patroni does, so that this or another node can try again, and leaves an
// empty data directory.
class BootstrapRollback {
  public:
    BootstrapRollback(ZkSession &zk, ClusterStore &store, std::string pgdata)
        : zk_(zk), store_(store), pgdata_(std::move(pgdata)) {}
    BootstrapRollback(const BootstrapRollback &) = delete;
    BootstrapRollback &operator=(const BootstrapRollback &) = delete;
    ~BootstrapRollback() {
        if (!armed_) return;
        try {
            info("bootstrap failed: removing the initialize key and the partial data directory");
            zk_sync(zk_, [&](ClusterStore::DoneCb cb) { store_.remove("initialize", -1, cb); });
            remove_dir_contents(pgdata_);
        } catch (const std::exception &e) {
            info(std::string("rolling back the bootstrap failed too: ") + e.what());
        } catch (...) {
        }
    }
    void commit() { armed_ = false; }

  private:
    ZkSession &zk_;
    ClusterStore &store_;
    std::string pgdata_;
    bool armed_ = true;
};

// ---- following a leader ----------------------------------------------------------------

PgData pgdata_of(const NodeConfig &c) { return PgData{c.pgdata, c.bindir}; }

void leader_address(const Member &leader, std::string &host, int &port) {
    if (!parse_conn_url(leader.conn_url, host, port)) die("leader " + leader.name + " has an unusable conn_url");
}

std::string primary_conninfo(const NodeConfig &c, const std::string &host, int port) {
    return replication_conninfo(c.repl_user, c.repl_password, host, port, c.name);
}

void configure_follower(const NodeConfig &c, const Member &leader, bool use_slots) {
    std::string host;
    int port = 0;
    leader_address(leader, host, port);
    set_server_conf(pgdata_of(c), {{"primary_conninfo", primary_conninfo(c, host, port)},
                                   {"primary_slot_name", use_slots ? slot_name_for_member(c.name) : ""}});
    write_file(c.pgdata + "/standby.signal", "");
    info("configured to follow " + leader.name + " at " + host + ":" + std::to_string(port));
}

// Files a copy from another node carries that are not ours.
void remove_foreign_state(const NodeConfig &c) {
    for (const char *f : {"pg_ha.zksession", kRestartMarkerFile, kStartTimeoutFile, "promote", "recovery.signal"})
        std::remove((c.pgdata + "/" + f).c_str());
    // The source's socket lock files when its sockets live in the data
    // directory (unix_socket_directories: "."): they name its postmaster.
    std::error_code ec;
    for (std::filesystem::directory_iterator it(c.pgdata, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string f = it->path().filename().string();
        if (f.rfind(".s.PGSQL.", 0) == 0 && f.size() > 5 && f.compare(f.size() - 5, 5, ".lock") == 0)
            std::remove(it->path().c_str());
    }
}

// ---- a new cluster -------------------------------------------------------------------------

// The default pg_hba.conf (issue 10 item 5): local connections for everyone;
// from the network replication (its role only) and the other roles, but the
// superuser only from pg_ha.superuser_networks. Without a rewind role the
// superuser runs pg_rewind against the leader, so then the network keeps it
// (and boot says so).
std::string default_hba(const NodeConfig &c) {
    std::string hba = "# written by pg_hactl boot\n"
                      "local   all             all                                     peer\n"
                      "host    all             all             127.0.0.1/32            scram-sha-256\n"
                      "host    all             all             ::1/128                 scram-sha-256\n"
                      "host    replication     " + c.repl_user + "  0.0.0.0/0               scram-sha-256\n"
                      "host    replication     " + c.repl_user + "  ::/0                    scram-sha-256\n";
    std::istringstream nets(c.superuser_networks);
    for (std::string net; std::getline(nets, net, ',');) {
        net.erase(std::remove_if(net.begin(), net.end(), [](unsigned char ch) { return std::isspace(ch); }), net.end());
        if (!net.empty()) hba += "host    all             " + c.superuser + "  " + net + "  scram-sha-256\n";
    }
    if (!c.rewind_user.empty()) {
        hba += "host    all             " + c.superuser + "  0.0.0.0/0               reject\n"
               "host    all             " + c.superuser + "  ::/0                    reject\n";
    } else {
        info("warning: pg_ha.rewind_user is empty, so pg_rewind logs in as the superuser and pg_hba.conf lets the "
             "superuser in from the network; set pg_ha.rewind_user to keep it local");
    }
    return hba + "host    all             all             0.0.0.0/0               scram-sha-256\n"
                 "host    all             all             ::/0                    scram-sha-256\n";
}

// A PostgreSQL running only for bootstrap.post_bootstrap: no pg_ha worker,
// no TCP, its socket in a private directory; stopped when this goes away.
class BootstrapServer {
  public:
    explicit BootstrapServer(const NodeConfig &c) : pg_(pgdata_of(c)) {
        char tmpl[] = "/tmp/pg_ha_boot.XXXXXX";
        if (!mkdtemp(tmpl)) die(std::string("cannot create a temporary directory: ") + std::strerror(errno));
        dir_ = tmpl;
        port_ = c.port;
        const int rc = run(shell_quote(pg_.program("pg_ctl")) + " -D " + shell_quote(pg_.dir) + " -w -t 120 -l " +
                           shell_quote(dir_ + "/postgres.log") + " -o " +
                           shell_quote("-c shared_preload_libraries= -c listen_addresses= -c archive_mode=off -c port=" +
                                       std::to_string(port_) + " -c unix_socket_directories=" + dir_) +
                           " start >/dev/null");
        if (rc != 0) {
            const std::string log = read_file(dir_ + "/postgres.log");
            cleanup();
            die("cannot start PostgreSQL for post_bootstrap (exit " + std::to_string(rc) + "):\n" + log);
        }
    }
    ~BootstrapServer() {
        run(shell_quote(pg_.program("pg_ctl")) + " -D " + shell_quote(pg_.dir) + " -m fast -w -t 120 stop >/dev/null");
        cleanup();
    }
    BootstrapServer(const BootstrapServer &) = delete;
    BootstrapServer &operator=(const BootstrapServer &) = delete;
    const std::string &dir() const { return dir_; }
    int port() const { return port_; }

  private:
    void cleanup() {
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }
    PgData pg_;
    std::string dir_;
    int port_ = 5432;
};

// "postgresql://user@%2Fsocket%2Fdir:port/postgres": Patroni's connection
// URL for post_bootstrap, without the password (it is in PGPASSFILE).
std::string socket_url(const std::string &user, const std::string &dir, int port) {
    auto enc = [](const std::string &s) {
        std::string out;
        const char *hex = "0123456789ABCDEF";
        for (unsigned char ch : s) {
            if (std::isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~') out += static_cast<char>(ch);
            else {
                out += '%';
                out += hex[ch >> 4];
                out += hex[ch & 15];
            }
        }
        return out;
    };
    return "postgresql://" + enc(user) + "@" + enc(dir) + ":" + std::to_string(port) + "/postgres";
}

// bootstrap.post_bootstrap (post_init): run once on the new primary with its
// connection URL; a failure throws (the caller's rollback releases initialize).
void run_post_bootstrap(const NodeConfig &c, const std::string &script) {
    BootstrapServer server(c);
    std::string pgpass_line;
    for (const std::string &field : {std::string("*"), std::string("*"), std::string("*"), c.superuser, c.superuser_password}) {
        std::string f;
        for (char ch : field) {
            if (ch == ':' || ch == '\\') f += '\\';
            f += ch;
        }
        pgpass_line += (pgpass_line.empty() ? "" : ":") + (field == "*" ? std::string("*") : f);
    }
    const std::string pgpass = server.dir() + "/pgpass";
    write_file(pgpass, pgpass_line + "\n", 0600);
    const std::string url = socket_url(c.superuser, server.dir(), server.port());
    info("running bootstrap.post_bootstrap: " + script + " " + url);
    const int rc = run("PGPASSFILE=" + shell_quote(pgpass) + " " + script + " " + shell_quote(url));
    if (rc != 0) die("bootstrap.post_bootstrap " + script + " failed (exit " + std::to_string(rc) + ")");
}

void bootstrap_new_cluster(const NodeConfig &c) {
    const PgData pg = pgdata_of(c);
    const BootstrapPlan *plan = c.patroni ? &c.patroni->bootstrap : nullptr;
    if (plan && plan->method != "initdb") {
        info("won the initialize race: creating a new cluster with bootstrap." + plan->method);
        std::string cmd = plan->method_command + " " + shell_quote("--scope=" + c.scope) + " " +
                          shell_quote("--datadir=" + c.pgdata);
        for (const auto &a : plan->method_args) cmd += " " + shell_quote(a);
        const int rc = run(cmd);
        if (rc != 0) die("bootstrap." + plan->method + " failed (exit " + std::to_string(rc) + ")");
        if (!file_exists(c.pgdata + "/PG_VERSION"))
            die("bootstrap." + plan->method + " left no PostgreSQL data directory in " + c.pgdata);
        write_managed_block(pg, c.config_path);
        if (!plan->post_bootstrap.empty()) run_post_bootstrap(c, plan->post_bootstrap);
        return;
    }
    info("won the initialize race: creating a new cluster with initdb");
    // No default passwords (issue 10 item 5): a superuser without one could
    // log in with whatever the pg_hba.conf of the day allows.
    if (c.superuser_password.empty())
        throw CommandError(kExitFailed, "pg_ha.superuser_password is empty: refusing to create a cluster whose "
                                        "superuser (" + c.superuser + ") has no password (set it, e.g. "
                                        "PGHA_SUPERUSER_PASSWORD; the settings file is readable by its owner only)");
    if (!c.repl_user.empty() && c.repl_password.empty())
        throw CommandError(kExitFailed, "pg_ha.replication_password is empty: standbys could not log in as " +
                                            c.repl_user + " (scram-sha-256); set it");
    if (plan) initdb_with_options(pg, c.superuser, c.superuser_password, plan->initdb_options, !plan->initdb_auth_given);
    else initdb(pg, c.superuser, c.superuser_password);

    std::string hba = default_hba(c);
    if (plan) {
        // Patroni appends bootstrap.pg_hba to initdb's file.
        hba = read_file(c.pgdata + "/pg_hba.conf");
        if (!plan->pg_hba.empty()) hba += "\n# bootstrap.pg_hba (pg_hactl boot --patroni-config)\n";
        for (const auto &line : plan->pg_hba) hba += line + "\n";
    } else if (!c.pg_hba.empty()) {
        hba = "# written by pg_hactl boot from pg_ha.pg_hba\n";
        std::istringstream in(c.pg_hba);
        std::string line;
        while (std::getline(in, line, ';')) hba += line + "\n";
    }
    write_file(c.pgdata + "/pg_hba.conf", hba);
    write_managed_block(pg, c.config_path);

    // Roles, in single-user mode (no network, no pg_ha worker).
    std::string sql;
    auto add_role = [&](const std::string &user, const std::string &pw, const std::string &attrs) {
        if (user.empty() || user == c.superuser) return;
        sql += "CREATE ROLE " + sql_ident(user) + " WITH LOGIN " + attrs +
               (pw.empty() ? "" : " PASSWORD " + sql_literal(pw)) + ";\n";
    };
    add_role(c.repl_user, c.repl_password, "REPLICATION");
    add_role(c.rewind_user, c.rewind_password, "");
    add_role(c.admin_user, c.admin_password, "CREATEROLE CREATEDB");
    if (plan)
        for (const auto &u : plan->users) {
            std::string attrs;
            for (const auto &o : u.options) attrs += o + " ";
            add_role(u.name, u.password, attrs);
        }
    if (!c.rewind_user.empty() && c.rewind_user != c.superuser) {
        for (const char *fn : {"pg_catalog.pg_ls_dir(text, boolean, boolean)", "pg_catalog.pg_stat_file(text, boolean)",
                               "pg_catalog.pg_read_binary_file(text)",
                               "pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)"})
            sql += std::string("GRANT EXECUTE ON FUNCTION ") + fn + " TO " + sql_ident(c.rewind_user) + ";\n";
    }
    sql += "CREATE EXTENSION IF NOT EXISTS pg_ha;\n";
    run_single_user_sql(pg, sql);
    if (plan && !plan->post_bootstrap.empty()) run_post_bootstrap(c, plan->post_bootstrap);
}

// bootstrap.dcs becomes the config key of the new cluster (Patroni writes it
// over whatever is there once its bootstrap succeeded).
void write_initial_config(const NodeConfig &c, ZkSession &zk, ClusterStore &store) {
    if (!c.patroni || c.patroni->dcs.empty()) return;
    const int rc = zk_sync(zk, [&](ClusterStore::DoneCb cb) { store.set_or_create("config", json_text(c.patroni->dcs), cb); });
    if (rc != ZOK) die("cannot write bootstrap.dcs to the config key: " + ZkSession::error_text(rc));
    info("bootstrap.dcs written to " + store.path("config"));
}

// ---- a copy of the leader --------------------------------------------------------------------

// Copies `source` (the leader, or a member tagged clonefrom) and follows `leader`.
bool clone_from(const NodeConfig &c, const Member &source, const Member &leader, bool use_slots) {
    std::string host;
    int port = 0;
    if (!parse_conn_url(source.conn_url, host, port)) return false;
    const bool from_leader = source.name == leader.name;
    info("cloning from " + source.name + (from_leader ? std::string() : " (tagged clonefrom)") + " (" + host + ":" +
         std::to_string(port) + ") with pg_basebackup");
    const std::string conninfo = build_conninfo({{"host", host},
                                                 {"port", std::to_string(port)},
                                                 {"user", c.repl_user},
                                                 {"application_name", c.name},
                                                 {"connect_timeout", "10"}});
    // The slot is this member's slot on the leader; a copy from another member takes none there.
    const int rc = pg_basebackup(pgdata_of(c), conninfo, c.repl_password,
                                 use_slots && from_leader ? slot_name_for_member(c.name) : "");
    if (rc != 0) {
        info("pg_basebackup failed (exit " + std::to_string(rc) + ")");
        return false;
    }
    remove_foreign_state(c);
    write_managed_block(pgdata_of(c), c.config_path);
    configure_follower(c, leader, use_slots);
    return true;
}

// ---- an existing data directory ---------------------------------------------------------------

enum class Rejoin { Started, Reclone };

// Another member leads: make this node its standby, rewinding first when this
// node was a primary or is behind on an older timeline (it may have WAL the
// new leader never received).
// primary_start_timeout 0: a primary that crashed (its control file was not
// shut down) and still holds the lock with its saved session hands the lock
// over instead of starting again, when another member can take it (Patroni:
// "Primary crashed. Failing over."). Then it waits for that member to lead
// (bounded), and rejoin_existing makes it a standby, rewinding if needed.
void fail_over_after_crash(const NodeConfig &c, ZkSession &zk, ClusterStore &store) {
    // The worker marks a restart it was asked for (POST /restart, pg_hactl
    // restart, a scheduled one): the leader stops in immediate mode to keep
    // its lock, and that is not a crash.
    // A restart with a "timeout" leaves it for the next worker (pg_ha.start_timeout).
    const std::string marker = c.pgdata + "/" + kRestartMarkerFile;
    const std::string start_timeout = c.pgdata + "/" + kStartTimeoutFile;
    const bool requested = file_exists(marker);
    if (requested && restart_marker_timeout(read_file(marker)) > 0) {
        if (std::rename(marker.c_str(), start_timeout.c_str()) != 0) std::remove(marker.c_str());
    } else {
        std::remove(marker.c_str());
        std::remove(start_timeout.c_str());
    }
    if (requested || file_exists(c.pgdata + "/standby.signal")) return;
    const std::string state = controldata(pgdata_of(c))["Database cluster state"];
    const bool crashed = state == "in production" || state == "in crash recovery" || state == "shutting down";
    ClusterView v;
    std::string err;
    if (!crashed || !read_view(zk, store, v, err)) return;
    const std::string target = crash_failover_target(v, c.name, crashed);
    if (target.empty()) return;
    const SavedSessionClose r = close_saved_session(c, c.pgdata);
    if (!r.released_leader) {
        info("primary_start_timeout is 0 but the crashed primary's session could not hand the lock over (" +
             r.message + "): starting again");
        return;
    }
    info("this primary crashed (cluster state \"" + state + "\") and primary_start_timeout is 0: " + r.message +
         " so that " + target + " (or another eligible member) takes over; this node rejoins as a standby");
    const int wait_ms = v.config.ttl_ms + 2 * v.config.loop_wait_ms + 10000;
    const std::int64_t until = ZkSession::steady_ms() + wait_ms;
    while (ZkSession::steady_ms() < until) {
        ClusterView now;
        if (read_view(zk, store, now, err) && now.leader && *now.leader != c.name) {
            info(*now.leader + " took over");
            return;
        }
        pause_ms(zk, 500);
    }
    info("nobody took the leader lock within " + seconds_text(wait_ms) +
         " s: starting with the existing data");
}

Rejoin rejoin_existing(const NodeConfig &c, ZkSession &zk, ClusterStore &store) {
    fail_over_after_crash(c, zk, store);
    const PgData pg = pgdata_of(c);
    const std::int64_t deadline = ZkSession::steady_ms() + static_cast<std::int64_t>(c.timeout_s) * 1000;
    const std::int64_t history_wait_until = ZkSession::steady_ms() + 15000;
    bool said = false, said_history = false;
    for (;;) {
        ClusterView v;
        std::string err;
        if (!read_view(zk, store, v, err)) die("cannot read the cluster: " + err);
        if (!v.leader && v.failover && !v.failover->candidate.empty() && v.failover->candidate != c.name &&
            ZkSession::steady_ms() < deadline) {
            // A switchover hands the lock to another member: follow it, do not
            // come back as the primary in between.
            if (!said) info("switchover to " + v.failover->candidate + " in progress: waiting for it to take the leader lock");
            said = true;
            pause_ms(zk, 200);
            continue;
        }
        if (!v.leader || *v.leader == c.name) {
            info(v.leader ? "this node holds the leader lock: starting with the existing data"
                          : "no leader yet: starting with the existing data (the worker campaigns once it runs)");
            return Rejoin::Started;
        }
        const Member *leader = v.leader_member();
        auto cd = controldata(pg);
        const std::string cluster_state = cd["Database cluster state"];
        const bool signal = file_exists(c.pgdata + "/standby.signal");
        const int local_tl = controldata_timeline(cd);
        const bool was_primary = !is_standby_directory(cluster_state, signal);
        const RejoinPath path = rejoin_path(cluster_state, signal, local_tl, leader ? leader->timeline : 0);
        if (leader && path == RejoinPath::Follow) {
            configure_follower(c, *leader, v.config.use_slots);
            return Rejoin::Started;
        }
        // A rewind needs the leader up and running as a primary.
        if (!leader || leader->state != "running" || leader->role != "primary") {
            if (ZkSession::steady_ms() > deadline)
                die("gave up after " + std::to_string(c.timeout_s) + " s: " + *v.leader +
                    " holds the leader lock but is not a running primary to rewind from");
            if (!said) info("waiting for the leader " + *v.leader + " to run as a primary before rejoining");
            said = true;
            pause_ms(zk, 1000);
            continue;
        }
        // A primary that handed over (a switchover: stopped cleanly, the new
        // leader promoted after our shutdown checkpoint) or stopped without a
        // shutdown checkpoint, or a standby that did not shut down cleanly:
        // if the local WAL ends at or before the point where the leader's
        // timeline forked from ours (and, for a standby, so does what it
        // replayed: its minimum recovery point), there is nothing to rewind.
        if (path == RejoinPath::CheckPrimaryWal || path == RejoinPath::FollowCrashed) {
            Lsn end = local_wal_end(pg, cd, local_tl);
            Lsn fork = 0;
            for (const auto &h : v.history)
                if (h.timeline == local_tl) fork = h.lsn;
            if (fork == 0 && leader->timeline > local_tl && ZkSession::steady_ms() < history_wait_until) {
                // The new leader records its switch point right after promoting.
                if (!said_history) info("waiting for " + leader->name + " to record its promotion in history");
                said_history = true;
                pause_ms(zk, 200);
                continue;
            }
            const auto replayed = parse_lsn(cd["Minimum recovery ending location"]);
            const bool replayed_ok = path == RejoinPath::CheckPrimaryWal || (replayed && *replayed <= fork);
            if (end != 0 && fork != 0 && end <= fork && replayed_ok) {
                info("local WAL ends at " + format_lsn(end) + ", at or before " + leader->name + "'s switch point " +
                     format_lsn(fork) + " on timeline " + std::to_string(local_tl) + ": no rewind needed");
                if (path == RejoinPath::FollowCrashed)
                    info("this standby did not shut down cleanly (state \"" + cluster_state +
                         "\"): it starts as " + leader->name + "'s standby, whose recovery reads what the local WAL "
                         "lacks from the leader (no crash recovery of its own, which would end it)");
                for (const char *f : {"/promote", "/recovery.signal"}) std::remove((c.pgdata + f).c_str());
                configure_follower(c, *leader, v.config.use_slots);
                return Rejoin::Started;
            }
            if (end != 0 && fork != 0)
                info("local WAL ends at " + format_lsn(end) +
                     (path == RejoinPath::FollowCrashed && replayed ? ", replayed to " + format_lsn(*replayed) : "") +
                     ", switch point " + format_lsn(fork) + ": rewinding");
        }
        info(std::string("this node ") + (was_primary ? "was a primary" : "is a standby on timeline " + std::to_string(local_tl)) +
             " and " + leader->name + " now leads on timeline " + std::to_string(leader->timeline) +
             ": checking for divergence with pg_rewind");
        if (was_primary) ensure_clean_shutdown(pg);
        else ensure_clean_standby_shutdown(pg);
        cd = controldata(pg);
        const std::string local_end = cd["Latest checkpoint location"];
        std::string host;
        int port = 0;
        leader_address(*leader, host, port);
        const std::string user = c.rewind_user.empty() ? c.superuser : c.rewind_user;
        const std::string pw = c.rewind_user.empty() ? c.superuser_password : c.rewind_password;
        const std::string source = build_conninfo({{"host", host},
                                                   {"port", std::to_string(port)},
                                                   {"user", user},
                                                   {"dbname", "postgres"},
                                                   {"connect_timeout", "10"}});
        const RewindResult r = pg_rewind(pg, source, pw, !v.config.use_pg_rewind);
        if (const std::string said = rewind_outcome_text(r, leader->name, local_end, v.config.use_pg_rewind);
            !said.empty())
            info(said);
        if (r.exit_code == 0 && (r.no_rewind_required || v.config.use_pg_rewind)) {
            remove_foreign_state(c);
            write_managed_block(pg, c.config_path);
            configure_follower(c, *leader, v.config.use_slots);
            return Rejoin::Started;
        }
        const std::string why = r.exit_code != 0 ? "pg_rewind failed (exit " + std::to_string(r.exit_code) + ")"
                                                 : "the data directory diverged from " + leader->name + " and use_pg_rewind is off";
        if (v.config.remove_data_directory_on_rewind_failure) {
            info(why + "; remove_data_directory_on_rewind_failure is on: re-cloning from the leader");
            remove_dir_contents(c.pgdata);
            return Rejoin::Reclone;
        }
        die(why + ". The data directory " + c.pgdata + " is kept and PostgreSQL is not started. To rejoin, either fix "
            "the cause and restart, or discard this copy: empty the data directory (it is then cloned from " +
            leader->name + ") or set remove_data_directory_on_rewind_failure: true in the dynamic configuration");
    }
}

}  // namespace

NodeConfig load_node_config(const std::string &path) {
    NodeConfig c;
    c.config_path = path;
    SettingsFile f;
    std::string err;
    if (!load_settings_file(path, f, err)) die(err);
    for (const auto &e : f.errors) die(path + ": " + e);
    // The one settings table: the same names, defaults and parsing as the server.
    std::vector<std::string> errors;
    const NodeSettings n = NodeSettings::from_map(f.values, errors, kCliOnlySettings);
    for (const auto &e : errors) die(path + ": " + e);
    c.scope = n.scope;
    c.ns = n.ns;
    c.name = n.node_name;
    c.zk_hosts = n.zookeeper_hosts;
    if (!make_zk_auth(n.zookeeper_user, n.zookeeper_password, n.zookeeper_set_acls, c.zk_auth, err))
        die(path + ": " + err);
    c.connect_address = n.connect_address;
    c.superuser = n.superuser;
    c.superuser_password = n.superuser_password;
    c.repl_user = n.replication_user;
    c.repl_password = n.replication_password;
    c.rewind_user = n.rewind_user;
    c.rewind_password = n.rewind_password;
    c.admin_user = n.admin_user;
    c.admin_password = n.admin_password;
    c.pg_hba = n.pg_hba;
    c.superuser_networks = n.superuser_networks;
    c.dcs_shell_parameters = n.dcs_shell_parameters;
    c.port = n.port;
    for (const auto &kv : f.values)
        if (kv.first.rfind("pg_ha.", 0) != 0) c.local_parameters.insert(kv.first);
    if (c.scope.empty()) die(path + ": pg_ha.scope is not set");
    if (c.name.empty()) die(path + ": pg_ha.node_name is not set");
    if (c.zk_hosts.empty()) die(path + ": pg_ha.zookeeper_hosts is not set");
    std::string h;
    int p;
    if (!parse_host_port(c.connect_address, h, p))
        die(path + ": pg_ha.connect_address \"" + c.connect_address + "\" is not host:port");
    return c;
}

namespace {
int boot_steps(NodeConfig &c);
}  // namespace

// The config key's postgresql.parameters into pg_ha.auto.conf before
// the server starts (as Patroni writes them into postgresql.conf), so that
// restart-only ones (archive_mode, ...) are in effect from the first start;
// the worker keeps them current afterwards (LocalServer::set_parameters).
void write_cluster_parameters(const NodeConfig &c) {
    ZkSession zk;
    if (!try_connect_zk(zk, c, 15000)) {
        // The worker applies them once ZooKeeper answers; never keep the server down for it.
        info("cannot reach ZooKeeper to read the config key's postgresql.parameters; the worker applies them later");
        return;
    }
    ClusterStore store(zk, c.ns, c.scope);
    ClusterView v;
    std::string err;
    if (!read_view(zk, store, v, err)) die("cannot read the cluster: " + err);
    if (!v.config_present) return;
    std::string major = read_file(c.pgdata + "/PG_VERSION");
    const int version = std::atoi(major.c_str()) * 10000;
    std::vector<std::string> keep, removed;
    const ClusterParameters cp = member_parameters(v.config, c.local_parameters, c.dcs_shell_parameters, version, keep);
    for (const auto &why : cp.skipped) info("config key postgresql.parameters." + why);
    // Parameters no longer in the config key (or now set locally) leave pg_ha.auto.conf.
    if (!remove_other_server_conf_keys(c.pgdata, keep, removed, err)) die(err);
    if (!removed.empty()) {
        std::string list;
        for (const auto &n : removed) list += (list.empty() ? "" : ", ") + n;
        info("removed from pg_ha.auto.conf, no longer in the config key's postgresql.parameters: " + list);
    }
    if (cp.apply.empty()) return;
    set_server_conf(pgdata_of(c), cp.apply);
    std::string names;
    for (const auto &kv : cp.apply) names += (names.empty() ? "" : ", ") + kv.first;
    info("the config key's postgresql.parameters written to pg_ha.auto.conf: " + names);
}

// A standby must start with at least the primary's max_connections,
// max_wal_senders, ... or PostgreSQL does not replay. During a rolling
// decrease (the config key lowered, the standby restarted before the
// primary) it starts with the primary's values from its control file, as
// Patroni does; the worker then shows pending_restart, and a restart after
// the primary's brings the standby down to the configured value.
void raise_standby_minimums(const NodeConfig &c) {
    const PgData pg = pgdata_of(c);
    const auto cd = controldata(pg);
    if (cd.empty()) return;
    std::map<std::string, std::string> configured;
    for (const auto &p : standby_minimum_parameters()) configured[p.guc] = server_setting(pg, p.guc);
    const auto raise = raise_to_primary_values(configured, cd);
    if (raise.empty()) return;
    for (const auto &kv : raise)
        info(kv.first + " is " + configured[kv.first] + " here but " + kv.second +
             " on the primary (control file): this standby starts with " + kv.second +
             " (a standby cannot replay with less); restart it after the primary to apply the lower value");
    set_server_conf(pg, raise);
}

int cmd_boot(NodeConfig c) {
    int rc = boot_steps(c);
    const bool without_zk = rc == kBootWithoutZooKeeper;
    if (without_zk) rc = kExitOk;  // the read-only start: nothing to read from ZooKeeper
    if (rc == kExitOk && !without_zk && file_exists(c.pgdata + "/PG_VERSION")) write_cluster_parameters(c);
    if (rc == kExitOk && file_exists(c.pgdata + "/standby.signal")) raise_standby_minimums(c);
    if (rc == kExitOk && c.patroni && c.patroni->has_local_pg_hba && file_exists(c.pgdata + "/PG_VERSION")) {
        // Patroni's local postgresql.pg_hba: the whole pg_hba.conf, at every start.
        std::string hba = "# written by pg_hactl boot from postgresql.pg_hba; edits are overwritten\n";
        for (const auto &line : c.patroni->pg_hba) hba += line + "\n";
        write_file(c.pgdata + "/pg_hba.conf", hba);
    }
    return rc;
}

NodeConfig load_patroni_node_config(const std::string &yaml_path, const std::string &settings_path,
                                    const std::string &pgdata) {
    if (!file_exists(yaml_path)) die("cannot read the Patroni configuration " + yaml_path);
    PatroniConfig pc = read_patroni_config(read_file(yaml_path));
    for (const auto &w : pc.warnings) info("warning: " + yaml_path + ": " + w);
    if (!pc.ok()) {
        std::string all;
        for (const auto &e : pc.errors) all += "\n  " + e;
        die(yaml_path + " cannot be used:" + all);
    }
    if (!pgdata.empty() && pgdata != pc.data_dir)
        die("the data directory " + pgdata + " (--pgdata or $PGDATA) is not postgresql.data_dir " + pc.data_dir +
            " of " + yaml_path);
    if (const auto errors = config_errors(pc.dcs); !errors.empty())
        die(yaml_path + ": bootstrap.dcs: " + config_errors_text(errors));
    write_file(settings_path, settings_file_text(pc, yaml_path), 0600);
    info("wrote " + settings_path + " from " + yaml_path);
    NodeConfig c = load_node_config(settings_path);
    c.pgdata = pc.data_dir;
    if (!pc.bin_dir.empty()) {
        if (file_exists(pc.bin_dir + "/postgres")) c.bindir = pc.bin_dir;
        else info("warning: " + yaml_path + ": postgresql.bin_dir: no postgres in " + pc.bin_dir + "; looking elsewhere");
    }
    c.patroni = std::move(pc);
    return c;
}

namespace {
int boot_steps(NodeConfig &c) {
    if (mkdir(c.pgdata.c_str(), 0700) != 0 && errno != EEXIST) die("cannot create " + c.pgdata + ": " + std::strerror(errno));
    chmod(c.pgdata.c_str(), 0700);
    if (c.bindir.empty()) c.bindir = find_bindir(c.pgdata);
    ZkSession zk;
    if (file_exists(c.pgdata + "/PG_VERSION") && !file_exists(c.pgdata + "/pg_ha.reinitialize")) {
        touch_saved_session(c);
        // An existing data directory without ZooKeeper (a primary that fenced
        // itself, a restart during an outage): never start as a primary, but
        // serve reads as a standby (issue 9 item 9). The worker follows the
        // leader, rewinding first if needed, once ZooKeeper answers.
        const int wait_ms = std::min(c.timeout_s, 15) * 1000;
        if (!try_connect_zk(zk, c, wait_ms)) {
            info("cannot connect to ZooKeeper at " + c.zk_hosts + " within " + std::to_string(wait_ms / 1000) +
                 " s: starting as a read-only standby (no writes; the worker follows the leader once ZooKeeper "
                 "answers)");
            write_managed_block(pgdata_of(c), c.config_path);
            for (const char *f : {"/promote", "/recovery.signal"}) std::remove((c.pgdata + f).c_str());
            write_file(c.pgdata + "/standby.signal", "");
            return kBootWithoutZooKeeper;
        }
    } else {
        connect_zk(zk, c, c.timeout_s * 1000);
    }
    ClusterStore store(zk, c.ns, c.scope);
    int rc = zk_sync(zk, [&](ClusterStore::DoneCb cb) { store.ensure_base(cb); });
    if (rc != ZOK) die("cannot create the cluster's znodes under " + store.base() + ": " + ZkSession::error_text(rc));

    if (file_exists(c.pgdata + "/pg_ha.reinitialize")) {
        // ha_reinitialize() / POST /reinitialize: a fresh copy from the leader.
        info("reinitialize requested: discarding this data directory and cloning from the leader");
        remove_dir_contents(c.pgdata);
    }
    const bool has_data = file_exists(c.pgdata + "/PG_VERSION");
    if (has_data) {
        write_managed_block(pgdata_of(c), c.config_path);
        switch (rejoin_existing(c, zk, store)) {
            case Rejoin::Started: return kExitOk;
            case Rejoin::Reclone: break;  // data directory emptied: clone below
        }
    }
    if (!dir_empty(c.pgdata)) die(c.pgdata + " is neither empty nor a PostgreSQL data directory; refusing to touch it");

    const std::int64_t deadline = ZkSession::steady_ms() + static_cast<std::int64_t>(c.timeout_s) * 1000;
    bool waited_msg = false;
    while (ZkSession::steady_ms() < deadline) {
        ClusterView v;
        std::string err;
        if (!read_view(zk, store, v, err)) {
            info("cannot read the cluster: " + err + "; retrying");
        } else if (!v.initialize) {
            rc = zk_sync(zk, [&](ClusterStore::DoneCb cb) { store.create("initialize", "", false, cb); });
            if (rc == ZOK) {
                BootstrapRollback rollback(zk, store, c.pgdata);
                bootstrap_new_cluster(c);
                const std::string sysid = system_identifier(pgdata_of(c));
                rc = zk_sync(zk, [&](ClusterStore::DoneCb cb) { store.set_versioned("initialize", sysid, -1, cb); });
                if (rc != ZOK) die("cannot record the system identifier in ZooKeeper: " + ZkSession::error_text(rc));
                write_initial_config(c, zk, store);
                rollback.commit();
                info("new cluster " + c.scope + " initialized, system identifier " + sysid);
                return kExitOk;
            }
            if (rc != ZNODEEXISTS) info("initialize race: " + ZkSession::error_text(rc));
        } else if (const Member *leader = v.leader_member();
                   leader && leader->state == "running" && leader->role == "primary") {
            const Member *source = v.clone_member(c.name);
            if (!source) source = leader;
            if (clone_from(c, *source, *leader, v.config.use_slots)) return kExitOk;
            if (!dir_empty(c.pgdata)) die("pg_basebackup failed and left files in " + c.pgdata);
        } else if (!waited_msg) {
            info("waiting for a running leader to clone from");
            waited_msg = true;
        }
        pause_ms(zk, 1000);
    }
    die("gave up after " + std::to_string(c.timeout_s) + " s: no leader to clone from");
}

}  // namespace

}  // namespace pgha::cli
