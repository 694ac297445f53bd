// A libpq connection from the worker to its own server (unix socket), for
// the few things shared memory cannot do: ALTER SYSTEM, replication slots,
// pg_stat_replication, and proving the server really accepts connections.
// Blocking calls, bounded by connect_timeout and statement_timeout.
#pragma once
#include "core/no_postgres.hpp"

#include <optional>
#include <string>
#include <vector>

struct pg_conn;

namespace pgha {

class LocalConn {
  public:
    explicit LocalConn(std::string conninfo) : conninfo_(std::move(conninfo)) {}
    ~LocalConn() { close(); }
    LocalConn(const LocalConn &) = delete;
    LocalConn &operator=(const LocalConn &) = delete;

    bool ensure();  // connect if needed; false when the server does not accept us
    void close();
    bool ok() const { return conn_ != nullptr; }
    const std::string &error() const { return error_; }

    // Runs a statement; rows as text (NULL -> ""). nullopt on error (see error()).
    std::optional<std::vector<std::vector<std::string>>> query(const std::string &sql,
                                                               const std::vector<std::string> &params = {});

    static std::string quote_literal(const std::string &s);

  private:
    std::string conninfo_;
    pg_conn *conn_ = nullptr;
    std::string error_;
};

// Host and port of a libpq conninfo string ("" / 0 when absent or unparsable).
void conninfo_host_port(const std::string &conninfo, std::string &host, int &port);

}  // namespace pgha
