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

const std::vector<StandbyMinimum> &standby_minimum_parameters() {
    static const std::vector<StandbyMinimum> kList = {
        {"max_connections", "max_connections setting"},
        {"max_worker_processes", "max_worker_processes setting"},
        {"max_wal_senders", "max_wal_senders setting"},
        {"max_prepared_transactions", "max_prepared_xacts setting"},
        {"max_locks_per_transaction", "max_locks_per_xact setting"},
    };
    return kList;
}

std::vector<std::pair<std::string, std::string>> raise_to_primary_values(
    const std::map<std::string, std::string> &configured, const std::map<std::string, std::string> &controldata) {
    auto find = [](const std::map<std::string, std::string> &kv, const std::string &k) -> const std::string * {
        auto it = kv.find(k);
        return it == kv.end() ? nullptr : &it->second;
    };
    auto number = [](const std::string *text, long long &out) {
        if (!text || text->empty() || text->size() > 12) return false;
        for (char ch : *text)
            if (ch < '0' || ch > '9') return false;
        out = std::stoll(*text);
        return true;
    };
    std::vector<std::pair<std::string, std::string>> raise;
    for (const auto &p : standby_minimum_parameters()) {
        long long want = 0, primary = 0;
        if (!number(find(configured, p.guc), want) || !number(find(controldata, p.controldata_key), primary)) continue;
        if (want < primary) raise.emplace_back(p.guc, std::to_string(primary));
    }
    return raise;
}

bool parse_pg_hba_lines(const json &v, std::vector<std::string> &lines, std::string &why) {
    lines.clear();
    if (!v.is_array()) {
        why = "postgresql.pg_hba must be a list of pg_hba.conf lines";
        return false;
    }
    static const char *const kTypes[] = {"local", "host", "hostssl", "hostnossl", "hostgssenc", "hostnogssenc"};
    bool record = false;
    for (std::size_t i = 0; i < v.size(); ++i) {
        const std::string at = "postgresql.pg_hba[" + std::to_string(i) + "]";
        if (!v[i].is_string()) {
            why = at + " must be a string";
            return false;
        }
        const std::string line = v[i].get<std::string>();
        for (unsigned char ch : line)
            if (ch < 0x20 && ch != '\t') {
                why = at + " contains a control character (one line per entry)";
                return false;
            }
        std::size_t b = line.find_first_not_of(" \t");
        if (b == std::string::npos || line[b] == '#') {
            lines.push_back(line);
            continue;
        }
        const std::string type = line.substr(b, line.find_first_of(" \t", b) - b);
        if (std::find(std::begin(kTypes), std::end(kTypes), type) == std::end(kTypes)) {
            why = at + ": \"" + type + "\" is not a pg_hba.conf record type (local, host, hostssl, hostnossl, "
                  "hostgssenc, hostnogssenc; include directives are not accepted from ZooKeeper)";
            return false;
        }
        record = true;
        lines.push_back(line);
    }
    if (!record) {
        why = "postgresql.pg_hba has no record: nobody could log in";
        return false;
    }
    return true;
}

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
