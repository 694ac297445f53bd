// pg_hactl: bootstrap (run before postgres starts) and operator commands.
//
//   pg_hactl boot --config FILE --pgdata DIR [--timeout SECONDS]
//   pg_hactl list|switchover|failover|pause|resume|history|show-config|edit-config|restart|reinit
//            (cli/commands.cpp; see usage())
//
// Exit codes: 0 ok, 1 failed (message on stderr), 2 usage error, 3 ZooKeeper
// or the REST API unreachable (operator commands).
#include "core/no_postgres.hpp"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <zookeeper/zookeeper.h>

#include <CLI/CLI.hpp>

#include "cli/commands.hpp"
#include "core/cluster.hpp"
#include "core/patroni_codec.hpp"
#include "core/settings_file.hpp"
#include "dcs/cluster_store.hpp"
#include "dcs/zk_session.hpp"

namespace pgha {
namespace {

struct NodeConfig {
    std::string config_path, pgdata, bindir;
    std::string scope, ns, name, zk_hosts, connect_address;
    std::string superuser, superuser_password, repl_user, repl_password, rewind_user, rewind_password;
    std::string admin_user, admin_password, pg_hba;
    int timeout_s = 300;
};

// Undo work in progress before exiting on an error (e.g. a failed bootstrap).
std::function<void()> g_on_die;

[[noreturn]] void die(const std::string &msg) {
    std::cerr << "pg_hactl: " << msg << std::endl;
    if (g_on_die) {
        auto f = std::move(g_on_die);
        g_on_die = nullptr;
        f();
    }
    std::exit(1);
}

void info(const std::string &msg) { std::cerr << "pg_hactl: " << msg << std::endl; }

std::string shell_quote(const std::string &s) {
    std::string out = "'";
    for (char c : s) {
        if (c == '\'') out += "'\\''";
        else out += c;
    }
    return out + "'";
}

std::string conf_quote(const std::string &s) {
    std::string out = "'";
    for (char c : s) {
        if (c == '\'') out += "''";
        else out += c;
    }
    return out + "'";
}

std::string sql_literal(const std::string &s) { return conf_quote(s); }

std::string sql_ident(const std::string &s) {
    std::string out = "\"";
    for (char c : s) {
        if (c == '"') out += "\"\"";
        else out += c;
    }
    return out + "\"";
}

bool file_exists(const std::string &p) { return access(p.c_str(), F_OK) == 0; }

std::string read_file(const std::string &p) {
    std::ifstream f(p);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

void write_file(const std::string &p, const std::string &content, mode_t mode = 0600) {
    std::string tmp = p + ".pg_ha.tmp";
    {
        std::ofstream f(tmp, std::ios::trunc);
        if (!f) die("cannot write " + tmp + ": " + std::strerror(errno));
        f << content;
        if (!f) die("cannot write " + tmp);
    }
    chmod(tmp.c_str(), mode);
    if (std::rename(tmp.c_str(), p.c_str()) != 0) die("cannot rename " + tmp + ": " + std::strerror(errno));
}

std::string find_bindir() {
    char buf[4096];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n > 0) {
        buf[n] = 0;
        std::string dir(buf);
        dir = dir.substr(0, dir.rfind('/'));
        if (file_exists(dir + "/postgres")) return dir;
    }
    if (const char *e = std::getenv("PGBIN")) return e;
    return "/usr/lib/postgresql/15/bin";
}

int run(const std::string &cmd) {
    info("running: " + cmd.substr(0, cmd.find(" <")));
    int rc = std::system(cmd.c_str());
    if (rc == -1) return 127;
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

NodeConfig load_config(const std::string &path) {
    NodeConfig c;
    c.config_path = path;
    SettingsFile s;
    std::string err;
    if (!load_settings_file(path, s, err)) die(err);
    for (const auto &e : s.errors) die(path + ": " + e);
    c.scope = s.get("pg_ha.scope");
    c.ns = s.get("pg_ha.namespace", "/service");
    c.name = s.get("pg_ha.node_name");
    c.zk_hosts = s.get("pg_ha.zookeeper_hosts");
    c.connect_address = s.get("pg_ha.connect_address");
    c.superuser = s.get("pg_ha.superuser", "postgres");
    c.superuser_password = s.get("pg_ha.superuser_password");
    c.repl_user = s.get("pg_ha.replication_user", "replicator");
    c.repl_password = s.get("pg_ha.replication_password");
    c.rewind_user = s.get("pg_ha.rewind_user", "rewind_user");
    c.rewind_password = s.get("pg_ha.rewind_password");
    c.admin_user = s.get("pg_ha.admin_user", "admin");
    c.admin_password = s.get("pg_ha.admin_password");
    c.pg_hba = s.get("pg_ha.pg_hba");
    if (c.scope.empty()) die(path + ": pg_ha.scope is not set");
    if (c.name.empty()) die(path + ": pg_ha.node_name is not set");
    if (c.zk_hosts.empty()) die(path + ": pg_ha.zookeeper_hosts is not set");
    std::string h;
    int p;
    if (!parse_host_port(c.connect_address, h, p))
        die(path + ": pg_ha.connect_address \"" + c.connect_address + "\" is not host:port");
    c.bindir = find_bindir();
    return c;
}

// A connected session, or exit with a clear message.
void connect_zk(ZkSession &zk, const NodeConfig &c, int timeout_ms) {
    std::string err;
    if (!zk.open(c.zk_hosts, 30000, nullptr, err)) die(err);
    if (!zk_run_until(zk, [&] { return zk.connected(); }, timeout_ms))
        die("cannot connect to ZooKeeper at " + c.zk_hosts + " within " + std::to_string(timeout_ms / 1000) + " s");
}

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
    return ok;
}

int zk_sync(ZkSession &zk, const std::function<void(ClusterStore::DoneCb)> &op) {
    int result = -999;
    op([&](int rc) { result = rc; });
    zk_run_until(zk, [&] { return result != -999; }, 10000);
    return result == -999 ? ZOPERATIONTIMEOUT : result;
}

// Lines between the markers are pg_ha's; the rest of postgresql.conf is the user's.
void write_managed_block(const NodeConfig &c) {
    const std::string path = c.pgdata + "/postgresql.conf";
    std::string text = read_file(path);
    const std::string begin = "# BEGIN pg_ha (managed by pg_hactl boot; edits here are overwritten)\n";
    const std::string end = "# END pg_ha\n";
    auto b = text.find(begin);
    if (b != std::string::npos) {
        auto e = text.find(end, b);
        text.erase(b, e == std::string::npos ? std::string::npos : e + end.size() - b);
    }
    char abs[4096];
    std::string cfg = c.config_path;
    if (realpath(c.config_path.c_str(), abs)) cfg = abs;
    std::string block = begin;
    block += "shared_preload_libraries = 'pg_ha'\n";
    block += "wal_level = replica\nhot_standby = on\nmax_wal_senders = 10\nmax_replication_slots = 10\n";
    block += "wal_log_hints = on\nwal_keep_size = '128MB'\nhot_standby_feedback = on\n";
    block += "include " + conf_quote(cfg) + "\n";
    block += end;
    if (!text.empty() && text.back() != '\n') text += '\n';
    write_file(path, text + block);
}

// postgresql.auto.conf: replace or add `key = 'value'`.
void set_auto_conf(const NodeConfig &c, const std::map<std::string, std::string> &kv) {
    const std::string path = c.pgdata + "/postgresql.auto.conf";
    std::istringstream in(file_exists(path) ? read_file(path) : "");
    std::string line, out;
    while (std::getline(in, line)) {
        bool replaced = false;
        for (const auto &[k, v] : kv) {
            std::size_t i = 0;
            while (i < line.size() && line[i] == ' ') ++i;
            if (line.compare(i, k.size(), k) == 0 && (line.size() == i + k.size() || line[i + k.size()] == ' ' ||
                                                      line[i + k.size()] == '='))
                replaced = true;
        }
        if (!replaced) out += line + "\n";
    }
    for (const auto &[k, v] : kv) out += k + " = " + conf_quote(v) + "\n";
    write_file(path, out);
}

std::string primary_conninfo(const NodeConfig &c, const std::string &host, int port) {
    return "user=" + c.repl_user + " password=" + c.repl_password + " host=" + host + " port=" + std::to_string(port) +
           " application_name=" + c.name + " sslmode=prefer connect_timeout=5";
}

void configure_follower(const NodeConfig &c, const Member &leader, bool use_slots) {
    std::string host;
    int port = 0;
    if (!parse_conn_url(leader.conn_url, host, port)) die("leader " + leader.name + " has an unusable conn_url");
    std::map<std::string, std::string> kv = {{"primary_conninfo", primary_conninfo(c, host, port)}};
    kv["primary_slot_name"] = use_slots ? slot_name_for_member(c.name) : "";
    set_auto_conf(c, kv);
    write_file(c.pgdata + "/standby.signal", "");
    info("configured to follow " + leader.name + " at " + host + ":" + std::to_string(port));
}

std::string default_hba(const NodeConfig &c) {
    return "# written by pg_hactl boot\n"
           "local   all             all                                     peer\n"
           "host    all             all             127.0.0.1/32            md5\n"
           "host    all             all             ::1/128                 md5\n"
           "host    replication     " + c.repl_user + "  0.0.0.0/0               md5\n"
           "host    replication     " + c.repl_user + "  ::/0                    md5\n"
           "host    all             all             0.0.0.0/0               md5\n"
           "host    all             all             ::/0                    md5\n";
}

// pg_controldata's "Key: value" lines.
std::map<std::string, std::string> controldata(const NodeConfig &c) {
    std::map<std::string, std::string> out;
    std::string cmd = "LC_ALL=C " + shell_quote(c.bindir + "/pg_controldata") + " " + shell_quote(c.pgdata) + " 2>/dev/null";
    FILE *p = popen(cmd.c_str(), "r");
    if (!p) return out;
    char buf[512];
    while (fgets(buf, sizeof buf, p)) {
        std::string line(buf);
        auto colon = line.find(':');
        if (colon == std::string::npos) continue;
        std::string v = line.substr(colon + 1);
        v.erase(0, v.find_first_not_of(" \t"));
        v.erase(v.find_last_not_of(" \t\n") + 1);
        out[line.substr(0, colon)] = v;
    }
    pclose(p);
    return out;
}

std::string system_identifier(const NodeConfig &c) {
    auto cd = controldata(c);
    auto it = cd.find("Database system identifier");
    return it == cd.end() ? "" : it->second;
}

// Runs a command and returns its combined output (each line also logged).
int run_capture(const std::string &cmd, std::string &output) {
    info("running: " + cmd);
    FILE *p = popen((cmd + " 2>&1").c_str(), "r");
    if (!p) return 127;
    char buf[1024];
    while (fgets(buf, sizeof buf, p)) {
        std::string line(buf);
        output += line;
        if (!line.empty() && line.back() == '\n') line.pop_back();
        info("  " + line);
    }
    int rc = pclose(p);
    if (rc == -1) return 127;
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

void bootstrap_new_cluster(const NodeConfig &c) {
    info("won the initialize race: creating a new cluster with initdb");
    std::string pwfile = c.pgdata + ".pwfile";
    write_file(pwfile, c.superuser_password.empty() ? "postgres\n" : c.superuser_password + "\n");
    std::string cmd = shell_quote(c.bindir + "/initdb") + " -D " + shell_quote(c.pgdata) + " -U " +
                      shell_quote(c.superuser) + " --pwfile=" + shell_quote(pwfile) +
                      " --encoding=UTF8 --locale=C.UTF-8 --data-checksums --auth-local=peer --auth-host=md5";
    int rc = run(cmd);
    std::remove(pwfile.c_str());
    if (rc != 0) die("initdb failed (exit " + std::to_string(rc) + ")");

    std::string hba = default_hba(c);
    if (!c.pg_hba.empty()) {
        hba = "# written by pg_hactl boot from pg_ha.pg_hba\n";
        std::istringstream in(c.pg_hba);
        std::string line;
        while (std::getline(in, line, ';')) hba += line + "\n";
    }
    write_file(c.pgdata + "/pg_hba.conf", hba);
    write_managed_block(c);

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
    if (!c.rewind_user.empty() && c.rewind_user != c.superuser) {
        for (const char *fn : {"pg_catalog.pg_ls_dir(text, boolean, boolean)", "pg_catalog.pg_stat_file(text, boolean)",
                               "pg_catalog.pg_read_binary_file(text)",
                               "pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)"})
            sql += std::string("GRANT EXECUTE ON FUNCTION ") + fn + " TO " + sql_ident(c.rewind_user) + ";\n";
    }
    sql += "CREATE EXTENSION IF NOT EXISTS pg_ha;\n";
    std::string sqlfile = c.pgdata + "/pg_ha_bootstrap.sql";
    write_file(sqlfile, sql);
    rc = run(shell_quote(c.bindir + "/postgres") + " --single -D " + shell_quote(c.pgdata) +
             " -c shared_preload_libraries= -c config_file=" + shell_quote(c.pgdata + "/postgresql.conf") +
             " postgres < " + shell_quote(sqlfile) + " > " + shell_quote(c.pgdata + "/pg_ha_bootstrap.log") + " 2>&1");
    std::string log = read_file(c.pgdata + "/pg_ha_bootstrap.log");
    std::remove(sqlfile.c_str());
    if (rc != 0 || log.find("ERROR") != std::string::npos) die("creating roles failed:\n" + log);
    std::remove((c.pgdata + "/pg_ha_bootstrap.log").c_str());
}

bool clone_from(const NodeConfig &c, const Member &source, bool use_slots) {
    std::string host;
    int port = 0;
    if (!parse_conn_url(source.conn_url, host, port)) return false;
    info("cloning from " + source.name + " (" + host + ":" + std::to_string(port) + ") with pg_basebackup");
    std::string base = "PGPASSWORD=" + shell_quote(c.repl_password) + " " + shell_quote(c.bindir + "/pg_basebackup") +
                       " -D " + shell_quote(c.pgdata) + " -h " + shell_quote(host) + " -p " + std::to_string(port) +
                       " -U " + shell_quote(c.repl_user) + " -X stream -c fast --no-password";
    int rc;
    if (use_slots) {
        std::string slot = slot_name_for_member(c.name);
        rc = run(base + " -C -S " + shell_quote(slot));
        if (rc != 0) rc = run(base + " -S " + shell_quote(slot));  // the slot exists already
    } else {
        rc = run(base);
    }
    if (rc != 0) {
        info("pg_basebackup failed (exit " + std::to_string(rc) + ")");
        return false;
    }
    // The clone carries the source's session file and signal files: not ours.
    for (const char *f : {"/pg_ha.zksession", "/promote", "/recovery.signal"}) std::remove((c.pgdata + f).c_str());
    write_managed_block(c);
    configure_follower(c, source, use_slots);
    return true;
}

bool dir_empty(const std::string &p) {
    std::string cmd = "find " + shell_quote(p) + " -mindepth 1 -maxdepth 1 2>/dev/null | head -1";
    FILE *f = popen(cmd.c_str(), "r");
    if (!f) return true;
    char buf[16];
    bool empty = fgets(buf, sizeof buf, f) == nullptr;
    pclose(f);
    return empty;
}

void remove_dir_contents(const NodeConfig &c) {
    info("removing the contents of " + c.pgdata);
    if (run("find " + shell_quote(c.pgdata) + " -mindepth 1 -maxdepth 1 -exec rm -rf {} +") != 0 || !dir_empty(c.pgdata))
        die("could not empty " + c.pgdata);
}

// Crash recovery in single-user mode, so that pg_controldata's checkpoint is
// the end of the local WAL and pg_rewind accepts the directory (PostgreSQL
// refuses to rewind a target that was not shut down cleanly). Signal files go
// first: a standby cannot run in single-user mode; boot writes them again.
void ensure_clean_shutdown(const NodeConfig &c) {
    auto cd = controldata(c);
    const std::string state = cd["Database cluster state"];
    if (state == "shut down" || state == "shut down in recovery") return;
    info("the data directory was not shut down cleanly (state \"" + state + "\"): running crash recovery in single-user mode");
    for (const char *f : {"/standby.signal", "/recovery.signal"}) std::remove((c.pgdata + f).c_str());
    std::string out;
    int rc = run_capture(shell_quote(c.bindir + "/postgres") + " --single -F -D " + shell_quote(c.pgdata) +
                             " -c shared_preload_libraries= -c archive_mode=off template1 < /dev/null",
                         out);
    if (rc != 0) die("crash recovery in single-user mode failed (exit " + std::to_string(rc) + "); the data directory is kept");
}

int controldata_timeline(const std::map<std::string, std::string> &cd) {
    int tl = 0;
    for (const char *k : {"Latest checkpoint's TimeLineID", "Min recovery ending loc's timeline"}) {
        auto it = cd.find(k);
        if (it != cd.end()) tl = std::max(tl, std::atoi(it->second.c_str()));
    }
    return tl;
}

std::string find_after(const std::string &text, const std::string &key) {
    auto pos = text.find(key);
    if (pos == std::string::npos) return "";
    pos += key.size();
    auto end = text.find_first_of(" \n", pos);
    return text.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
}

// End of the valid local WAL on `tli`, read with pg_waldump from the last
// checkpoint's redo point without touching the data directory; 0 if unknown.
Lsn local_wal_end(const NodeConfig &c, const std::map<std::string, std::string> &cd, int tli) {
    auto redo = cd.find("Latest checkpoint's REDO location");
    if (redo == cd.end() || tli <= 0) return 0;
    std::string cmd = "LC_ALL=C " + shell_quote(c.bindir + "/pg_waldump") + " --path=" +
                      shell_quote(c.pgdata + "/pg_wal") + " --timeline=" + std::to_string(tli) + " --start=" +
                      shell_quote(redo->second) + " 2>&1";
    FILE *p = popen(cmd.c_str(), "r");
    if (!p) return 0;
    std::string out, last_record;
    char buf[1024];
    while (fgets(buf, sizeof buf, p)) {
        std::string line(buf);
        if (line.rfind("rmgr:", 0) == 0) last_record = line;
        else out += line;
    }
    pclose(p);
    // "error in WAL record at A: invalid record length at B: ..." -> B is where valid WAL ends.
    std::string end = find_after(out, "invalid record length at ");
    if (!end.empty() && end.back() == ':') end.pop_back();
    if (auto b = parse_lsn(end)) return *b;
    // Other endings ("invalid magic number", "unexpected pageaddr", ...): the
    // last record's start + its length, plus the page headers it spans.
    std::string lsn = find_after(last_record, "lsn: ");
    if (!lsn.empty() && lsn.back() == ',') lsn.pop_back();
    auto start = parse_lsn(lsn);
    auto lenpos = last_record.find("len (rec/tot):");
    if (!start || lenpos == std::string::npos) return 0;
    auto slash = last_record.find('/', lenpos + 14);
    if (slash == std::string::npos) return 0;
    std::uint64_t tot = std::strtoull(last_record.c_str() + slash + 1, nullptr, 10);
    const std::uint64_t page = 8192, seg = 16ull * 1024 * 1024;
    std::uint64_t pos = *start, left = tot;
    while (left > 0) {
        std::uint64_t room = page - pos % page;
        if (left <= room) {
            pos += left;
            left = 0;
        } else {
            left -= room;
            pos += room;
            pos += pos % seg == 0 ? 40 : 24;  // long header at a segment start, short otherwise
        }
    }
    return (pos + 7) & ~static_cast<std::uint64_t>(7);
}

enum class Rejoin { Started, Reclone };

// Existing data directory. Another member leads: make this node its standby,
// rewinding first when this node was a primary or is behind on an older
// timeline (it may have WAL the new leader never received).
Rejoin rejoin_existing(const NodeConfig &c, ZkSession &zk, ClusterStore &store) {
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
            zk_run_until(zk, [] { return false; }, 200);
            continue;
        }
        if (!v.leader || *v.leader == c.name) {
            info(v.leader ? "this node holds the leader lock: starting with the existing data"
                          : "no leader yet: starting with the existing data (the worker campaigns once it runs)");
            return Rejoin::Started;
        }
        const Member *leader = v.leader_member();
        const bool standby = file_exists(c.pgdata + "/standby.signal");
        auto cd = controldata(c);
        const int local_tl = controldata_timeline(cd);
        const bool was_primary = !standby;
        const bool older_timeline = leader && leader->timeline > 0 && local_tl > 0 && local_tl < leader->timeline;
        if (leader && !was_primary && !older_timeline) {
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
            zk_run_until(zk, [] { return false; }, 1000);
            continue;
        }
        // Stopped without a shutdown checkpoint right after handing over (fast
        // switchover): if the local WAL ends at or before the point where the
        // leader's timeline forked from ours, there is nothing to rewind.
        if (was_primary && cd["Database cluster state"] == "in production") {
            Lsn end = local_wal_end(c, cd, local_tl);
            Lsn fork = 0;
            for (const auto &h : v.history)
                if (h.timeline == local_tl) fork = h.lsn;
            if (fork == 0 && leader->timeline > local_tl && ZkSession::steady_ms() < history_wait_until) {
                // The new leader records its switch point right after promoting.
                if (!said_history) info("waiting for " + leader->name + " to record its promotion in history");
                said_history = true;
                zk_run_until(zk, [] { return false; }, 200);
                continue;
            }
            if (end != 0 && fork != 0 && end <= fork) {
                info("local WAL ends at " + format_lsn(end) + ", at or before " + leader->name + "'s switch point " +
                     format_lsn(fork) + " on timeline " + std::to_string(local_tl) + ": no rewind needed");
                for (const char *f : {"/promote", "/recovery.signal"}) std::remove((c.pgdata + f).c_str());
                configure_follower(c, *leader, v.config.use_slots);
                return Rejoin::Started;
            }
            if (end != 0 && fork != 0)
                info("local WAL ends at " + format_lsn(end) + ", after the switch point " + format_lsn(fork) + ": rewinding");
        }
        info(std::string("this node ") + (was_primary ? "was a primary" : "is a standby on timeline " + std::to_string(local_tl)) +
             " and " + leader->name + " now leads on timeline " + std::to_string(leader->timeline) +
             ": checking for divergence with pg_rewind");
        ensure_clean_shutdown(c);
        cd = controldata(c);
        const std::string local_end = cd["Latest checkpoint location"];
        std::string host;
        int port = 0;
        if (!parse_conn_url(leader->conn_url, host, port)) die("leader " + leader->name + " has an unusable conn_url");
        const std::string user = c.rewind_user.empty() ? c.superuser : c.rewind_user;
        const std::string pw = c.rewind_user.empty() ? c.superuser_password : c.rewind_password;
        std::string source = "host=" + host + " port=" + std::to_string(port) + " user=" + user +
                             " dbname=postgres connect_timeout=10";
        std::string cmd = "PGPASSWORD=" + shell_quote(pw) + " " + shell_quote(c.bindir + "/pg_rewind") +
                          " --target-pgdata=" + shell_quote(c.pgdata) + " --source-server=" + shell_quote(source) +
                          " --no-ensure-shutdown" + (v.config.use_pg_rewind ? "" : " --dry-run");
        std::string out;
        int rc = run_capture(cmd, out);
        const bool none = out.find("no rewind required") != std::string::npos;
        const std::string diverged = find_after(out, "servers diverged at WAL location ");
        if (rc == 0 && !diverged.empty())
            info("diverged: the new leader's timeline forked at " + diverged + "; local WAL from " + diverged + " to " +
                 local_end + " (last checkpoint) was never replicated and " +
                 (v.config.use_pg_rewind ? "has been rewound (those transactions are gone)" : "would be discarded"));
        if (rc == 0 && (none || v.config.use_pg_rewind)) {
            if (none) info("no rewind required: the local WAL is part of " + leader->name + "'s history");
            for (const char *f : {"/pg_ha.zksession", "/promote", "/recovery.signal"}) std::remove((c.pgdata + f).c_str());
            write_managed_block(c);
            configure_follower(c, *leader, v.config.use_slots);
            return Rejoin::Started;
        }
        const std::string why = rc != 0 ? "pg_rewind failed (exit " + std::to_string(rc) + ")"
                                        : "the data directory diverged from " + leader->name + " and use_pg_rewind is off";
        if (v.config.remove_data_directory_on_rewind_failure) {
            info(why + "; remove_data_directory_on_rewind_failure is on: re-cloning from the leader");
            remove_dir_contents(c);
            return Rejoin::Reclone;
        }
        die(why + ". The data directory " + c.pgdata + " is kept and PostgreSQL is not started. To rejoin, either fix "
            "the cause and restart, or discard this copy: empty the data directory (it is then cloned from " +
            leader->name + ") or set remove_data_directory_on_rewind_failure: true in the dynamic configuration");
    }
}

int cmd_boot(const NodeConfig &c) {
    if (mkdir(c.pgdata.c_str(), 0700) != 0 && errno != EEXIST) die("cannot create " + c.pgdata + ": " + std::strerror(errno));
    chmod(c.pgdata.c_str(), 0700);
    ZkSession zk;
    connect_zk(zk, c, c.timeout_s * 1000);
    ClusterStore store(zk, c.ns, c.scope);
    int rc = zk_sync(zk, [&](ClusterStore::DoneCb cb) { store.ensure_base(cb); });
    if (rc != ZOK) die("cannot create the cluster's znodes under " + store.base() + ": " + ZkSession::error_text(rc));

    if (file_exists(c.pgdata + "/pg_ha.reinitialize")) {
        // ha_reinitialize() / POST /reinitialize: a fresh copy from the leader.
        info("reinitialize requested: discarding this data directory and cloning from the leader");
        remove_dir_contents(c);
    }
    const bool has_data = file_exists(c.pgdata + "/PG_VERSION");
    if (has_data) {
        write_managed_block(c);
        switch (rejoin_existing(c, zk, store)) {
            case Rejoin::Started: return 0;
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
                // If bootstrap fails, give the race back (as Patroni does) so that
                // this or another node can try again, and leave an empty directory.
                g_on_die = [&] {
                    std::cerr << "pg_hactl: bootstrap failed: removing the initialize key and the partial data directory" << std::endl;
                    zk_sync(zk, [&](ClusterStore::DoneCb cb) { store.remove("initialize", -1, cb); });
                    run("find " + shell_quote(c.pgdata) + " -mindepth 1 -maxdepth 1 -exec rm -rf {} +");
                };
                bootstrap_new_cluster(c);
                std::string sysid = system_identifier(c);
                rc = zk_sync(zk, [&](ClusterStore::DoneCb cb) { store.set_versioned("initialize", sysid, -1, cb); });
                if (rc != ZOK) die("cannot record the system identifier in ZooKeeper: " + ZkSession::error_text(rc));
                g_on_die = nullptr;
                info("new cluster " + c.scope + " initialized, system identifier " + sysid);
                return 0;
            }
            if (rc != ZNODEEXISTS) info("initialize race: " + ZkSession::error_text(rc));
        } else if (const Member *leader = v.leader_member();
                   leader && leader->state == "running" && leader->role == "primary") {
            if (clone_from(c, *leader, v.config.use_slots)) return 0;
            if (!dir_empty(c.pgdata)) die("pg_basebackup failed and left files in " + c.pgdata);
        } else if (!waited_msg) {
            info("waiting for a running leader to clone from");
            waited_msg = true;
        }
        zk_run_until(zk, [] { return false; }, 1000);
    }
    die("gave up after " + std::to_string(c.timeout_s) + " s: no leader to clone from");
}

// `list` and the other operator commands live in cli/commands.cpp.

void usage() {
    std::cerr << "usage: pg_hactl COMMAND [options]   (pg_hactl COMMAND --help for details)\n"
                 "  boot         --config FILE --pgdata DIR [--timeout SECONDS]\n"
                 "  list         [--format table|json]\n"
                 "  switchover   [--leader L] [--candidate X] [--scheduled ISO8601|now] [--force]\n"
                 "  failover     --candidate X [--force]\n"
                 "  pause        [--wait [SECONDS]]\n"
                 "  resume       [--wait [SECONDS]]\n"
                 "  history      [--format table|json]\n"
                 "  show-config  [--format yaml|json]\n"
                 "  edit-config  (--set KEY=VALUE ... | --file FILE | --file -) [--replace] [--force]\n"
                 "  restart      MEMBER [--force]\n"
                 "  reinit       MEMBER [--force]\n"
                 "Every command reads the settings file given by --config FILE (or $PGHA_CONFIG_FILE):\n"
                 "pg_ha.scope, pg_ha.namespace, pg_ha.zookeeper_hosts, and for the REST API\n"
                 "pg_ha.restapi_username/pg_ha.restapi_password and pg_ha.restapi_cafile.\n"
                 "Exit codes: 0 ok, 1 failed or refused, 2 usage error, 3 ZooKeeper or REST API unreachable.\n";
}

}  // namespace
}  // namespace pgha

int main(int argc, char **argv) {
    using namespace pgha;
    namespace cli = pgha::cli;
    if (argc < 2) {
        usage();
        return cli::kExitUsage;
    }

    CLI::App app{"pg_hactl: pg_ha bootstrap and operator commands"};
    app.fallthrough();  // global options (--config) also after the command
    app.require_subcommand(1);
    std::string config, format;
    app.add_option("-c,--config", config, "settings file (default: $PGHA_CONFIG_FILE)");

    std::string pgdata;
    int timeout = 300;
    auto *boot = app.add_subcommand("boot", "prepare the data directory before postgres starts");
    boot->add_option("-D,--pgdata", pgdata, "data directory (default: $PGDATA)");
    boot->add_option("--timeout", timeout, "seconds to wait for ZooKeeper / a leader");

    auto *list = app.add_subcommand("list", "members, roles, states and lag");
    list->add_option("--format", format, "table or json");

    cli::SwitchoverOptions sw;
    auto *switchover = app.add_subcommand("switchover", "hand the leader role to another member");
    switchover->add_option("--leader,--master", sw.leader, "the current leader (checked)");
    switchover->add_option("--candidate", sw.candidate, "the new leader (default: the leader picks)");
    switchover->add_option("--scheduled", sw.scheduled, "ISO 8601 time with a zone, or now");
    switchover->add_flag("--force", sw.force, "do not ask for confirmation");

    cli::SwitchoverOptions fo;
    fo.failover = true;
    auto *failover = app.add_subcommand("failover", "make a member the leader (also without a healthy leader)");
    failover->add_option("--candidate", fo.candidate, "the new leader")->required();
    failover->add_option("--leader,--master", fo.leader, "the current leader (checked)");
    failover->add_flag("--force", fo.force, "do not ask for confirmation");

    int wait_s = 0;
    auto *pause = app.add_subcommand("pause", "maintenance mode: no automatic failover");
    auto *resume = app.add_subcommand("resume", "leave maintenance mode");
    for (auto *sub : {pause, resume})
        sub->add_option("--wait", wait_s, "wait until every member reports it (seconds, default 60)")
            ->expected(0, 1)
            ->default_str("60");

    auto *history = app.add_subcommand("history", "timeline history (switchovers and failovers)");
    history->add_option("--format", format, "table or json");

    auto *show_config = app.add_subcommand("show-config", "the dynamic configuration (config znode)");
    show_config->add_option("--format", format, "yaml or json");

    cli::EditConfigOptions ec;
    auto *edit_config = app.add_subcommand("edit-config", "change the dynamic configuration (validated)");
    edit_config->add_option("-s,--set", ec.set, "KEY=VALUE (dotted keys for nested settings; null removes)");
    edit_config->add_option("--file,--apply", ec.file, "JSON merge patch from FILE, - for standard input");
    edit_config->add_flag("--replace", ec.replace, "the file replaces the whole configuration");
    edit_config->add_flag("--force", ec.force, "do not ask for confirmation");

    std::string member;
    bool member_force = false;
    auto *restart = app.add_subcommand("restart", "restart a member's PostgreSQL (via its REST API)");
    auto *reinit = app.add_subcommand("reinit", "re-clone a replica from the leader (via its REST API)");
    for (auto *sub : {restart, reinit}) {
        sub->add_option("member", member, "member name")->required();
        sub->add_flag("--force", member_force, "do not ask for confirmation");
    }

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp &e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp &e) {
        return app.exit(e);
    } catch (const CLI::ParseError &e) {
        std::cerr << "pg_hactl: " << e.what() << " (see pg_hactl --help)" << std::endl;
        return cli::kExitUsage;
    }
    // --wait given without a number: the default.
    for (auto *sub : {pause, resume})
        if (sub->parsed() && sub->count("--wait") > 0 && wait_s <= 0) wait_s = 60;

    if (config.empty() && std::getenv("PGHA_CONFIG_FILE")) config = std::getenv("PGHA_CONFIG_FILE");
    if (config.empty()) {
        std::cerr << "pg_hactl: --config is required (or set PGHA_CONFIG_FILE)" << std::endl;
        return cli::kExitUsage;
    }
    try {
        if (boot->parsed()) {
            NodeConfig c = load_config(config);
            c.timeout_s = timeout > 0 ? timeout : 300;
            if (pgdata.empty() && std::getenv("PGDATA")) pgdata = std::getenv("PGDATA");
            if (pgdata.empty()) {
                std::cerr << "pg_hactl: boot needs --pgdata" << std::endl;
                return cli::kExitUsage;
            }
            c.pgdata = pgdata;
            return cmd_boot(c);
        }
        const cli::OperatorSettings s = cli::load_operator_settings(config);
        if (list->parsed()) return cli::cmd_list(s, format.empty() ? "table" : format);
        if (switchover->parsed()) return cli::cmd_switchover(s, sw);
        if (failover->parsed()) return cli::cmd_switchover(s, fo);
        if (pause->parsed()) return cli::cmd_pause(s, true, wait_s);
        if (resume->parsed()) return cli::cmd_pause(s, false, wait_s);
        if (history->parsed()) return cli::cmd_history(s, format.empty() ? "table" : format);
        if (show_config->parsed()) return cli::cmd_show_config(s, format.empty() ? "yaml" : format);
        if (edit_config->parsed()) return cli::cmd_edit_config(s, ec);
        if (restart->parsed()) return cli::cmd_member_action(s, "restart", member, member_force);
        if (reinit->parsed()) return cli::cmd_member_action(s, "reinitialize", member, member_force);
    } catch (const cli::CommandError &e) {
        std::cerr << "pg_hactl: " << e.what() << std::endl;
        return e.code;
    } catch (const std::exception &e) {
        std::cerr << "pg_hactl: " << e.what() << std::endl;
        return cli::kExitFailed;
    }
    usage();
    return cli::kExitUsage;
}
