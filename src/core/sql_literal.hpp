// A SQL string literal for statements pg_ha builds (ALTER SYSTEM, CREATE
// ROLE): with standard_conforming_strings (on since 9.1) a backslash is an
// ordinary character, only ' is doubled. (Configuration-file values quote
// differently: cli/pgdata's conf_quote.)
#pragma once

#include "core/no_postgres.hpp"

#include <string>

namespace pgha {

inline std::string sql_literal(const std::string &s) {
    std::string out = "'";
    for (char c : s) {
        if (c == '\'') out += "''";
        else out += c;
    }
    return out + "'";
}

// A quoted SQL identifier ("" doubled), e.g. a parameter name in ALTER SYSTEM.
inline std::string sql_identifier(const std::string &s) {
    std::string out = "\"";
    for (char c : s) {
        if (c == '"') out += "\"\"";
        else out += c;
    }
    return out + "\"";
}

}  // namespace pgha
