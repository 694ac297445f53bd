// HTTP client for the REST APIs of the other members (Patroni-compatible).
//
// Used by the HA worker before it takes the leader lock (Patroni's
// Ha._is_healthiest_node / fetch_node_status: GET /patroni on every member),
// for failsafe heartbeats (POST /failsafe) and by pg_hactl.
//
// http_parallel() runs all requests at once on one libcurl multi handle with
// one overall deadline: it returns no later than about timeout_ms after it was
// called (plus the time to tear the handles down, which does not wait for
// pending DNS lookups), whatever the peers do. It never throws and never
// raises a signal (CURLOPT_NOSIGNAL). It may be called from any thread, also
// concurrently; each call has its own handles.
//
// parse_patroni_status() distils a /patroni answer into what the HA decisions
// need, the way Patroni's _MemberStatus.from_api_response does.
#pragma once
#include "core/no_postgres.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace pgha {

constexpr std::size_t kPeerReplyMaxBytes = 1024 * 1024;

struct PeerRequest {
    std::string name;  // caller's label (member name), copied into the reply
    std::string url;   // http:// or https:// only; no redirects are followed
    std::string method = "GET";  // GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS
    std::string body;            // sent for every method but GET/HEAD/OPTIONS when non-empty, always for POST
    std::string content_type = "application/json";  // for a request with a body
    // "user:pass" or "" (HTTP basic authentication). Sent only with unsafe
    // methods (not GET/HEAD/OPTIONS), and only to an https URL unless
    // allow_http_credentials: otherwise the request fails without any I/O
    // (the URLs come from ZooKeeper, which anyone may have written).
    std::string basic_auth;
    bool allow_http_credentials = false;  // pg_ha.restapi_allow_http_credentials
    // https only. Peer verification (certificate chain and host name) is on
    // unless `insecure`; `ca_file` replaces the system CA bundle when set.
    bool insecure = false;
    std::string ca_file;
    std::string client_cert_file;  // PEM client certificate (restapi verify_client), optional
    std::string client_key_file;   // its private key; "" = in client_cert_file
    std::size_t max_body_bytes = kPeerReplyMaxBytes;  // larger response body -> ok=false
};

struct PeerReply {
    std::string name;
    bool ok = false;  // transport succeeded: a complete HTTP response arrived (any status code)
    long status = 0;  // HTTP status code; 0 when no response header arrived
    std::string body;
    std::string error;  // why ok == false ("" when ok)
    std::int64_t elapsed_ms = 0;
};

// Performs all requests in parallel; the replies are in the order of `reqs`.
// Connect and total time of every request are bounded by timeout_ms, and so
// is the whole call. timeout_ms <= 0: every reply fails without any I/O.
std::vector<PeerReply> http_parallel(const std::vector<PeerRequest> &reqs, int timeout_ms) noexcept;

// A peer's GET /patroni answer (Patroni's api.py get_postgresql_status +
// _write_status_response; ours is core/health_api patroni_status_json).
struct PeerStatus {
    // Usable for a leader-race comparison: a JSON object with an "xlog" (or
    // "wal") object and all known fields of the expected types. Patroni counts
    // a member without xlog (PostgreSQL not running) as not reachable; so do
    // we, but state/role/name are still filled in as far as they parsed.
    bool valid = false;
    std::string error;  // why !valid
    std::string role;   // "primary", "replica", "standby_leader", ...; Patroni's "master" -> "primary"
    std::string state;  // "running", "starting", "stopped", ...
    // Patroni infers this from the xlog shape ("location" only for a primary).
    // pg_ha: a node that says it is primary also counts as not in recovery.
    bool in_recovery = true;
    // Replica: max(received_location, replayed_location); primary: xlog.location.
    std::uint64_t position = 0;
    int timeline = 0;
    bool nofailover = false;       // tags.nofailover (true/"true"/"on"/"yes"/"1")
    bool paused = false;           // "pause": the cluster is in maintenance mode
    bool replay_paused = false;    // xlog.paused: pg_wal_replay_pause() in effect
    bool watchdog_failed = false;  // Patroni: such a member may not promote
    bool sync_standby = false;     // listed in the sync key (synchronous_mode)
    std::int64_t dcs_last_seen = 0;
    std::string name;  // patroni.name
};

// Never throws; bad JSON or wrong types give valid=false and an error.
PeerStatus parse_patroni_status(const std::string &body) noexcept;

}  // namespace pgha
