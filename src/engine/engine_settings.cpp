#include "engine/engine_settings.hpp"

#include "dcs/zk_acl.hpp"

namespace pgha {

EngineSettings::EngineSettings(const NodeSettings &n) : NodeSettings(n) {
    tags.nofailover = nofailover;
    tags.noloadbalance = noloadbalance;
    tags.nosync = nosync;
    tags.clonefrom = clonefrom;
}

std::string EngineSettings::validate() const {
    if (scope.empty()) return "pg_ha.scope is not set";
    if (node_name.empty()) return "pg_ha.node_name is not set";
    if (zookeeper_hosts.empty()) return "pg_ha.zookeeper_hosts is not set";
    std::string h;
    int p;
    if (!parse_host_port(connect_address, h, p)) return "pg_ha.connect_address \"" + connect_address + "\" is not host:port";
    if (!parse_host_port(api_connect_address, h, p))
        return "pg_ha.api_connect_address \"" + api_connect_address + "\" is not host:port";
    ZkAuth auth;
    std::string zk_error;
    if (!make_zk_auth(zookeeper_user, zookeeper_password, zookeeper_set_acls, auth, zk_error)) return zk_error;
    return "";
}

}  // namespace pgha
