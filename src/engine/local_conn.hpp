// A libpq connection from the worker to its own server (unix socket), for
// the few things shared memory cannot do: ALTER SYSTEM, replication slots,
// pg_stat_replication, CHECKPOINT, and proving the server really accepts
// connections. Blocking calls, bounded by connect_timeout and
// statement_timeout.
//
// Thread affinity: one thread per connection (the loop has one, the
// background thread its own).
#pragma once

#include "core/no_postgres.hpp"

#include <optional>
#include <string>
#include <vector>

#include "engine/deps.hpp"

struct pg_conn;

namespace pgha {

class LocalConn final : public SqlConn {
  public:
    explicit LocalConn(std::string conninfo) : conninfo_(std::move(conninfo)) {}
    ~LocalConn() override { close(); }
    LocalConn(const LocalConn &) = delete;
    LocalConn &operator=(const LocalConn &) = delete;

    bool ensure();  // connect if needed; false when the server does not accept us
    void close();
    std::optional<SqlRows> query(const std::string &sql, const std::vector<std::string> &params = {}) override;
    const std::string &error() const override { return error_; }

  private:
    std::string conninfo_;
    pg_conn *conn_ = nullptr;
    std::string error_;
};


}  // namespace pgha
