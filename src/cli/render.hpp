// pg_hactl's text output: YAML (yaml-cpp) and a line diff.
#pragma once
#include "core/no_postgres.hpp"

#include <string>

#include <nlohmann/json.hpp>

namespace pgha::cli {

// Block-style YAML of a JSON value, keys sorted, like patronictl
// show-config. Strings that YAML would read as something else (numbers,
// booleans, null, "", leading/trailing blanks) are double-quoted, so the
// YAML reads back as the same JSON.
std::string to_yaml(const nlohmann::json &j);

// A line diff (longest common subsequence): unchanged lines with "  ",
// removed "- ", added "+ ".
std::string line_diff(const std::string &before, const std::string &after);

}  // namespace pgha::cli
