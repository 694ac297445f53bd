// ISO 8601 timestamps as Patroni writes them in the failover key's
// scheduled_at ("2026-11-24T23:10:00+00:00", "...Z", fractions, a space
// instead of "T"). A timestamp without a zone is refused: a scheduled
// switchover must not depend on a server's time zone.
#pragma once
#include "core/no_postgres.hpp"

#include <cstdint>
#include <string>

namespace pgha {

// Seconds since the epoch; false (with `error`) for anything else.
bool parse_iso8601(const std::string &text, std::int64_t &epoch_s, std::string &error);
std::string format_iso8601(std::int64_t epoch_s);  // UTC, "+00:00"

}  // namespace pgha
