// Dynamic cluster configuration: the `config` znode, as in Patroni.
#pragma once
#include "core/no_postgres.hpp"

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace pgha {

struct DynamicConfig {
    int ttl = 30;             // seconds: ZooKeeper session timeout = leader lease
    int loop_wait = 10;       // seconds between HA loops when nothing happens
    int retry_timeout = 10;   // seconds a DCS/PostgreSQL operation may be retried
    std::int64_t maximum_lag_on_failover = 1048576;  // bytes
    int master_start_timeout = 300;
    bool synchronous_mode = false;
    bool synchronous_mode_strict = false;
    bool pause = false;
    bool failsafe_mode = false;
    bool use_pg_rewind = true;
    bool use_slots = true;
    bool remove_data_directory_on_rewind_failure = false;
    nlohmann::json raw = nlohmann::json::object();  // the whole znode, unknown keys kept

    nlohmann::json to_json() const;

    // Parses a config znode. Unknown keys are kept in `raw`; known keys with a
    // wrong type or out of range produce errors and leave the default in place.
    static DynamicConfig from_json(const nlohmann::json &j, std::vector<std::string> &errors);

    // Checks relations between values (Patroni's rule loop_wait + 2*retry_timeout <= ttl, ranges).
    std::vector<std::string> validate() const;
};

// Smallest ttl pg_ha accepts (seconds). See README "Timing".
constexpr int kMinTtl = 2;

}  // namespace pgha
