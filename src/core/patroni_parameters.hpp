// Patroni's rules for PostgreSQL parameters, shared by pg_hactl's reading of
// a Patroni YAML file (cli/patroni_config) and the engine applying the
// `config` key's postgresql.parameters on every member. Pure: no I/O.
#pragma once
#include "core/no_postgres.hpp"

#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace pgha {

// Parameters Patroni takes from the dynamic configuration only (a local
// postgresql.parameters entry for them is ignored): max_connections,
// max_wal_senders, wal_level, ...
bool is_cluster_only_parameter(const std::string &name);

// Parameters whose value is a shell command PostgreSQL runs (archive_command,
// restore_command, ...). From ZooKeeper they are applied only where the local
// configuration allows it (pg_ha.dcs_shell_parameters): anyone who can write
// the `config` znode could otherwise run commands on every member.
bool is_shell_parameter(const std::string &name);

// A JSON/YAML scalar as PostgreSQL's text: booleans on/off, numbers as
// written, strings unchanged. False for objects, arrays and null.
bool parameter_text(const nlohmann::json &v, std::string &out);

// What a member applies of the `config` key's postgresql.parameters.
struct ClusterParameters {
    std::vector<std::pair<std::string, std::string>> apply;  // sorted by name
    std::vector<std::string> skipped;                        // "name: why" (log lines)
};

// `config`: the config znode's JSON. `local_names`: parameters the node's
// local configuration sets (they win, as in Patroni; lower case).
// `allow_shell`: pg_ha.dcs_shell_parameters. `server_version_num`: e.g.
// 150004 (wal_keep_segments becomes wal_keep_size from 13 on, 16 MB a
// segment, as Patroni does). Names that are not PostgreSQL identifiers are
// skipped.
ClusterParameters cluster_parameters(const nlohmann::json &config, const std::set<std::string> &local_names,
                                     bool allow_shell, int server_version_num);

// Parameters a hot standby must run with at least the primary's values
// (PostgreSQL refuses to replay otherwise), as GUC name and the key
// pg_controldata prints the primary's value under, e.g. {"max_connections",
// "max_connections setting"}.
struct StandbyMinimum {
    const char *guc;
    const char *controldata_key;
};
const std::vector<StandbyMinimum> &standby_minimum_parameters();

// What a standby starts with instead of its configured values (Patroni does
// the same from pg_controldata): for each parameter above whose configured
// value (`configured`: GUC -> the server's effective text, e.g. from
// `postgres -C`) is below the value in the control file (the primary's, as
// last replayed), the control file's value. Unparsable values are left alone.
std::vector<std::pair<std::string, std::string>> raise_to_primary_values(
    const std::map<std::string, std::string> &configured, const std::map<std::string, std::string> &controldata);

// The config key's postgresql.pg_hba (Patroni: the whole pg_hba.conf, a
// list of lines). True with `lines` when `v` is a list of strings each of
// which is a comment or a record of a type PostgreSQL knows (local, host,
// hostssl, hostnossl, hostgssenc, hostnogssenc) on one line; `include*`
// directives are refused (they would read any file the server can), and so
// is an empty list (no connection could log in). False with `why` otherwise.
// PostgreSQL itself checks the rest when the member applies the lines.
bool parse_pg_hba_lines(const nlohmann::json &v, std::vector<std::string> &lines, std::string &why);

}  // namespace pgha
