// libpq connection strings ("conninfo"): one builder that quotes every value
// the way libpq reads it back, and one parser of libpq's syntax for the few
// places that need to read a conninfo (host and port of primary_conninfo).
//
// Pure C++: no libpq here (core is PostgreSQL-free); the unit tests check
// both against libpq's own PQconninfoParse.
#pragma once
#include "core/no_postgres.hpp"

#include <string>
#include <utility>
#include <vector>

namespace pgha {

using ConninfoPairs = std::vector<std::pair<std::string, std::string>>;

// A value in libpq's quoted form: wrapped in single quotes, with `\` and `'`
// escaped by a backslash ("pa ss'w\rd" -> 'pa ss\'w\\rd'). Any byte string
// round-trips through libpq.
std::string conninfo_quote(const std::string &value);

// "k1='v1' k2='v2' ...", in the given order. Pairs with an empty value are
// left out, so libpq falls back to its default for them (environment,
// ~/.pgpass, ...). Keywords are written as given: pass libpq's names
// (host, port, user, password, dbname, application_name, ...).
std::string build_conninfo(const ConninfoPairs &kv);

// The primary_conninfo of a standby (pg_hactl boot and the worker write the
// same): the replication role, the leader's host and port, this member's name
// as application_name (synchronous_standby_names names it), and dbname
// "postgres", which physical replication ignores and PostgreSQL 17's slot
// sync worker needs (core/failover_slots).
std::string replication_conninfo(const std::string &user, const std::string &password, const std::string &host,
                                 int port, const std::string &member_name);

// Parses a conninfo as libpq does: "key = value" pairs separated by
// whitespace, values bare (backslash escapes the next character) or in single
// quotes (backslash escapes inside), or a postgres:// / postgresql:// URI.
// Keywords are not checked against libpq's list. A repeated keyword: the last
// value wins (as in libpq). False with `error` (libpq's wording) when the
// string is malformed.
bool parse_conninfo(const std::string &conninfo, ConninfoPairs &out, std::string &error);

// (Named apart from src/pg/local_conn.cpp's libpq-based conninfo_host_port,
// which it is meant to replace.)
// Host and port of a conninfo as libpq would use them: `host` (else
// `hostaddr`), `port` (else 5432). Multi-host values are returned as written
// ("a,b"); the port is the first one. host "" and port 0 when the string is
// empty or malformed.
void parse_conninfo_host_port(const std::string &conninfo, std::string &host, int &port);

}  // namespace pgha
