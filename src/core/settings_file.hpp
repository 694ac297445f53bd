// Reads a PostgreSQL-syntax settings file (key = 'value' lines), the same
// file the server includes, so pg_hactl and the node share one source of truth.
#pragma once
#include "core/no_postgres.hpp"

#include <map>
#include <string>
#include <vector>

namespace pgha {

struct SettingsFile {
    std::map<std::string, std::string> values;  // keys lower-cased
    std::vector<std::string> errors;            // "line N: ..."

    std::string get(const std::string &key, const std::string &dflt = "") const;
    bool get_bool(const std::string &key, bool dflt) const;
    int get_int(const std::string &key, int dflt) const;
};

SettingsFile parse_settings(const std::string &text);
bool load_settings_file(const std::string &path, SettingsFile &out, std::string &error);

}  // namespace pgha
