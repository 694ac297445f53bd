// LSN text form ("16/B374D848") <-> 64-bit integer.
#pragma once
#include "core/no_postgres.hpp"

#include <cstdint>
#include <optional>
#include <string>

namespace pgha {

using Lsn = std::uint64_t;

std::string format_lsn(Lsn lsn);
std::optional<Lsn> parse_lsn(const std::string &text);

// Sizes like "1048576", "16kB", "16MB", "1GB" (PostgreSQL units, base 1024).
std::optional<std::int64_t> parse_size_bytes(const std::string &text);

}  // namespace pgha
