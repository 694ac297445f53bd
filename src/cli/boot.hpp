// pg_hactl boot: prepare the data directory before postgres starts.
//   - empty directory: win the initialize race and initdb, or clone the
//     leader with pg_basebackup;
//   - existing directory: rejoin (follow the leader, pg_rewind first when this
//     node was a primary or is on an older timeline).
// Errors throw cli::CommandError (exit 1); a failed bootstrap gives the
// initialize race back and empties the directory on the way out.
#pragma once
#include "core/no_postgres.hpp"

#include <string>

#include "dcs/zk_acl.hpp"

namespace pgha::cli {

// The node's settings file as boot needs it (pg_ha.* keys).
struct NodeConfig {
    std::string config_path, pgdata, bindir;
    std::string scope, ns, name, zk_hosts, connect_address;
    ZkAuth zk_auth;  // pg_ha.zookeeper_user/_password/_set_acls (never printed)
    std::string superuser, superuser_password, repl_user, repl_password, rewind_user, rewind_password;
    std::string admin_user, admin_password, pg_hba;
    int timeout_s = 300;
};

// Reads and checks the settings file; throws CommandError(kExitFailed).
NodeConfig load_node_config(const std::string &path);

// Runs boot for `c` (pgdata set; bindir found here when empty). Returns the
// exit code (0) or throws.
int cmd_boot(NodeConfig c);

}  // namespace pgha::cli
