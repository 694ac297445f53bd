// Members and walsenders for the synchronous replication tests (test_sync,
// test_sync_quorum): a member pg-N at 10.0.0.N, a walsender at a flush position.
#pragma once

#include <string>

#include "core/cluster.hpp"

namespace pgha::test {

inline Member sync_member(const std::string &name, const std::string &role = "replica", Lsn pos = 1000) {
    Member m;
    m.name = name;
    m.role = role;
    m.state = "running";
    m.conn_url = "postgres://10.0.0." + name.substr(name.size() - 1) + ":5432/postgres";
    m.api_url = "http://10.0.0." + name.substr(name.size() - 1) + ":8008/patroni";
    m.xlog_location = pos;
    return m;
}

inline WalSender walsender_at(const std::string &name, Lsn flush, const std::string &sync_state = "async",
                              const std::string &state = "streaming") {
    WalSender w;
    w.application_name = name;
    w.state = state;
    w.sync_state = sync_state;
    w.flush_lsn = w.write_lsn = w.replay_lsn = w.sent_lsn = flush;
    return w;
}

}  // namespace pgha::test
