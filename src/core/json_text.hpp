// The one way pg_ha turns JSON into text: compact, and invalid UTF-8 (which
// can come from ZooKeeper data someone else wrote, or an application_name
// from a SQL_ASCII database) replaced by U+FFFD instead of throwing.
#pragma once

#include "core/no_postgres.hpp"

#include <string>

#include <nlohmann/json.hpp>

namespace pgha {

inline std::string json_text(const nlohmann::json &j) {
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace pgha
