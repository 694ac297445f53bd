#include "core/no_postgres.hpp"

#include "http/api_server.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include <httplib.h>

namespace pgha {

namespace {

std::int64_t steady_now_ms() {
    using namespace std::chrono;
    return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
}

std::int64_t epoch_now_s() {
    using namespace std::chrono;
    return duration_cast<seconds>(system_clock::now().time_since_epoch()).count();
}

// Socket options for the listening socket; Linux copies TCP_NODELAY and the
// keepalive settings to every accepted connection.
void listen_socket_options(socket_t sock) {
    int yes = 1, no = 0;
    // SO_REUSEADDR only: cpp-httplib's default also sets SO_REUSEPORT, which
    // would let a second server bind the same port silently.
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    ::setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
    // Patroni enables TCP keepalive on API connections (idle 10 s, 3 probes).
    ::setsockopt(sock, SOL_SOCKET, SO_KEEPALIVE, &yes, sizeof yes);
    int idle = 10, intvl = 10, cnt = 3;
    ::setsockopt(sock, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    ::setsockopt(sock, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    ::setsockopt(sock, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    int domain = 0;
    socklen_t len = sizeof domain;
    if (::getsockopt(sock, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 && domain == AF_INET6)
        ::setsockopt(sock, IPPROTO_IPV6, IPV6_V6ONLY, &no, sizeof no);  // "::" serves IPv4 too
    int flags = ::fcntl(sock, F_GETFD);
    if (flags >= 0) ::fcntl(sock, F_SETFD, flags | FD_CLOEXEC);  // not inherited by children
}

// Blocks every signal in the calling thread for its lifetime; threads created
// meanwhile inherit the full mask.
class ScopedSignalBlock {
  public:
    ScopedSignalBlock() {
        sigset_t all;
        sigfillset(&all);
        ok_ = pthread_sigmask(SIG_BLOCK, &all, &old_) == 0;
    }
    ~ScopedSignalBlock() {
        if (ok_) pthread_sigmask(SIG_SETMASK, &old_, nullptr);
    }
    bool ok() const { return ok_; }
    ScopedSignalBlock(const ScopedSignalBlock &) = delete;
    ScopedSignalBlock &operator=(const ScopedSignalBlock &) = delete;

  private:
    sigset_t old_;
    bool ok_ = false;
};

bool is_body_method(const std::string &m) {
    return m == "POST" || m == "PUT" || m == "PATCH" || m == "DELETE" || m == "PRI";
}

}  // namespace

// httplib::Server with access to its listening socket (protected member).
class ApiServer::Server : public httplib::Server {
  public:
    int listening_fd() const { return svr_sock_; }
    // Closes the bound socket of a server whose listen loop never ran.
    void close_unused_listener() {
        socket_t s = svr_sock_.exchange(INVALID_SOCKET);
        if (s != INVALID_SOCKET) ::close(s);
    }
};

ApiServer::ApiServer(ApiServerOptions options) noexcept : options_(options) {}

ApiServer::~ApiServer() { stop(); }

bool ApiServer::set_management_hook(ManagementHook hook) noexcept {
    std::lock_guard<std::mutex> lock(lifecycle_mu_);
    if (server_) return false;  // handlers read mgmt_ without a lock
    mgmt_ = std::move(hook);
    return true;
}

bool ApiServer::parse_listen_address(const std::string &listen, std::string &host, int &port, std::string &error) {
    auto fail = [&](const std::string &why) {
        error = "invalid listen address \"" + listen + "\": " + why + " (expected host:port, e.g. 0.0.0.0:8008 or [::]:8008)";
        return false;
    };
    std::string h, p;
    if (!listen.empty() && listen[0] == '[') {
        auto close = listen.find(']');
        if (close == std::string::npos) return fail("missing ']'");
        if (close + 1 >= listen.size() || listen[close + 1] != ':') return fail("missing port after ']'");
        h = listen.substr(1, close - 1);
        p = listen.substr(close + 2);
        if (h.empty()) return fail("empty IPv6 address");
    } else {
        auto colon = listen.rfind(':');
        if (colon == std::string::npos) return fail("missing port");
        h = listen.substr(0, colon);
        p = listen.substr(colon + 1);
    }
    if (p.empty() || p.size() > 5) return fail("bad port");
    for (char c : p)
        if (c < '0' || c > '9') return fail("bad port");
    const int v = std::stoi(p);
    if (v > 65535) return fail("port out of range");
    for (char c : h)
        if (c == ' ' || c == '/' || c == '[' || c == ']') return fail("bad host");
    host = (h.empty() || h == "*") ? std::string() : h;
    port = v;
    return true;
}

bool ApiServer::alive() const noexcept {
    return port_.load(std::memory_order_relaxed) != 0 && !listener_done_.load(std::memory_order_acquire);
}

void ApiServer::serve(const httplib::Request &req, httplib::Response &res) noexcept {
    try {
        HttpRequestView view;
        view.method = req.method;
        view.path = req.path;
        view.query = req.params;
        if (is_body_method(req.method)) view.body = req.body;
        const SnapshotPtr snap = box_->get();
        HttpReply reply = handle_request(snap.get(), view, steady_now_ms(), epoch_now_s(), mgmt_);
        res.status = reply.status;
        if (!reply.content_type.empty()) res.set_header("Content-Type", reply.content_type);
        res.body = std::move(reply.body);
    } catch (...) {
        res.status = 500;
        res.body.clear();
    }
    served_.fetch_add(1, std::memory_order_relaxed);
}

bool ApiServer::start(const std::string &listen, const SnapshotBox &box, std::string &error) noexcept {
    std::lock_guard<std::mutex> lock(lifecycle_mu_);
    try {
        if (server_) {
            error = "HTTP API already started on port " + std::to_string(port_.load());
            return false;
        }
        std::string host;
        int port = 0;
        if (!parse_listen_address(listen, host, port, error)) return false;

        box_ = &box;
        listener_done_.store(false);
        served_.store(0);
        auto server = std::make_unique<Server>();
        const ApiServerOptions o = options_;
        server->new_task_queue = [o] { return new httplib::ThreadPool(o.threads ? o.threads : 1); };
        server->set_keep_alive_max_count(o.keep_alive_max_count ? o.keep_alive_max_count : 1);
        server->set_keep_alive_timeout(o.keep_alive_timeout_s);
        server->set_read_timeout(o.read_timeout_s, 0);
        server->set_write_timeout(o.write_timeout_s, 0);
        server->set_payload_max_length(o.payload_max_bytes);
        server->set_tcp_nodelay(true);
        server->set_socket_options(listen_socket_options);
        // One handler for every request that carries no body: no regex routing.
        server->set_pre_routing_handler([this](const httplib::Request &req, httplib::Response &res) {
            // A request that announces a body goes through the regular routes
            // below, after cpp-httplib has read (and size-checked) the body.
            // One without Content-Length/Transfer-Encoding has no body (cpp-httplib
            // would otherwise read a POST until the peer closes).
            if (is_body_method(req.method) &&
                (req.has_header("Content-Length") || req.has_header("Transfer-Encoding")))
                return httplib::Server::HandlerResponse::Unhandled;
            serve(req, res);
            return httplib::Server::HandlerResponse::Handled;
        });
        auto with_body = [this](const httplib::Request &req, httplib::Response &res) { serve(req, res); };
        server->Post(".*", with_body);
        server->Put(".*", with_body);
        server->Patch(".*", with_body);
        server->Delete(".*", with_body);
        server->set_exception_handler([](const httplib::Request &, httplib::Response &res, std::exception_ptr) {
            res.status = 500;
            res.set_content("{\"error\": \"internal error\"}", "application/json");
        });

        // Bind synchronously so the caller hears about a bad address or a port in use.
        auto try_bind = [&](const std::string &h) -> int {
            errno = 0;
            if (port == 0) return server->bind_to_any_port(h);
            return server->bind_to_port(h, port) ? port : -1;
        };
        int bound;
        int bind_errno = 0;
        if (host.empty()) {
            // All addresses: dual-stack "::" like Patroni, IPv4 when IPv6 is unavailable.
            bound = try_bind("::");
            if (bound < 0) {
                bind_errno = errno;
                if (bind_errno != EADDRINUSE) bound = try_bind("0.0.0.0");
            }
        } else {
            bound = try_bind(host);
        }
        if (bound < 0) {
            if (errno != 0) bind_errno = errno;
            error = "could not bind the HTTP API to " + listen;
            if (bind_errno != 0) error += std::string(": ") + std::strerror(bind_errno);
            else error += ": address not resolvable or not available";
            return false;
        }
        // cpp-httplib listens with a backlog of 5 (compiled in): a burst of
        // health checks would see dropped SYNs and 1 s retransmits. listen()
        // on a listening socket only updates the backlog.
        if (o.listen_backlog > 0) ::listen(server->listening_fd(), o.listen_backlog);

        Server *raw = server.get();
        {
            // The listener thread and the connection pool it creates inherit
            // this mask: no signal is ever delivered to them.
            ScopedSignalBlock block;
            if (!block.ok()) {
                raw->close_unused_listener();
                error = "could not block signals for the HTTP API threads";
                return false;
            }
            try {
                thread_ = std::thread([this, raw] {
                    try {
                        raw->listen_after_bind();
                    } catch (...) {
                        // e.g. std::system_error creating the thread pool
                    }
                    listener_done_.store(true, std::memory_order_release);
                });
            } catch (const std::exception &e) {
                raw->close_unused_listener();
                error = std::string("could not start the HTTP API thread: ") + e.what();
                return false;
            }
        }
        server_ = std::move(server);
        // Wait until the accept loop runs, so an immediate stop() is not lost
        // (httplib::Server::stop() does nothing before the loop started).
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (!server_->is_running() && !listener_done_.load(std::memory_order_acquire) &&
               std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(std::chrono::microseconds(200));
        if (!server_->is_running() && listener_done_.load(std::memory_order_acquire)) {
            thread_.join();
            server_->close_unused_listener();
            server_.reset();
            box_ = nullptr;
            error = "the HTTP API thread exited before listening on " + listen;
            return false;
        }
        port_.store(bound);
        return true;
    } catch (const std::exception &e) {
        error = std::string("could not start the HTTP API on ") + listen + ": " + e.what();
    } catch (...) {
        error = "could not start the HTTP API on " + listen;
    }
    return false;
}

void ApiServer::stop() noexcept {
    std::lock_guard<std::mutex> lock(lifecycle_mu_);
    if (!server_) return;
    try {
        // The accept loop may not have started yet; stop() before it would be lost.
        while (!server_->is_running() && !listener_done_.load(std::memory_order_acquire))
            std::this_thread::sleep_for(std::chrono::microseconds(200));
        server_->stop();
        if (thread_.joinable()) thread_.join();
        server_->close_unused_listener();
    } catch (...) {
        // join() failing would mean a logic error; nothing sensible to do here
    }
    server_.reset();
    port_.store(0);
    box_ = nullptr;
}

}  // namespace pgha
