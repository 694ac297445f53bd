// The REST/health API server, answering from the newest published
// NodeSnapshot (core/health_api does the answering). Plain HTTP is served by
// http/event_server (one event-loop thread for every connection, so slow or
// idle clients cannot starve the health checks; a few threads for the
// management methods), HTTPS too (TLS through memory BIOs on the same loop).
//
// Threads: the event loop plus a few management threads, all
// started with every signal blocked so SIGTERM/SIGHUP/SIGURG (latch) reach the
// worker's main thread only: no PostgreSQL signal handler ever runs on an HTTP
// thread. The handlers read the snapshot box
// and nothing else; they never call PostgreSQL, never log through elog.
#pragma once
#include "core/no_postgres.hpp"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "core/health_api.hpp"
#include "core/snapshot.hpp"
#include "http/event_server.hpp"

namespace pgha {

struct ApiServerOptions {
    std::size_t keep_alive_max_count = 100000;  // requests per connection
    int keep_alive_timeout_s = 2;  // idle keep-alive connections close after this (also bounds stop())
    int read_timeout_s = 5;
    int write_timeout_s = 5;
    std::size_t payload_max_bytes = 64 * 1024;  // larger request bodies get 413
    int listen_backlog = 1024;  // a full accept queue drops SYNs and a check then waits 1 s for the retransmit
    // http/event_server (HTTP and HTTPS): per-request deadlines, header caps,
    // keep-alive limits and the connection budget (keep_alive_max_count,
    // keep_alive_timeout_s, read_timeout_s, write_timeout_s and
    // payload_max_bytes above apply too).
    int head_deadline_ms = 1000;          // whole request head, from accept or first byte
    std::size_t max_header_bytes = 16 * 1024;
    std::size_t max_headers = 64;
    std::size_t max_connections = 256;    // open connections (fd budget); oldest idle/slow evicted
    std::size_t management_threads = 2;   // requests with unsafe methods run here
    std::size_t management_queue = 8;     // more waiting: 503

    // Patroni's restapi.authentication: HTTP basic auth, required (when
    // auth_username is not empty) for the unsafe methods POST/PUT/PATCH/DELETE
    // (and any other method but GET/HEAD/OPTIONS); checked before the
    // management hook runs. Wrong or missing credentials: 401 with
    // WWW-Authenticate: Basic realm="pg_ha". Compared in constant time.
    std::string auth_username;
    std::string auth_password;
    // pg_ha: also require the credentials for GET/HEAD/OPTIONS. Off by default
    // (Patroni keeps reads open; HAProxy health checks send no credentials).
    bool auth_for_reads = false;
    // pg_ha: without credentials or client certificates, unsafe methods get
    // 401 unless this is set (pg_ha.restapi_allow_unauthenticated).
    bool allow_unauthenticated = false;
    // Patroni's restapi.allowlist (comma/space separated IPs and networks) and
    // allowlist_include_members (the api_url hosts in the snapshot's cluster
    // view, names resolved per unsafe request). Unparsable: start() fails.
    std::string allowlist;
    bool allowlist_include_members = false;

    // Patroni's restapi.certfile/keyfile/keyfile_password/cafile/ciphers/
    // verify_client. A non-empty certfile switches the server to HTTPS (TLS 1.2+).
    std::string certfile;          // PEM certificate (chain); may also hold the key
    std::string keyfile;           // PEM private key; "" = in certfile
    std::string keyfile_password;  // for an encrypted keyfile
    std::string cafile;            // CAs for client certificates ("" = system CAs)
    std::string ciphers;           // OpenSSL cipher list for TLS <= 1.2; "" = OpenSSL default
    // "none" (or ""), "optional" (a presented certificate must verify; unsafe
    // methods without one get 403, as in Patroni) or "required" (the TLS
    // handshake fails without a valid client certificate). Case-insensitive.
    std::string verify_client;
};

class ApiServer {
  public:
    explicit ApiServer(ApiServerOptions options = ApiServerOptions()) noexcept;
    ~ApiServer();  // stops and joins
    ApiServer(const ApiServer &) = delete;
    ApiServer &operator=(const ApiServer &) = delete;

    // Management endpoints (POST/PUT/PATCH/DELETE). The hook runs on the HTTP
    // connection threads: it must be thread-safe and must not call PostgreSQL
    // (queue a command for the main loop instead). Only before start():
    // returns false (hook not installed) while the server runs.
    bool set_management_hook(ManagementHook hook) noexcept;

    // Binds `listen` ("host:port", "[v6addr]:port", "*:port" or ":port" for
    // all addresses, port 0 = any free port) synchronously, then serves on a
    // background thread. `box` must outlive the server (until stop()).
    // Returns false with a message naming the address when the address is
    // unparsable or cannot be bound (e.g. port in use), or naming the file
    // when the TLS certificate, key or CA file cannot be read or used, or
    // when verify_client has an unknown value. Never throws.
    bool start(const std::string &listen, const SnapshotBox &box, std::string &error) noexcept;

    // Closes the listening socket, lets in-flight requests finish and joins
    // every thread. Idempotent; waits at most about keep_alive_timeout_s plus
    // read_timeout_s for connections that are idle or mid-request.
    void stop() noexcept;

    // Port actually bound (useful with port 0); 0 when not started.
    int port() const noexcept { return port_.load(std::memory_order_relaxed); }
    // True between a successful start() and stop(), as long as the listener
    // thread is still accepting (it exits on a fatal accept() error).
    bool alive() const noexcept;
    // Requests answered by our handlers since start(). Meant for noticing a
    // dead HTTP thread (together with a probe of one's own); nothing in the
    // worker reads it yet.
    std::uint64_t requests_served() const noexcept { return served_.load(std::memory_order_relaxed); }

    // "host:port" parsing as Patroni's restapi.listen (split on the last
    // colon; brackets around IPv6 allowed; "" or "*" host = all addresses):
    // core's parse_host_port in its Listen form, with a message naming `listen`.
    static bool parse_listen_address(const std::string &listen, std::string &host, int &port, std::string &error);

    // Connections currently open.
    std::size_t connections() const noexcept;

  private:
    struct Incoming;
    struct Outgoing;
    Outgoing answer(const Incoming &in) noexcept;
    bool start_events(const std::string &host, int port, const std::string &listen, ssl_ctx_st *tls,
                      std::string &error);

    ApiServerOptions options_;
    ApiAccessPolicy access_;  // from options_; read by the connection threads
    ManagementHook mgmt_;
    const SnapshotBox *box_ = nullptr;
    // The status body of the newest snapshot, rendered once per snapshot
    // (every health check answers it).
    std::mutex body_mu_;
    SnapshotPtr body_snap_;
    std::shared_ptr<const std::string> body_;
    std::unique_ptr<EventServer> events_;
    std::mutex lifecycle_mu_;  // serializes start()/stop()
    std::atomic<int> port_{0};
    std::atomic<std::uint64_t> served_{0};
};

}  // namespace pgha
