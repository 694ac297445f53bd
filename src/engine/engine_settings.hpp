// The static settings the engine runs with (from pg_ha.* and the server's
// own port, socket directory and data directory).
#pragma once

#include "core/no_postgres.hpp"

#include <string>

#include "core/cluster.hpp"

namespace pgha {

struct EngineSettings {
    std::string scope, ns, name, zk_hosts;
    std::string connect_address, api_listen, api_connect_address;
    std::string superuser, superuser_password, replication_user, replication_password;
    std::string socket_dir, data_dir;
    int port = 5432;
    Tags tags;
    int lease_safety_margin_ms = 2000;
    bool lease_enforcement = true;
    int watchdog_mode = 1;  // 0 off, 1 automatic, 2 required
    std::string watchdog_device;
    int watchdog_safety_margin = 5;
    std::string restapi_username, restapi_password, restapi_certfile, restapi_keyfile, restapi_keyfile_password,
        restapi_cafile, restapi_verify_client;

    std::string member_conn_url() const { return "postgres://" + connect_address + "/postgres"; }
    std::string api_scheme() const { return restapi_certfile.empty() ? "http" : "https"; }
    std::string member_api_url() const { return api_scheme() + "://" + api_connect_address + "/patroni"; }
    std::string session_file() const { return data_dir + "/pg_ha.zksession"; }
    // "" when usable, else what is wrong.
    std::string validate() const;
};

}  // namespace pgha
