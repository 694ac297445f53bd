// The server parameters pg_ha persists (primary_conninfo, primary_slot_name,
// synchronous_standby_names, ...) live in a file pg_ha owns in the data
// directory, kServerConfFile, included at the end of postgresql.conf (pg_hactl
// boot writes the include line). Not ALTER SYSTEM: PostgreSQL 17 can forbid
// it (allow_alter_system = off). postgresql.auto.conf is read after every
// included file, so a key pg_ha owns must not be set there: pg_hactl boot
// moves such lines into kServerConfFile (older pg_ha versions and
// pg_basebackup -R wrote them); the running worker resets them with ALTER
// SYSTEM RESET where that is allowed and reports an error otherwise.
#pragma once
#include "core/no_postgres.hpp"

#include <string>
#include <utility>
#include <vector>

namespace pgha {

using ConfParams = std::vector<std::pair<std::string, std::string>>;

inline constexpr const char *kServerConfFile = "pg_ha.auto.conf";
// What the include line in postgresql.conf names (relative to the data directory).
inline constexpr const char *kServerConfInclude = "include_if_exists 'pg_ha.auto.conf'";
// The keys pg_hactl boot moves out of postgresql.auto.conf even before
// pg_ha.auto.conf names them.
inline constexpr const char *kServerConfKeys[] = {"primary_conninfo", "primary_slot_name",
                                                  "synchronous_standby_names"};

// A configuration-file value: 'it''s a \\ backslash'.
std::string conf_quote(const std::string &s);

// The `name = value` settings of a configuration file, in order (comments,
// blank and include lines skipped; quoted values unquoted; a later line for
// the same name wins when merged). Names are lower-cased like PostgreSQL does.
ConfParams parse_conf(const std::string &text);

// `params` applied to `current` (same name: replaced in place; new: appended).
ConfParams merge_conf(ConfParams current, const ConfParams &params);

// kServerConfFile's text for `params`.
std::string render_server_conf(const ConfParams &params);

// `text` (e.g. postgresql.auto.conf) without the lines that set any of
// `names`; `removed` gets those settings (the last value of each).
std::string strip_conf_keys(const std::string &text, const std::vector<std::string> &names, ConfParams &removed);

// Merges `params` into <data_dir>/kServerConfFile: written to a temporary
// file (mode 0600), fsynced, renamed over it, directory fsynced. False with
// `error` set when it cannot (the old file is then left as it was).
bool update_server_conf(const std::string &data_dir, const ConfParams &params, std::string &error);
// The config key's postgresql.parameters that are no longer wanted: every
// name in pg_ha.auto.conf other than pg_ha's own (kServerConfKeys) and
// `keep` is removed (so the server's default or the local configuration
// applies again). `removed`: the names taken out.
bool remove_other_server_conf_keys(const std::string &data_dir, const std::vector<std::string> &keep,
                                   std::vector<std::string> &removed, std::string &error);

// Reads a whole file; false when it cannot be opened (missing included).
bool read_text_file(const std::string &path, std::string &text);
// Atomic replace of `path` with `text` (tmp + fsync + rename + directory fsync).
bool write_file_atomic(const std::string &path, const std::string &text, unsigned mode, std::string &error);

}  // namespace pgha
