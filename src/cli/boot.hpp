// pg_hactl boot: prepare the data directory before postgres starts.
//   - empty directory: win the initialize race and initdb, or clone the
//     leader with pg_basebackup;
//   - existing directory: rejoin (follow the leader, pg_rewind first when this
//     node was a primary or is on an older timeline).
// Errors throw cli::CommandError (exit 1); a failed bootstrap gives the
// initialize race back and empties the directory on the way out.
#pragma once
#include "core/no_postgres.hpp"

#include <optional>
#include <set>
#include <string>

#include "dcs/zk_acl.hpp"
#include "cli/patroni_config.hpp"

namespace pgha::cli {

// The node's settings file as boot needs it (pg_ha.* keys).
struct NodeConfig {
    std::string config_path, pgdata, bindir;
    std::string scope, ns, name, zk_hosts, connect_address;
    ZkAuth zk_auth;  // pg_ha.zookeeper_user/_password/_set_acls (never printed)
    std::string superuser, superuser_password, repl_user, repl_password, rewind_user, rewind_password;
    std::string admin_user, admin_password, pg_hba;
    std::string superuser_networks;  // CIDRs the default pg_hba.conf lets the superuser in from
    int port = 5432;
    bool dcs_shell_parameters = false;
    std::set<std::string> local_parameters;  // PostgreSQL parameters the settings file sets (they win)
    int timeout_s = 300;
    // boot --patroni-config: the bootstrap plan, initial config key and local
    // pg_hba lines of the Patroni file (the settings file is written from it).
    std::optional<PatroniConfig> patroni;
};

// Reads and checks the settings file; throws CommandError(kExitFailed).
NodeConfig load_node_config(const std::string &path);

// boot --patroni-config: reads `yaml_path`, logs every warning, writes the
// settings file `settings_path` (0600) from it and returns the node's config
// read back from that file. `pgdata`: --pgdata/$PGDATA ("" = data_dir of the
// file). Throws CommandError on errors.
NodeConfig load_patroni_node_config(const std::string &yaml_path, const std::string &settings_path,
                                    const std::string &pgdata);

// Runs boot for `c` (pgdata set; bindir found here when empty). Returns the
// exit code (0) or throws.
int cmd_boot(NodeConfig c);

}  // namespace pgha::cli
