// A Patroni YAML configuration (patroni.yml, postgresN.yml) as pg_ha's
// configuration: pg_hactl boot --patroni-config FILE.
//
// Pure translation, no I/O: YAML text -> the pg_ha settings file's lines
// (pg_ha.* settings and the local PostgreSQL parameters; the one source of
// truth the server and pg_hactl read), the initial `config` key
// (bootstrap.dcs), the bootstrap plan (initdb options, pg_hba lines, users,
// post_bootstrap, custom method) and one warning per key pg_ha does not
// support, named by its YAML path ("restapi.allowlist: ..."), so nothing is
// ignored silently. Errors: the file cannot be used (no scope, no ZooKeeper,
// bad values).
#pragma once
#include "core/no_postgres.hpp"

#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace pgha::cli {

struct BootstrapUser {
    std::string name, password;
    std::vector<std::string> options;  // upper case, checked: CREATEDB, NOSUPERUSER, CONNECTION LIMIT 5, ...
};

struct BootstrapPlan {
    std::string method = "initdb";           // bootstrap.method
    std::vector<std::string> initdb_options;  // "--encoding=UTF8", "--data-checksums" (unquoted)
    bool initdb_auth_given = false;           // the list sets auth / auth-local / auth-host
    std::vector<std::string> pg_hba;          // appended to initdb's pg_hba.conf
    std::vector<BootstrapUser> users;
    std::string post_bootstrap;               // script, run with the connection URL (post_init is the same)
    std::string method_command;               // bootstrap.<method>.command
    std::vector<std::string> method_args;     // "--key=value" from bootstrap.<method> (unless no_params)
};

struct PatroniConfig {
    // settings-file lines in order: "pg_ha.scope" -> "batman", "port" -> "5432", ...
    std::vector<std::pair<std::string, std::string>> settings;
    std::string name, data_dir, bin_dir;
    nlohmann::json dcs = nlohmann::json::object();  // bootstrap.dcs as the initial `config` key
    BootstrapPlan bootstrap;
    std::vector<std::string> pg_hba;  // postgresql.pg_hba: pg_hba.conf at every boot ("" = none given)
    bool has_local_pg_hba = false;
    std::vector<std::string> warnings;  // "yaml.path: why it is not used"
    std::vector<std::string> errors;    // the file cannot be used
    bool ok() const { return errors.empty(); }
    // The value of a settings line ("" when absent).
    std::string setting(const std::string &key) const;
};

PatroniConfig read_patroni_config(const std::string &yaml_text);

// The settings file: a header naming `source`, then key = 'value' lines.
std::string settings_file_text(const PatroniConfig &c, const std::string &source);

}  // namespace pgha::cli
