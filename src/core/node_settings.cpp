#include "core/node_settings.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

namespace pgha {
namespace {

enum class Type { String, Bool, Int, Enum };
enum class Unit { None, Ms, S };

// One row of settings.def with where its value lives in NodeSettings.
struct Row {
    const char *name;
    Type type;
    int min, max;
    Unit unit;
    bool secret;
    const char *context;
    const char *description;
    std::string NodeSettings::*str;
    bool NodeSettings::*boolean;
    int NodeSettings::*integer;
};

#define PGHA_ROW_TYPE_STRING Type::String
#define PGHA_ROW_TYPE_BOOL Type::Bool
#define PGHA_ROW_TYPE_INT Type::Int
#define PGHA_ROW_TYPE_ENUM Type::Enum
#define PGHA_ROW_UNIT_NONE Unit::None
#define PGHA_ROW_UNIT_MS Unit::Ms
#define PGHA_ROW_UNIT_S Unit::S
#define PGHA_ROW_SECRET_NONE false
#define PGHA_ROW_SECRET_SECRET true
#define PGHA_ROW_MEMBERS_STRING(field) &NodeSettings::field, nullptr, nullptr
#define PGHA_ROW_MEMBERS_BOOL(field) nullptr, &NodeSettings::field, nullptr
#define PGHA_ROW_MEMBERS_INT(field) nullptr, nullptr, &NodeSettings::field
#define PGHA_ROW_MEMBERS_ENUM(field) nullptr, nullptr, &NodeSettings::field

const Row kRows[] = {
#define PGHA_SETTING(field, name, type, dflt, min, max, unit, flags, context, desc)                                \
    {#name, PGHA_ROW_TYPE_##type, min, max, PGHA_ROW_UNIT_##unit, PGHA_ROW_SECRET_##flags, #context, desc, \
     PGHA_ROW_MEMBERS_##type(field)},
#include "core/settings.def"
#undef PGHA_SETTING
};

struct EnumValue {
    const char *setting;
    const char *label;
    int value;
    bool hidden;
};

const EnumValue kEnumValues[] = {
#define PGHA_ENUM_VALUE(name, label, value, hidden) {#name, label, value, hidden},
#include "core/settings.def"
#undef PGHA_ENUM_VALUE
};

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
}

std::string trim(const std::string &s) {
    std::size_t b = 0, e = s.size();
    while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) b++;
    while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) e--;
    return s.substr(b, e - b);
}

const char *unit_name(Unit u) { return u == Unit::Ms ? "ms" : u == Unit::S ? "s" : ""; }

// PostgreSQL's parse_int (guc.c) for settings in a time unit: an integer
// (decimal, 0x hex or 0 octal, as strtol) or a decimal number, then optionally
// a unit; rounded to the setting's unit.
bool parse_int_value(const std::string &text, Unit unit, int &out, std::string &why) {
    const char *s = text.c_str();
    char *end = nullptr;
    errno = 0;
    double val = static_cast<double>(std::strtol(s, &end, 0));
    if (*end == '.' || *end == 'e' || *end == 'E' || errno == ERANGE) {
        errno = 0;
        val = std::strtod(s, &end);
    }
    if (end == s || errno == ERANGE || !std::isfinite(val)) {
        why = "not an integer";
        return false;
    }
    std::string rest = trim(end);
    if (!rest.empty()) {
        if (unit == Unit::None) {
            why = "this setting takes no unit";
            return false;
        }
        // microseconds per unit
        static const struct {
            const char *name;
            double us;
        } units[] = {{"us", 1.0}, {"ms", 1e3}, {"s", 1e6}, {"min", 60e6}, {"h", 3600e6}, {"d", 86400e6}};
        const double base = unit == Unit::Ms ? 1e3 : 1e6;
        bool found = false;
        for (const auto &u : units)
            if (rest == u.name) {
                val = val * u.us / base;
                found = true;
                break;
            }
        if (!found) {
            why = "valid units for this setting are \"us\", \"ms\", \"s\", \"min\", \"h\" and \"d\"";
            return false;
        }
    }
    val = std::rint(val);
    if (val > std::numeric_limits<int>::max() || val < std::numeric_limits<int>::min()) {
        why = "out of range";
        return false;
    }
    out = static_cast<int>(val);
    return true;
}

std::string default_text(const Row &r, const NodeSettings &d) {
    switch (r.type) {
        case Type::String:
            return d.*r.str;
        case Type::Bool:
            return d.*r.boolean ? "on" : "off";
        case Type::Int: {
            std::string t = std::to_string(d.*r.integer);
            return r.unit == Unit::None ? t : t + " " + unit_name(r.unit);
        }
        case Type::Enum:
            for (const auto &e : kEnumValues)
                if (!e.hidden && r.name == std::string(e.setting) && e.value == d.*r.integer) return e.label;
            return std::to_string(d.*r.integer);
    }
    return "";
}

const char *type_name(Type t) {
    switch (t) {
        case Type::String: return "string";
        case Type::Bool: return "bool";
        case Type::Int: return "int";
        case Type::Enum: return "enum";
    }
    return "";
}

void set_value(NodeSettings &s, const Row &r, const std::string &raw, std::vector<std::string> &errors) {
    const std::string key = std::string("pg_ha.") + r.name;
    const std::string value = r.type == Type::String ? raw : trim(raw);
    std::string why;
    switch (r.type) {
        case Type::String:
            s.*r.str = value;
            return;
        case Type::Bool: {
            bool b;
            if (parse_pg_bool(value, b)) {
                s.*r.boolean = b;
                return;
            }
            errors.push_back(key + ": invalid value \"" + value + "\": expected on/off, true/false, yes/no or 1/0");
            return;
        }
        case Type::Int: {
            int v;
            if (!parse_int_value(value, r.unit, v, why)) {
                errors.push_back(key + ": invalid value \"" + value + "\": " + why);
                return;
            }
            if (v < r.min || v > r.max) {
                const std::string u = r.unit == Unit::None ? "" : std::string(" ") + unit_name(r.unit);
                errors.push_back(key + ": " + std::to_string(v) + u + " is outside the valid range " +
                                 std::to_string(r.min) + ".." + std::to_string(r.max) + u);
                return;
            }
            s.*r.integer = v;
            return;
        }
        case Type::Enum: {
            std::string valid;
            for (const auto &e : kEnumValues) {
                if (r.name != std::string(e.setting)) continue;
                if (lower(value) == e.label) {
                    s.*r.integer = e.value;
                    return;
                }
                if (!e.hidden) valid += std::string(valid.empty() ? "" : ", ") + e.label;
            }
            errors.push_back(key + ": invalid value \"" + value + "\": expected one of " + valid);
            return;
        }
    }
}

// PostgreSQL's own settings the engine needs; true when `key` is one of them.
bool set_postgres_value(NodeSettings &s, const std::string &key, const std::string &raw,
                        std::vector<std::string> &errors) {
    if (key == "port") {
        int v;
        std::string why;
        if (!parse_int_value(trim(raw), Unit::None, v, why) || v < 1 || v > 65535)
            errors.push_back("port: invalid value \"" + raw + "\": expected 1..65535");
        else
            s.port = v;
        return true;
    }
    if (key == "unix_socket_directories") {
        std::string first = trim(raw.substr(0, raw.find(',')));
        s.socket_dir = first.empty() ? "/tmp" : first;
        return true;
    }
    if (key == "data_directory") {
        s.data_dir = raw;
        return true;
    }
    return false;
}

}  // namespace

bool parse_pg_seconds(const std::string &text, int &out, std::string &why) {
    return parse_int_value(trim(text), Unit::S, out, why);
}

bool parse_pg_bool(const std::string &text, bool &out) {
    const std::string v = lower(trim(text));
    const std::size_t n = v.size();
    if (n == 0) return false;
    auto prefix_of = [&](const char *word, std::size_t min_len) {
        return n >= min_len && n <= std::strlen(word) && std::strncmp(word, v.c_str(), n) == 0;
    };
    switch (v[0]) {
        case 't': if (prefix_of("true", 1)) { out = true; return true; } break;
        case 'f': if (prefix_of("false", 1)) { out = false; return true; } break;
        case 'y': if (prefix_of("yes", 1)) { out = true; return true; } break;
        case 'n': if (prefix_of("no", 1)) { out = false; return true; } break;
        case 'o':
            if (prefix_of("on", 2)) { out = true; return true; }
            if (prefix_of("off", 2)) { out = false; return true; }
            break;
        case '1': if (n == 1) { out = true; return true; } break;
        case '0': if (n == 1) { out = false; return true; } break;
        default: break;
    }
    return false;
}

NodeSettings NodeSettings::from_map(const std::map<std::string, std::string> &kv, std::vector<std::string> &errors,
                                    const std::vector<std::string> &also_known) {
    NodeSettings s;
    static const std::string prefix = "pg_ha.";
    for (const auto &[raw_key, value] : kv) {
        const std::string key = lower(trim(raw_key));
        const bool prefixed = key.compare(0, prefix.size(), prefix) == 0;
        const std::string name = prefixed ? key.substr(prefix.size()) : key;
        const Row *row = nullptr;
        for (const auto &r : kRows)
            if (name == r.name) row = &r;
        if (row) {
            set_value(s, *row, value, errors);
            continue;
        }
        if (!prefixed) {
            set_postgres_value(s, key, value, errors);  // otherwise: another PostgreSQL setting
            continue;
        }
        if (std::find(also_known.begin(), also_known.end(), name) != also_known.end()) continue;
        errors.push_back("unknown setting \"" + key + "\"");
    }
    return s;
}

const std::vector<SettingInfo> &setting_rows() {
    static const std::vector<SettingInfo> rows = [] {
        std::vector<SettingInfo> v;
        const NodeSettings d;
        for (const auto &r : kRows)
            // pg_settings' names: RELOAD rows are "sighup"
            v.push_back(SettingInfo{r.name, type_name(r.type), default_text(r, d), r.secret,
                                    std::string(r.context) == "RELOAD" ? "sighup" : lower(r.context), r.description});
        return v;
    }();
    return rows;
}

}  // namespace pgha
