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
#include <string_view>
#include <vector>

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
    HttpReply() = default;
    HttpReply(int s, std::string type, std::string text)
        : status(s), content_type(std::move(type)), body(std::move(text)) {}

    int status = 200;
    std::string content_type;  // "" when the body is empty
    std::string body;
    // Called once the reply was written to the socket, or its connection
    // closed before that (on the server's event thread; must not block).
    std::function<void()> on_sent;
};

// Extension point for the management endpoints (POST /switchover, /failover,
// /restart, /reinitialize, /reload, /failsafe, PATCH/PUT /config ...). The
// engine's hook queues a command for the worker's main loop. Called only for
// methods other than GET/HEAD/OPTIONS; returning nullopt means "not handled"
// and handle_request answers 501 as Patroni does for an unknown method.
using ManagementHook =
    std::function<std::optional<HttpReply>(const NodeSnapshot *snap, const HttpRequestView &req)>;

// Answers one request.
//   snap            newest snapshot, or nullptr before the first HA loop finished
//   now_steady_ms   snapshot_clock_ms() (the clock of snap->loop_steady_ms and lease_until_steady_ms)
//   mgmt            optional handler for non-GET methods (may be empty)
//   status_body     json_text(patroni_status_json(*snap)) when the caller
//                   keeps it per snapshot (the body of /patroni and of every
//                   health check); nullptr: built here
// Never throws for any input (bad query values are handled as Patroni does).
HttpReply handle_request(const NodeSnapshot *snap, const HttpRequestView &req, std::int64_t now_steady_ms,
                         const ManagementHook &mgmt = ManagementHook(),
                         const std::string *status_body = nullptr) noexcept;

// The body handle_request gives /patroni and the health checks for `snap`.
std::string status_body_text(const NodeSnapshot &snap);

// One entry of Patroni's restapi.allowlist: an address ("192.0.2.7",
// "2001:db8::1") or a network ("10.0.0.0/8", "fe80::/10").
struct IpNetwork {
    int family = 0;  // AF_INET or AF_INET6
    unsigned char addr[16] = {};
    int prefix = 0;  // bits
};
// nullopt for anything but an IPv4/IPv6 address with an optional /prefix in range.
std::optional<IpNetwork> parse_ip_network(std::string_view text) noexcept;
// A comma- or space-separated allowlist; false with `error` naming the bad entry.
bool parse_allowlist(const std::string &text, std::vector<IpNetwork> &out, std::string &error);
// `ip` is a textual address (IPv4-mapped IPv6 "::ffff:a.b.c.d" counts as IPv4).
// false for anything unparsable.
bool ip_in_network(const std::string &ip, const IpNetwork &net) noexcept;
// The hosts of the members' api_url in a snapshot's cluster view (Patroni's
// allowlist_include_members); names are resolved by the transport.
std::vector<std::string> member_api_hosts(const NodeSnapshot &snap);

// Access control for the REST API, as Patroni's RestApiServer.check_access
// (which guards only its POST/PUT/PATCH/DELETE handlers).
//
// pg_ha: closed by default. Unsafe methods need credentials (username) or a
// verified client certificate (client_cert_required); with neither configured
// they are refused (401) unless allow_unauthenticated says otherwise.
struct ApiAccessPolicy {
    // HTTP basic authentication (Patroni's restapi.authentication). Enabled
    // when username is not empty; an empty password is allowed.
    std::string username;
    std::string password;
    // pg_ha: also require credentials for GET/HEAD/OPTIONS. Off by default,
    // as in Patroni: load balancers probe /primary, /replica ... unauthenticated.
    bool auth_for_reads = false;
    // Patroni: with restapi.verify_client "optional" or "required" over HTTPS,
    // unsafe methods without a verified client certificate get 403.
    bool client_cert_required = false;
    // pg_ha.restapi_allow_unauthenticated: unsafe methods need nothing when
    // neither credentials nor client certificates are configured.
    bool allow_unauthenticated = false;
    // Patroni's restapi.allowlist / allowlist_include_members: when either is
    // set, unsafe methods from any other address get 403 "Access is denied"
    // (checked first, in addition to the credentials).
    std::vector<IpNetwork> allowlist;
    bool allowlist_include_members = false;

    // True when unsafe methods can be used at all without the opt-out.
    bool protects_unsafe_methods() const { return !username.empty() || client_cert_required; }
};

// The challenge a 401 from check_access must carry in WWW-Authenticate.
inline constexpr const char *kBasicAuthChallenge = "Basic realm=\"pg_ha\"";

// GET, HEAD and OPTIONS; everything else is "unsafe" (needs authentication).
bool is_safe_method(const std::string &method) noexcept;

// Compares a client-supplied secret with the expected one in constant time:
// one pass over the supplied bytes, no early exit, so the time taken never
// depends on the contents or on where the two differ (only on the lengths).
bool constant_time_equals(std::string_view supplied, std::string_view expected) noexcept;

// Strict RFC 4648 base64 (standard alphabet; padding optional but, when
// present, correct; no whitespace). nullopt for anything else.
std::optional<std::string> decode_base64(std::string_view text) noexcept;

// True when `authorization` (an Authorization header value) is
// "Basic <base64(username:password)>" for exactly these credentials. The
// scheme is case-insensitive; anything malformed is simply false.
bool basic_auth_matches(std::string_view authorization, const std::string &username,
                        const std::string &password) noexcept;

// nullopt: the request may proceed (to handle_request and the management
// hook). Otherwise the reply to send instead: 403 "client certificate
// required" or 401 ("no auth header received" / "not authenticated", as
// Patroni words them; the transport adds WWW-Authenticate: kBasicAuthChallenge).
//   authorization           the Authorization header, nullptr when absent
//   client_cert_verified    the TLS peer presented a certificate that verified
//   remote_addr             the client's address ("" = unknown: fails the allowlist)
//   member_addrs            addresses of the members' api_url hosts (allowlist_include_members)
std::optional<HttpReply> check_access(const ApiAccessPolicy &policy, const std::string &method,
                                      const std::string *authorization, bool client_cert_verified,
                                      const std::string &remote_addr,
                                      const std::vector<std::string> &member_addrs = {}) noexcept;
// The same without an allowlist context (remote address unknown).
std::optional<HttpReply> check_access(const ApiAccessPolicy &policy, const std::string &method,
                                      const std::string *authorization, bool client_cert_verified) noexcept;

// The body of the 401 for unsafe methods on a server without credentials,
// client certificates or the opt-out.
inline constexpr const char *kApiClosedMessage =
    "unsafe methods are refused: the REST API has no credentials configured (set pg_ha.restapi_username and "
    "pg_ha.restapi_password, or client certificates with pg_ha.restapi_verify_client, or explicitly "
    "pg_ha.restapi_allow_unauthenticated = on)";

// Building blocks, exposed for reuse (SQL ha_status(), pg_hactl) and tests.

// Status code of Patroni's generic do_GET (/primary, /replica, /read-only,
// /sync, /async, /health, ... and any path without its own handler).
// `now_steady_ms`: as handle_request's (a snapshot past its lease says no writes).
int health_check_status(const NodeSnapshot &snap, const HttpRequestView &req, std::int64_t now_steady_ms);
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
// Listed in the sync key with synchronous_mode quorum (Patroni 4's quorum_standby).
bool is_quorum_standby(const NodeSnapshot &snap);

// Patroni's parse_int(value, 'B') for the `lag` parameter: bytes or a size
// with a unit (B, kB, MB, GB, TB). nullopt when unparsable.
std::optional<std::int64_t> parse_lag_bytes(const std::string &text);

// Patroni's str(datetime) of pg_postmaster_start_time() in UTC:
// "2024-01-02 03:04:05+00:00".
std::string format_postmaster_start_time(std::int64_t epoch_s);

}  // namespace pgha
