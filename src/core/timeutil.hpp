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
// UTC, "2026-11-24T23:10:00+00:00", always (at least) 4 year digits, so
// parse_iso8601 reads it back. The one formatter for Patroni timestamps
// (failover key, history). "" when the time cannot be represented.
std::string format_iso8601(std::int64_t epoch_s);
// format_iso8601 of the current wall-clock time.
std::string format_iso8601_now();

}  // namespace pgha
