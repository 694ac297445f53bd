// Patroni-compatible REST API answers, computed from a published NodeSnapshot.
//
// Pure: no sockets, no clocks, no globals. The HTTP transport (http/api_server)
// turns a request into an HttpRequestView, passes the current snapshot and the
// current time, and writes the HttpReply back. Everything here is a function
// of its arguments, so every status code is unit-tested without a network.
//
// Reference: Patroni's patroni/api.py (do_GET, do_GET_liveness, _readiness,
// get_postgresql_status, _write_status_response, do_GET_metrics, ...) and
// patroni/utils.py (cluster_as_json). Deliberate differences are marked
// "pg_ha:" in health_api.cpp and listed in the README's HTTP API section.
#pragma once
#include "core/no_postgres.hpp"

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "core/snapshot.hpp"

namespace pgha {

struct HttpRequestView {
    std::string method;  // GET, HEAD, OPTIONS, POST, ...
    std::string path;    // decoded path without the query string, e.g. "/replica"
    // Decoded query parameters in request order; for a repeated key the first
    // value counts (Python's parse_qs()[key][0], as Patroni does).
    std::multimap<std::string, std::string> query;
    std::string body;  // request body (management endpoints only)
};

struct HttpReply {
    int status = 200;
    std::string content_type;  // "" when the body is empty
    std::string body;
};

// Extension point for the management endpoints (POST /switchover, /failover,
// /restart, /reinitialize, /reload, PATCH/PUT /config, DELETE /switchover ...).
// They will queue a command for the worker's main loop. Called only for
// methods other than GET/HEAD/OPTIONS; returning nullopt means "not handled"
// and handle_request answers 501 as Patroni does for an unknown method.
using ManagementHook =
    std::function<std::optional<HttpReply>(const NodeSnapshot *snap, const HttpRequestView &req)>;

// Answers one request.
//   snap            newest snapshot, or nullptr before the first HA loop finished
//   now_steady_ms   std::chrono::steady_clock in ms (same clock as snap->loop_steady_ms)
//   now_epoch_s     wall clock, epoch seconds (reserved for scheduled actions)
//   mgmt            optional handler for non-GET methods (may be empty)
// Never throws for any input (bad query values are handled as Patroni does).
HttpReply handle_request(const NodeSnapshot *snap, const HttpRequestView &req, std::int64_t now_steady_ms,
                         std::int64_t now_epoch_s, const ManagementHook &mgmt = ManagementHook()) noexcept;

// Building blocks, exposed for reuse (SQL ha_status(), pg_hactl) and tests.

// Status code of Patroni's generic do_GET (/primary, /replica, /read-only,
// /sync, /async, /health, ... and any path without its own handler).
int health_check_status(const NodeSnapshot &snap, const HttpRequestView &req);
// GET /liveness, /readiness status codes.
int liveness_status(const NodeSnapshot *snap, std::int64_t now_steady_ms);
int readiness_status(const NodeSnapshot *snap, const HttpRequestView &req);
// Body of GET /patroni (and of GET on the health-check paths).
nlohmann::json patroni_status_json(const NodeSnapshot &snap);
// Body of GET /cluster (Patroni's utils.cluster_as_json plus "scope").
nlohmann::json cluster_json(const NodeSnapshot &snap);
// Body of GET /metrics (Prometheus text format).
std::string metrics_text(const NodeSnapshot &snap);

// The role Patroni's API reports: for a running server it follows
// pg_is_in_recovery() ("primary" / "replica" / "standby_leader"), otherwise
// the role the worker published.
std::string api_role(const NodeSnapshot &snap);
// Patroni: a replica listed in the sync key while synchronous_mode is on.
bool is_sync_standby(const NodeSnapshot &snap);

// Patroni's parse_int(value, 'B') for the `lag` parameter: bytes or a size
// with a unit (B, kB, MB, GB, TB). nullopt when unparsable.
std::optional<std::int64_t> parse_lag_bytes(const std::string &text);

// Patroni's str(datetime) of pg_postmaster_start_time() in UTC:
// "2024-01-02 03:04:05+00:00".
std::string format_postmaster_start_time(std::int64_t epoch_s);

}  // namespace pgha
