// NodeSettings: a node's static settings (the pg_ha.* GUCs), one field per row
// of core/settings.def, parsed from name/value pairs the way PostgreSQL parses
// them. Used by the engine (from the worker's GUC values) and meant for
// pg_hactl (from the settings file).
#pragma once
#include "core/no_postgres.hpp"

#include <map>
#include <string>
#include <vector>

namespace pgha {

// watchdog_mode values (PGHA_ENUM_VALUE rows of settings.def)
enum WatchdogModeSetting { kWatchdogOff = 0, kWatchdogAutomatic = 1, kWatchdogRequired = 2 };

struct NodeSettings {
#define PGHA_NS_TYPE_STRING std::string
#define PGHA_NS_TYPE_BOOL bool
#define PGHA_NS_TYPE_INT int
#define PGHA_NS_TYPE_ENUM int
#define PGHA_SETTING(field, name, type, dflt, min, max, unit, flags, context, desc) \
    PGHA_NS_TYPE_##type field = dflt;
#include "core/settings.def"
#undef PGHA_SETTING
#undef PGHA_NS_TYPE_STRING
#undef PGHA_NS_TYPE_BOOL
#undef PGHA_NS_TYPE_INT
#undef PGHA_NS_TYPE_ENUM

    // PostgreSQL's own settings the engine needs to reach the local server
    // (keys without the pg_ha. prefix: port, unix_socket_directories, data_directory).
    int port = 5432;
    std::string socket_dir = "/tmp";  // the first of unix_socket_directories
    std::string data_dir;

    // Parses name/value pairs (e.g. a settings file or the worker's GUC values).
    // Keys are case-insensitive, with or without the "pg_ha." prefix. Values
    // follow PostgreSQL: booleans on/off/true/false/yes/no/1/0 (and unique
    // prefixes), integers with an optional time unit (us, ms, s, min, h, d)
    // where the setting has one, enums by label. Appends one message to
    // `errors` per bad value and per unknown "pg_ha.*" key; a field keeps its
    // default when its value is bad or missing. Keys without the prefix that
    // are neither a pg_ha setting nor port/unix_socket_directories/
    // data_directory are ignored: they are PostgreSQL's other settings.
    // `also_known` lists further pg_ha.* names (without the prefix) that the
    // caller reads itself (e.g. pg_hactl's ctl_certfile): not reported.
    static NodeSettings from_map(const std::map<std::string, std::string> &kv, std::vector<std::string> &errors,
                                 const std::vector<std::string> &also_known = {});
};

// One row of settings.def, for tools and tests.
struct SettingInfo {
    std::string name;          // without "pg_ha."
    std::string type;          // "string", "bool", "int", "enum"
    std::string default_text;  // as PostgreSQL's SHOW prints it, with the unit for ints ("2000 ms"); "" = empty
    bool secret;
    std::string context;       // "postmaster" or "sighup"
    std::string description;
};

const std::vector<SettingInfo> &setting_rows();

// PostgreSQL's parse_bool: on/off/true/false/yes/no/1/0 and unique prefixes, any case.
bool parse_pg_bool(const std::string &text, bool &out);

// A duration as PostgreSQL reads a setting in seconds: "90", "30min", "2h",
// "1500ms" (rounded). False with `why` for anything else.
bool parse_pg_seconds(const std::string &text, int &out, std::string &why);

}  // namespace pgha
