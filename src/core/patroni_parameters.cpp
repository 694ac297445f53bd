#include "core/patroni_parameters.hpp"

#include <algorithm>
#include <cctype>
#include <map>

namespace pgha {

using nlohmann::json;

bool is_cluster_only_parameter(const std::string &name) {
    static const std::set<std::string> names = {
        "max_connections",      "max_locks_per_transaction", "max_worker_processes", "max_prepared_transactions",
        "wal_level",            "track_commit_timestamp",    "max_wal_senders",      "max_replication_slots",
        "wal_keep_segments",    "wal_keep_size",             "hot_standby",          "wal_log_hints"};
    return names.count(name) > 0;
}

bool is_shell_parameter(const std::string &name) {
    static const std::set<std::string> names = {"archive_command",         "restore_command",
                                                "archive_cleanup_command", "recovery_end_command",
                                                "ssl_passphrase_command",  "archive_library"};
    return names.count(name) > 0;
}

bool parameter_text(const json &v, std::string &out) {
    if (v.is_boolean()) out = v.get<bool>() ? "on" : "off";
    else if (v.is_string()) out = v.get<std::string>();
    else if (v.is_number()) out = v.dump();
    else return false;
    return true;
}

namespace {
bool is_identifier(const std::string &s) {
    if (s.empty() || s.size() > 63) return false;
    for (char c : s)
        if (!(std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) || c == '_' ||
              c == '.'))
            return false;
    return !std::isdigit(static_cast<unsigned char>(s[0]));
}
}  // namespace

ClusterParameters cluster_parameters(const json &config, const std::set<std::string> &local_names, bool allow_shell,
                                     int server_version_num) {
    ClusterParameters out;
    if (!config.is_object()) return out;
    auto pg = config.find("postgresql");
    if (pg == config.end() || !pg->is_object()) return out;
    auto params = pg->find("parameters");
    if (params == pg->end() || !params->is_object()) return out;
    std::map<std::string, std::string> want;
    for (auto it = params->begin(); it != params->end(); ++it) {
        std::string name = it.key();
        std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
        std::string value;
        if (!is_identifier(name)) {
            out.skipped.push_back(it.key() + ": not a parameter name");
            continue;
        }
        if (!parameter_text(it.value(), value)) {
            out.skipped.push_back(name + ": the value " + it.value().dump() + " is not a scalar");
            continue;
        }
        if (name == "wal_keep_segments" && server_version_num >= 130000) {
            if (params->contains("wal_keep_size")) continue;
            try {
                value = std::to_string(std::stoll(value) * 16) + "MB";
            } catch (const std::exception &) {
                out.skipped.push_back(name + ": " + value + " is not a number of segments");
                continue;
            }
            name = "wal_keep_size";
        }
        if (local_names.count(name) && !is_cluster_only_parameter(name)) {
            out.skipped.push_back(name + ": set in the local configuration, which takes precedence");
            continue;
        }
        if (is_shell_parameter(name) && !allow_shell) {
            out.skipped.push_back(name + ": runs a shell command; refused from ZooKeeper because "
                                         "pg_ha.dcs_shell_parameters is off on this member");
            continue;
        }
        want[name] = value;
    }
    out.apply.assign(want.begin(), want.end());
    return out;
}

}  // namespace pgha
