// pg_hactl's data-directory tools. See pgdata.hpp.
#include "cli/pgdata.hpp"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "cli/commands.hpp"

namespace pgha::cli {

namespace fs = std::filesystem;

void info(const std::string &msg) { std::cerr << "pg_hactl: " << msg << std::endl; }

std::string shell_quote(const std::string &s) {
    std::string out = "'";
    for (char c : s) {
        if (c == '\'') out += "'\\''";
        else out += c;
    }
    return out + "'";
}

// PostgreSQL's configuration files unescape backslashes inside quoted
// values (as ALTER SYSTEM writes them), so both ' and \ are doubled.
std::string conf_quote(const std::string &s) { return pgha::conf_quote(s); }

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

void write_file(const std::string &p, const std::string &content, unsigned mode) {
    const std::string tmp = p + ".pg_ha.tmp";
    {
        std::ofstream f(tmp, std::ios::trunc);
        if (!f) fail(kExitFailed, "cannot write " + tmp + ": " + std::strerror(errno));
        f << content;
        f.flush();
        if (!f) fail(kExitFailed, "cannot write " + tmp);
    }
    chmod(tmp.c_str(), static_cast<mode_t>(mode));
    if (std::rename(tmp.c_str(), p.c_str()) != 0)
        fail(kExitFailed, "cannot rename " + tmp + ": " + std::strerror(errno));
}

bool dir_empty(const std::string &p) {
    std::error_code ec;
    fs::directory_iterator it(p, ec);
    return ec || it == fs::directory_iterator();
}

void remove_dir_contents(const std::string &p) {
    info("removing the contents of " + p);
    std::error_code ec;
    for (fs::directory_iterator it(p, ec), end; !ec && it != end; it.increment(ec)) {
        std::error_code rm;
        fs::remove_all(it->path(), rm);
        if (rm) fail(kExitFailed, "could not remove " + it->path().string() + ": " + rm.message());
    }
    if (ec) fail(kExitFailed, "could not empty " + p + ": " + ec.message());
    if (!dir_empty(p)) fail(kExitFailed, "could not empty " + p);
}

int run(const std::string &cmd) {
    info("running: " + cmd.substr(0, cmd.find(" <")));
    int rc = std::system(cmd.c_str());
    if (rc == -1) return 127;
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

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

namespace {

// First line of a command's standard output ("" when it fails).
std::string first_output_line(const std::string &cmd) {
    FILE *p = popen((cmd + " 2>/dev/null").c_str(), "r");
    if (!p) return "";
    char buf[4096];
    std::string line;
    if (fgets(buf, sizeof buf, p)) line = buf;
    const int rc = pclose(p);
    if (rc == -1 || !WIFEXITED(rc) || WEXITSTATUS(rc) != 0) return "";
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r' || line.back() == ' ')) line.pop_back();
    return line;
}

}  // namespace

std::string find_bindir(const std::string &pgdata) {
    std::vector<std::string> tried;
    auto has_postgres = [&](const std::string &dir, const std::string &how) {
        tried.push_back(dir.empty() ? how + ": no answer" : dir + " (" + how + ")");
        return !dir.empty() && file_exists(dir + "/postgres");
    };
    char buf[4096];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n > 0) {
        buf[n] = 0;
        std::string dir(buf);
        dir = dir.substr(0, dir.rfind('/'));
        if (has_postgres(dir, "next to pg_hactl")) return dir;
    }
    if (const char *e = std::getenv("PGBIN"); e && *e) {
        if (has_postgres(e, "$PGBIN")) return e;
    }
    if (!pgdata.empty() && file_exists(pgdata + "/PG_VERSION")) {
        std::string major = read_file(pgdata + "/PG_VERSION");
        while (!major.empty() && (major.back() == '\n' || major.back() == ' ')) major.pop_back();
        const std::string dir = "/usr/lib/postgresql/" + major + "/bin";
        if (!major.empty() && major.find('/') == std::string::npos && has_postgres(dir, pgdata + "/PG_VERSION"))
            return dir;
    }
    const std::string dir = first_output_line("pg_config --bindir");
    if (has_postgres(dir, "pg_config --bindir")) return dir;
    std::string list;
    for (const auto &t : tried) list += (list.empty() ? "" : ", ") + t;
    fail(kExitFailed, "cannot find PostgreSQL's programs (no postgres binary in: " +
                          (list.empty() ? std::string("nothing to try") : list) +
                          "); set PGBIN to the directory that holds postgres, initdb and pg_rewind");
}

std::map<std::string, std::string> controldata(const PgData &pg) {
    std::map<std::string, std::string> out;
    const std::string cmd = "LC_ALL=C " + shell_quote(pg.program("pg_controldata")) + " " + shell_quote(pg.dir) + " 2>/dev/null";
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

std::string system_identifier(const PgData &pg) {
    auto cd = controldata(pg);
    auto it = cd.find("Database system identifier");
    return it == cd.end() ? "" : it->second;
}

int controldata_timeline(const std::map<std::string, std::string> &cd) {
    int tl = 0;
    for (const char *k : {"Latest checkpoint's TimeLineID", "Min recovery ending loc's timeline"}) {
        auto it = cd.find(k);
        if (it != cd.end()) tl = std::max(tl, std::atoi(it->second.c_str()));
    }
    return tl;
}

namespace {

std::string find_after(const std::string &text, const std::string &key) {
    auto pos = text.find(key);
    if (pos == std::string::npos) return "";
    pos += key.size();
    auto end = text.find_first_of(" \n", pos);
    return text.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
}

}  // namespace

Lsn local_wal_end(const PgData &pg, const std::map<std::string, std::string> &cd, int tli) {
    auto redo = cd.find("Latest checkpoint's REDO location");
    if (redo == cd.end() || tli <= 0) return 0;
    const std::string cmd = "LC_ALL=C " + shell_quote(pg.program("pg_waldump")) + " --path=" +
                            shell_quote(pg.dir + "/pg_wal") + " --timeline=" + std::to_string(tli) + " --start=" +
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

// Crash recovery in single-user mode, so that pg_controldata's checkpoint is
// the end of the local WAL and pg_rewind accepts the directory (PostgreSQL
// refuses to rewind a target that was not shut down cleanly). Only for a
// primary's directory: crash recovery of a standby's ("in archive recovery")
// would end its recovery on the old timeline, without the archive or the
// leader for WAL its pg_wal lacks (boot starts such a standby as a standby,
// rejoin_path). Signal files are set aside while it runs (a standby cannot
// run in single-user mode) and put back if it fails, so that a failure leaves
// the directory as it found it.
void ensure_clean_shutdown(const PgData &pg) {
    auto cd = controldata(pg);
    const std::string state = cd["Database cluster state"];
    if (state == "shut down" || state == "shut down in recovery") return;
    if (state == "in archive recovery")
        fail(kExitFailed, "the data directory is a standby's that did not shut down cleanly (state \"" + state +
                              "\"): crash recovery in single-user mode would end its recovery; the data directory is kept");
    info("the data directory was not shut down cleanly (state \"" + state + "\"): running crash recovery in single-user mode");
    std::vector<std::string> set_aside;
    for (const char *f : {"/standby.signal", "/recovery.signal"})
        if (std::remove((pg.dir + f).c_str()) == 0) set_aside.push_back(pg.dir + f);
    std::string out;
    int rc = run_capture(shell_quote(pg.program("postgres")) + " --single -F -D " + shell_quote(pg.dir) +
                             " -c shared_preload_libraries= -c archive_mode=off template1 < /dev/null",
                         out);
    if (rc != 0) {
        for (const auto &f : set_aside) write_file(f, "");
        fail(kExitFailed, "crash recovery in single-user mode failed (exit " + std::to_string(rc) + "); the data directory is kept");
    }
}

// A standby's directory that did not shut down cleanly, made acceptable to
// pg_rewind ("shut down in recovery") the way PostgreSQL itself treats it: a
// start in standby mode on its own timeline (local WAL, and the archive if
// restore_command is set; no primary, no network, no pg_ha worker, hot
// standby off so that pg_ctl sees it ready once recovery started) and a fast
// stop, whose restartpoint marks the control file. Unlike crash recovery in
// single-user mode it never ends recovery, so it writes no WAL of its own.
void ensure_clean_standby_shutdown(const PgData &pg) {
    const std::string state = controldata(pg)["Database cluster state"];
    if (state == "shut down" || state == "shut down in recovery") return;
    info("the standby's data directory was not shut down cleanly (state \"" + state +
         "\"): starting it in standby mode on its own timeline, then stopping it cleanly");
    if (!file_exists(pg.dir + "/standby.signal")) write_file(pg.dir + "/standby.signal", "");
    const std::string ctl = shell_quote(pg.program("pg_ctl")) + " -D " + shell_quote(pg.dir);
    const int started = run(ctl + " start -w -t 120 -o " +
                            shell_quote("-c hot_standby=off -c primary_conninfo= -c primary_slot_name= "
                                        "-c recovery_target_timeline=current -c listen_addresses= "
                                        "-c shared_preload_libraries= -c archive_mode=off"));
    const int stopped = run(ctl + " stop -m fast -w -t 120");
    const std::string after = controldata(pg)["Database cluster state"];
    if (after != "shut down in recovery" && after != "shut down")
        fail(kExitFailed, "could not stop the standby's data directory cleanly (pg_ctl start exit " +
                              std::to_string(started) + ", stop exit " + std::to_string(stopped) + ", state \"" +
                              after + "\"); the data directory is kept");
}

void initdb(const PgData &pg, const std::string &superuser, const std::string &password) {
    const std::string pwfile = pg.dir + ".pwfile";
    write_file(pwfile, password.empty() ? "postgres\n" : password + "\n");
    const std::string cmd = shell_quote(pg.program("initdb")) + " -D " + shell_quote(pg.dir) + " -U " +
                            shell_quote(superuser) + " --pwfile=" + shell_quote(pwfile) +
                            " --encoding=UTF8 --locale=C.UTF-8 --data-checksums --auth-local=peer --auth-host=scram-sha-256";
    const int rc = run(cmd);
    std::remove(pwfile.c_str());
    if (rc != 0) fail(kExitFailed, "initdb failed (exit " + std::to_string(rc) + ")");
}

void initdb_with_options(const PgData &pg, const std::string &superuser, const std::string &password,
                         const std::vector<std::string> &options, bool add_auth) {
    const std::string pwfile = pg.dir + ".pwfile";
    write_file(pwfile, password.empty() ? "postgres\n" : password + "\n");
    std::string cmd = shell_quote(pg.program("initdb")) + " -D " + shell_quote(pg.dir) + " -U " + shell_quote(superuser) +
                      " --pwfile=" + shell_quote(pwfile);
    for (const auto &o : options) cmd += " " + shell_quote(o);
    if (add_auth) cmd += " --auth-local=peer --auth-host=md5";
    const int rc = run(cmd);
    std::remove(pwfile.c_str());
    if (rc != 0) fail(kExitFailed, "initdb failed (exit " + std::to_string(rc) + ")");
}

void run_single_user_sql(const PgData &pg, const std::string &sql) {
    const std::string sqlfile = pg.dir + "/pg_ha_bootstrap.sql";
    const std::string logfile = pg.dir + "/pg_ha_bootstrap.log";
    write_file(sqlfile, sql);
    const int rc = run(shell_quote(pg.program("postgres")) + " --single -D " + shell_quote(pg.dir) +
                       " -c shared_preload_libraries= -c config_file=" + shell_quote(pg.dir + "/postgresql.conf") +
                       " postgres < " + shell_quote(sqlfile) + " > " + shell_quote(logfile) + " 2>&1");
    const std::string log = read_file(logfile);
    std::remove(sqlfile.c_str());
    if (rc != 0 || log.find("ERROR") != std::string::npos) fail(kExitFailed, "creating roles failed:\n" + log);
    std::remove(logfile.c_str());
}

namespace {
// PGPASSWORD for the programs run while this lives: in the environment, not
// on the command line (ps and the boot log show the command line).
class PasswordEnv {
  public:
    explicit PasswordEnv(const std::string &password) { setenv("PGPASSWORD", password.c_str(), 1); }
    ~PasswordEnv() { unsetenv("PGPASSWORD"); }
    PasswordEnv(const PasswordEnv &) = delete;
    PasswordEnv &operator=(const PasswordEnv &) = delete;
};
}  // namespace

int pg_basebackup(const PgData &pg, const std::string &source_conninfo, const std::string &password,
                  const std::string &slot) {
    PasswordEnv env(password);
    const std::string base = shell_quote(pg.program("pg_basebackup")) +
                             " -D " + shell_quote(pg.dir) + " -d " + shell_quote(source_conninfo) +
                             " -X stream -c fast --no-password";
    if (slot.empty()) return run(base);
    int rc = run(base + " -C -S " + shell_quote(slot));
    if (rc != 0) rc = run(base + " -S " + shell_quote(slot));  // the slot exists already
    return rc;
}

std::string server_setting(const PgData &pg, const std::string &name) {
    return first_output_line(shell_quote(pg.program("postgres")) + " -D " + shell_quote(pg.dir) + " -C " +
                             shell_quote(name));
}

bool restore_command_set(const PgData &pg) {
    // The value itself is not logged: it may carry an archive's credentials.
    return !first_output_line(shell_quote(pg.program("postgres")) + " -D " + shell_quote(pg.dir) +
                              " -C restore_command").empty();
}

RewindResult pg_rewind(const PgData &pg, const std::string &source_conninfo, const std::string &password, bool dry_run) {
    RewindResult r;
    // As Patroni: with a restore_command, WAL the rewind needs that is no
    // longer in the target's pg_wal is fetched from the archive.
    const bool from_archive = restore_command_set(pg);
    if (from_archive) info("restore_command is set: pg_rewind fetches missing WAL from the archive (--restore-target-wal)");
    PasswordEnv env(password);
    const std::string cmd = shell_quote(pg.program("pg_rewind")) +
                            " --target-pgdata=" + shell_quote(pg.dir) + " --source-server=" +
                            shell_quote(source_conninfo) + " --no-ensure-shutdown" +
                            (from_archive ? " --restore-target-wal" : "") + (dry_run ? " --dry-run" : "");
    r.exit_code = run_capture(cmd, r.output);
    r.no_rewind_required = r.output.find("no rewind required") != std::string::npos;
    r.diverged_at = find_after(r.output, "servers diverged at WAL location ");
    return r;
}

std::string rewind_outcome_text(const RewindResult &r, const std::string &leader, const std::string &local_end,
                                bool applied) {
    if (r.exit_code != 0) return "";
    if (r.no_rewind_required)
        return "no rewind required: the local WAL" +
               (local_end.empty() ? std::string() : " (last checkpoint " + local_end + ")") + " is part of " + leader +
               "'s history" +
               (r.diverged_at.empty() ? std::string() : "; the timelines fork at " + r.diverged_at + ", after it");
    if (r.diverged_at.empty()) return "";
    const auto fork = parse_lsn(r.diverged_at);
    const auto end = parse_lsn(local_end);
    const std::string range = fork && end && *end > *fork
                                  ? "local WAL from " + r.diverged_at + " to " + local_end + " (last checkpoint)"
                                  : "local WAL after " + r.diverged_at;
    return "diverged: " + leader + "'s timeline forked at " + r.diverged_at + "; the " + range +
           " was never replicated and " + (applied ? "has been rewound (those transactions are gone)" : "would be discarded");
}

void write_managed_block(const PgData &pg, const std::string &settings_file) {
    const std::string path = pg.dir + "/postgresql.conf";
    std::string text = read_file(path);
    const std::string begin = "# BEGIN pg_ha (managed by pg_hactl boot; edits here are overwritten)\n";
    const std::string end = "# END pg_ha\n";
    auto b = text.find(begin);
    if (b != std::string::npos) {
        auto e = text.find(end, b);
        text.erase(b, e == std::string::npos ? std::string::npos : e + end.size() - b);
    }
    char abs[4096];
    std::string cfg = settings_file;
    if (realpath(settings_file.c_str(), abs)) cfg = abs;
    std::string block = begin;
    block += "shared_preload_libraries = 'pg_ha'\n";
    block += "wal_level = replica\nhot_standby = on\nmax_wal_senders = 10\nmax_replication_slots = 10\n";
    block += "wal_log_hints = on\nwal_keep_size = '128MB'\nhot_standby_feedback = on\n";
    block += "include " + conf_quote(cfg) + "\n";
    block += std::string(kServerConfInclude) + "\n";  // last: pg_ha's own parameters
    block += end;
    if (!text.empty() && text.back() != '\n') text += '\n';
    write_file(path, text + block);
    move_auto_conf_keys(pg);
}

void set_server_conf(const PgData &pg, const std::vector<std::pair<std::string, std::string>> &kv) {
    std::string error;
    if (!update_server_conf(pg.dir, kv, error)) fail(kExitFailed, error);
}

void move_auto_conf_keys(const PgData &pg) {
    const std::string auto_conf = pg.dir + "/postgresql.auto.conf";
    std::string text;
    if (!read_text_file(auto_conf, text)) return;
    std::vector<std::string> names(std::begin(kServerConfKeys), std::end(kServerConfKeys));
    std::string ours;
    if (read_text_file(pg.dir + "/" + kServerConfFile, ours))
        for (const auto &kv : parse_conf(ours))
            if (std::find(names.begin(), names.end(), kv.first) == names.end()) names.push_back(kv.first);
    ConfParams moved;
    const std::string rest = strip_conf_keys(text, names, moved);
    if (moved.empty()) return;
    // postgresql.auto.conf was read last, so its values were the ones in effect.
    set_server_conf(pg, moved);
    write_file(auto_conf, rest);
    std::string list;
    for (const auto &kv : moved) list += (list.empty() ? "" : ", ") + kv.first;
    info("moved " + list + " from postgresql.auto.conf to " + kServerConfFile);
}

}  // namespace pgha::cli
