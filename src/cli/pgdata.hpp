// pg_hactl's data-directory tools: the PostgreSQL programs boot runs
// (initdb, postgres --single, pg_basebackup, pg_rewind, pg_controldata,
// pg_waldump) and the files it writes (the managed block in postgresql.conf,
// postgresql.auto.conf, standby.signal). Errors throw cli::CommandError.
#pragma once
#include "core/no_postgres.hpp"

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/lsn.hpp"

#include "core/server_conf.hpp"
#include "core/sql_literal.hpp"

namespace pgha::cli {

// "pg_hactl: <msg>" on stderr: boot's progress log.
void info(const std::string &msg);

std::string shell_quote(const std::string &s);  // for /bin/sh: 'it'\''s'
std::string conf_quote(const std::string &s);   // postgresql.conf value: 'it''s a \\ backslash'
std::string sql_ident(const std::string &s);    // "name"

bool file_exists(const std::string &path);
std::string read_file(const std::string &path);  // "" when unreadable
// Atomically (temporary file + rename) with `mode`; throws on failure.
void write_file(const std::string &path, const std::string &content, unsigned mode = 0600);
bool dir_empty(const std::string &path);  // also true when it does not exist
// Removes everything inside `path` (not `path` itself); throws when it cannot.
void remove_dir_contents(const std::string &path);

// Runs a shell command (stdin/stdout as the caller's); returns its exit code
// (127 when it could not run, 128 when killed by a signal).
int run(const std::string &cmd);
// The same, capturing stdout and stderr (each line is also logged).
int run_capture(const std::string &cmd, std::string &output);

// Where PostgreSQL's programs are, in this order: next to pg_hactl itself,
// $PGBIN, /usr/lib/postgresql/<major>/bin for the major version in
// <pgdata>/PG_VERSION, `pg_config --bindir`. Throws a CommandError naming
// what was tried when none has a `postgres` binary.
std::string find_bindir(const std::string &pgdata);

// A data directory and the programs that go with it.
struct PgData {
    std::string dir;
    std::string bindir;
    std::string program(const std::string &name) const { return bindir + "/" + name; }
};

// pg_controldata's "Key: value" lines (empty when it fails).
std::map<std::string, std::string> controldata(const PgData &pg);
std::string system_identifier(const PgData &pg);
// The newest timeline pg_controldata knows (checkpoint, min recovery point).
int controldata_timeline(const std::map<std::string, std::string> &cd);

// End of the valid local WAL on `tli`, read with pg_waldump from the last
// checkpoint's redo point without touching the data directory; 0 if unknown.
Lsn local_wal_end(const PgData &pg, const std::map<std::string, std::string> &cd, int tli);

// Crash recovery in single-user mode when the directory was not shut down
// cleanly, so that pg_rewind accepts it. Throws when recovery fails.
void ensure_clean_shutdown(const PgData &pg);
// The same for a standby's directory ("in archive recovery"): a start in
// standby mode on its own timeline and a fast stop. Throws when it fails.
void ensure_clean_standby_shutdown(const PgData &pg);

// initdb with pg_ha's options (UTF8, C.UTF-8, checksums, peer/scram-sha-256). Throws.
void initdb(const PgData &pg, const std::string &superuser, const std::string &password);
// initdb with the user's options (Patroni's bootstrap.initdb, "--name[=value]"),
// plus peer/md5 authentication unless `add_auth` is false.
void initdb_with_options(const PgData &pg, const std::string &superuser, const std::string &password,
                         const std::vector<std::string> &options, bool add_auth);
// Runs `sql` in single-user mode (no network, no pg_ha worker). Throws with
// the server's output when it fails or reports an ERROR.
void run_single_user_sql(const PgData &pg, const std::string &sql);

// pg_basebackup from `source_conninfo` (core/conninfo; the password goes in
// PGPASSWORD, not on the command line), streaming WAL; with `slot` it uses
// (and first tries to create) that replication slot. Returns the exit code.
int pg_basebackup(const PgData &pg, const std::string &source_conninfo, const std::string &password,
                  const std::string &slot);

struct RewindResult {
    int exit_code = 0;
    bool no_rewind_required = false;  // pg_rewind: "no rewind required"
    std::string diverged_at;          // "servers diverged at WAL location X" ("" when not said)
    std::string output;
};
// Whether the data directory's configuration sets restore_command
// (postgres -C; false when that fails).
bool restore_command_set(const PgData &pg);
// The value the server would start with (`postgres -C NAME`); "" when unknown.
// Not for secrets: callers may log it.
std::string server_setting(const PgData &pg, const std::string &name);

// pg_rewind --source-server (a conninfo without the password, which goes in
// PGPASSWORD); dry_run: only find out. With --restore-target-wal when
// restore_command_set().
RewindResult pg_rewind(const PgData &pg, const std::string &source_conninfo, const std::string &password, bool dry_run);

// One log line saying what pg_rewind did ("" when there is nothing to say):
// "no rewind required: ..." when it said so (it also reports where the
// timelines fork, which is then after the local WAL), else the discarded WAL
// range from the fork to the last checkpoint `local_end` (only when that
// range is not empty), "has been rewound" when `applied`, "would be
// discarded" for a dry run.
std::string rewind_outcome_text(const RewindResult &r, const std::string &leader, const std::string &local_end,
                                bool applied);

// The pg_ha block in postgresql.conf (between its markers; the rest of the
// file is the user's): shared_preload_libraries, replication settings and an
// include of the node's settings file, then of pg_ha.auto.conf (core/server_conf;
// idempotent: the block is replaced on every boot). Then move_auto_conf_keys.
void write_managed_block(const PgData &pg, const std::string &settings_file);
// pg_ha.auto.conf (core/server_conf): replace or add `key = 'value'` lines. Throws.
void set_server_conf(const PgData &pg, const std::vector<std::pair<std::string, std::string>> &kv);
// Moves the keys pg_ha owns (kServerConfKeys and whatever pg_ha.auto.conf sets)
// out of postgresql.auto.conf, which would override pg_ha.auto.conf, into
// pg_ha.auto.conf (their values were the ones in effect). Throws.
void move_auto_conf_keys(const PgData &pg);

}  // namespace pgha::cli
