// The static settings the engine runs with: NodeSettings (one field per row
// of core/settings.def, plus the server's port, socket directory and data
// directory) and what follows from them.
#pragma once

#include "core/no_postgres.hpp"

#include "dcs/session_file.hpp"

#include <string>

#include "core/cluster.hpp"
#include "core/node_settings.hpp"

namespace pgha {

struct EngineSettings : NodeSettings {
    EngineSettings() = default;
    explicit EngineSettings(const NodeSettings &n);

    Tags tags;  // from the tag settings (nofailover, noloadbalance, nosync, clonefrom)

    std::string member_conn_url() const { return "postgres://" + connect_address + "/postgres"; }
    std::string api_scheme() const { return restapi_certfile.empty() ? "http" : "https"; }
    std::string member_api_url() const { return api_scheme() + "://" + api_connect_address + "/patroni"; }
    std::string session_file() const { return session_file_path(data_dir); }
    // "" when usable, else what is wrong.
    std::string validate() const;
};

}  // namespace pgha
