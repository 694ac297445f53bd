// The ZooKeeper session file a node keeps in its data directory
// (pg_ha.zksession, mode 0600): "<member> <session id hex> <password hex>
// <timeout ms>". The worker writes it so a restarted server resumes its
// session (and keeps the leader lock); `pg_hactl stop` reads it to close the
// session of a primary it stopped cleanly (the lock goes at once, not after
// ttl). A clone carries its source's file, hence the member name.
#pragma once
#include "core/no_postgres.hpp"

#include <cstdint>
#include <string>

#include "dcs/zk_client.hpp"

namespace pgha {

std::string session_file_path(const std::string &data_dir);

// False when the file is missing, unreadable, names another member or is malformed.
bool read_session_file(const std::string &path, const std::string &member, ZkCredentials &c, int &timeout_ms);
// Atomically (temporary file, fsync, rename); false on any failure.
bool write_session_file(const std::string &path, const std::string &member, const ZkCredentials &c, int timeout_ms);

// Session ids as ZooKeeper prints them: "1a2b3c" (lower-case hex, no 0x).
std::string session_id_hex(std::int64_t id);

}  // namespace pgha
