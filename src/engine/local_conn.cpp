#include "engine/local_conn.hpp"

#include <libpq-fe.h>

#include <cstdlib>

namespace pgha {

bool LocalConn::ensure() {
    if (conn_ && PQstatus(conn_) == CONNECTION_OK) return true;
    close();
    conn_ = PQconnectdb(conninfo_.c_str());
    if (PQstatus(conn_) != CONNECTION_OK) {
        error_ = PQerrorMessage(conn_);
        while (!error_.empty() && (error_.back() == '\n' || error_.back() == ' ')) error_.pop_back();
        close();
        return false;
    }
    error_.clear();
    return true;
}

void LocalConn::close() {
    if (conn_) PQfinish(conn_);
    conn_ = nullptr;
}

std::optional<SqlRows> LocalConn::query(const std::string &sql, const std::vector<std::string> &params) {
    if (!ensure()) return std::nullopt;
    std::vector<const char *> values;
    for (const auto &p : params) values.push_back(p.c_str());
    PGresult *res = PQexecParams(conn_, sql.c_str(), static_cast<int>(values.size()), nullptr,
                                 values.empty() ? nullptr : values.data(), nullptr, nullptr, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        error_ = PQresultErrorMessage(res);
        while (!error_.empty() && error_.back() == '\n') error_.pop_back();
        PQclear(res);
        if (PQstatus(conn_) != CONNECTION_OK) close();
        return std::nullopt;
    }
    std::vector<std::vector<std::string>> rows;
    for (int r = 0; r < PQntuples(res); ++r) {
        std::vector<std::string> row;
        for (int c = 0; c < PQnfields(res); ++c)
            row.emplace_back(PQgetisnull(res, r, c) ? "" : PQgetvalue(res, r, c));
        rows.push_back(std::move(row));
    }
    PQclear(res);
    return rows;
}

}  // namespace pgha
