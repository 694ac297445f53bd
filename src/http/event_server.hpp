// A small HTTP/1.1 server that nobody can starve (issue 10, review H1/H2):
// the plain-HTTP transport of the REST/health API.
//
// One event-loop thread (epoll) owns every connection and reads request heads
// without blocking, so slow or idle clients cost a few bytes each, never a
// thread. Requests the `is_slow` predicate picks (the management methods,
// which wait for the worker's loop for up to ~40 s) go to a small pool of
// threads through a bounded queue (full: 503); every other request (the
// health checks, /patroni, ...) is answered on the loop thread at once.
//
// Limits (EventServerLimits): a deadline for the whole request head counted
// from the connection's first byte or accept (not per recv), a deadline for
// head + body, caps on header count and header bytes (431), a body cap (413),
// keep-alive idle time and request count, and a connection budget (fds):
// when it is full, a new connection evicts the oldest one that is idle or
// still sending its request (never one whose request is being handled).
//
// TLS (set_tls): the same loop speaks TLS through OpenSSL memory BIOs, so a
// handshake that never finishes costs what a slow request head costs and is
// cut by the same head deadline (counted from accept). cpp-httplib's thread
// per connection is no longer used for serving.
//
// Threads are started by start() and inherit the caller's signal mask (the
// ApiServer blocks every signal around it). Handlers never see a socket.
#pragma once
#include "core/no_postgres.hpp"

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

struct ssl_ctx_st;  // OpenSSL's SSL_CTX

namespace pgha {

struct EventServerLimits {
    int head_deadline_ms = 1000;      // request line + headers, from accept / first byte
    int request_deadline_ms = 5000;   // head + body
    int write_deadline_ms = 5000;     // sending one reply
    int keep_alive_idle_ms = 2000;    // idle keep-alive connections close after this
    int keep_alive_max_requests = 100;
    std::size_t max_header_bytes = 16 * 1024;  // request line + headers (431 beyond)
    std::size_t max_headers = 64;              // header fields (431 beyond)
    std::size_t max_body_bytes = 64 * 1024;    // 413 beyond
    std::size_t max_connections = 256;         // open connections (the fd budget)
    std::size_t slow_threads = 2;              // threads for is_slow requests
    std::size_t slow_queue = 8;                // queued is_slow requests (503 beyond)
};

struct EventRequest {
    std::string method;
    std::string target;  // as sent
    std::string path;    // decoded, without the query
    std::multimap<std::string, std::string> query;  // decoded
    std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased, in order
    std::string body;
    std::string remote_addr;  // textual address of the peer
    int minor_version = 1;    // HTTP/1.x
    bool client_cert_verified = false;  // TLS: the client presented a certificate that verified

    // Number of header fields named `lower_name`, and the first one's value.
    std::size_t header_count(const std::string &lower_name) const;
    const std::string *header(const std::string &lower_name) const;
};

struct EventReply {
    int status = 200;
    std::string content_type;
    std::string body;
    std::vector<std::pair<std::string, std::string>> headers;  // extra header fields
    std::function<void()> on_sent;  // written, or the connection closed first (event thread; must not block)
};

// Parses one request head (request line and header fields, without the
// final empty line). Returns 0 on success, else the HTTP status to refuse
// the request with (400 malformed, 414 target over 8 KiB, 431 too many
// headers, 505 not HTTP/1.x).
// Exposed for tests and the fuzzer.
int parse_request_head(const std::string &head, std::size_t max_headers, EventRequest &out);

class EventServer {
  public:
    using Handler = std::function<EventReply(const EventRequest &)>;
    using Predicate = std::function<bool(const EventRequest &)>;

    EventServer(EventServerLimits limits, Handler handler, Predicate is_slow);
    ~EventServer();  // stop()
    EventServer(const EventServer &) = delete;
    EventServer &operator=(const EventServer &) = delete;

    // Binds and listens ("" host = all addresses, dual-stack when possible;
    // port 0 = any free port). `socket_options` runs on the socket before bind.
    bool bind(const std::string &host, int port, int backlog, const std::function<void(int)> &socket_options,
              std::string &error);
    int port() const { return port_; }
    // Serve TLS with this context (configured by the caller; the server takes
    // its own reference). Before start().
    void set_tls(ssl_ctx_st *ctx);
    // Starts the loop and the slow-request threads. false + error when a thread cannot start.
    bool start(std::string &error);
    // Closes the listener and every connection, waits for running slow
    // handlers to return, joins every thread. Idempotent.
    void stop();

    bool alive() const { return running_.load(std::memory_order_acquire); }
    std::uint64_t requests_served() const { return served_.load(std::memory_order_relaxed); }
    std::size_t connections() const { return open_.load(std::memory_order_relaxed); }
    std::uint64_t evicted() const { return evicted_.load(std::memory_order_relaxed); }

  private:
    struct Conn;
    struct Job {
        std::uint64_t conn_id;
        EventRequest req;
    };
    struct Done {
        std::uint64_t conn_id;
        EventReply reply;
    };

    void loop();
    void slow_worker();
    void accept_all(std::int64_t now);
    bool evict_one(std::uint64_t before_id, std::int64_t now, int min_age_ms);
    void on_readable(Conn &c, std::int64_t now);
    bool tls_pump(Conn &c);  // decrypt what the socket has into c.in; false: closed
    bool tls_send(Conn &c, const char *data, std::size_t len);  // encrypt and send now (handshake, 100 Continue)
    void tls_drain(Conn &c, std::string &to);  // what OpenSSL wants sent
    void try_parse(Conn &c, std::int64_t now);
    void respond(Conn &c, EventReply reply, std::int64_t now);
    void flush(Conn &c, std::int64_t now);
    void finish_request(Conn &c, std::int64_t now);
    void close_conn(std::uint64_t id);
    void watch(Conn &c, std::uint32_t events);
    void expire(std::int64_t now);
    void collect_done(std::int64_t now);

    EventServerLimits limits_;
    Handler handler_;
    Predicate is_slow_;
    ssl_ctx_st *tls_ = nullptr;
    int listen_fd_ = -1;
    bool listener_paused_ = false;  // out of fds with nothing to evict: accept again after a pause
    std::int64_t listener_resume_ = 0;
    int epoll_fd_ = -1;
    int wake_fd_ = -1;
    int port_ = 0;
    std::thread loop_thread_;
    std::vector<std::thread> workers_;
    std::atomic<bool> stopping_{false};
    std::atomic<bool> running_{false};
    std::atomic<std::uint64_t> served_{0};
    std::atomic<std::size_t> open_{0};
    std::atomic<std::uint64_t> evicted_{0};

    // loop thread only
    std::map<std::uint64_t, std::unique_ptr<Conn>> conns_;  // by id (ids grow: oldest first)
    std::map<int, std::uint64_t> by_fd_;
    std::uint64_t next_id_ = 1;

    std::mutex mu_;  // jobs_, done_
    std::condition_variable cv_;
    std::deque<Job> jobs_;
    std::vector<Done> done_;
};

}  // namespace pgha
