#include "core/no_postgres.hpp"

#include "http/api_server.hpp"

#include "core/cluster.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <vector>

#include <httplib.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

namespace pgha {

namespace {

std::int64_t steady_now_ms() {
    using namespace std::chrono;
    return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
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

std::string lower(std::string s) {
    for (char &c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

// restapi.verify_client -> SSL_CTX_set_verify() mode; -1 for an unknown value.
int verify_mode(const std::string &verify_client) {
    const std::string v = lower(verify_client);
    if (v.empty() || v == "none") return SSL_VERIFY_NONE;
    if (v == "optional") return SSL_VERIFY_PEER;
    if (v == "required") return SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    return -1;
}

// The thread's OpenSSL error queue as text (and empties it).
std::string openssl_errors() {
    std::string out;
    while (unsigned long e = ERR_get_error()) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof buf);
        if (!out.empty()) out += "; ";
        out += buf;
    }
    return out;
}

// Names the file and the errno when it cannot be opened (OpenSSL's own error
// for a missing file is cryptic). O_NONBLOCK: a FIFO must not hang start().
bool check_readable(const char *what, const std::string &path, std::string &error) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        error = std::string("restapi ") + what + " \"" + path + "\" is not readable: " + std::strerror(errno);
        return false;
    }
    ::close(fd);
    return true;
}

// PEM password callback: the keyfile_password, never a terminal prompt
// (OpenSSL's default callback would read /dev/tty).
int key_password_callback(char *buf, int size, int /*rwflag*/, void *userdata) {
    const auto *password = static_cast<const std::string *>(userdata);
    if (!password || size <= 0) return 0;
    const int n = static_cast<int>(std::min<std::size_t>(password->size(), static_cast<std::size_t>(size)));
    std::memcpy(buf, password->data(), static_cast<std::size_t>(n));
    return n;
}

// Configures the SSL_CTX cpp-httplib's SSLServer creates, the way Patroni's
// ssl.create_default_context(Purpose.CLIENT_AUTH, cafile) + load_cert_chain()
// + verify_mode do.
bool setup_tls_context(SSL_CTX &ctx, const ApiServerOptions &o, std::string &error) {
    ERR_clear_error();
    auto fail = [&](const std::string &what) {
        error = what;
        const std::string detail = openssl_errors();
        if (!detail.empty()) error += " (" + detail + ")";
        return false;
    };
    const int mode = verify_mode(o.verify_client);
    if (mode < 0) {
        error = "invalid restapi verify_client \"" + o.verify_client + "\" (expected none, optional or required)";
        return false;
    }
    SSL_CTX_set_min_proto_version(&ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(&ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                  SSL_OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION);
    // Needed for session resumption when client certificates are verified
    // (without it OpenSSL fails the resumed handshake).
    static const unsigned char kSessionContext[] = "pg_ha";
    SSL_CTX_set_session_id_context(&ctx, kSessionContext, sizeof kSessionContext - 1);
    if (!o.ciphers.empty() && SSL_CTX_set_cipher_list(&ctx, o.ciphers.c_str()) != 1)
        return fail("invalid restapi ciphers \"" + o.ciphers + "\"");

    if (!check_readable("certfile", o.certfile, error)) return false;
    if (SSL_CTX_use_certificate_chain_file(&ctx, o.certfile.c_str()) != 1)
        return fail("could not load a PEM certificate from restapi certfile \"" + o.certfile + "\"");
    const std::string &key = o.keyfile.empty() ? o.certfile : o.keyfile;
    if (!o.keyfile.empty() && !check_readable("keyfile", o.keyfile, error)) return false;
    std::string password = o.keyfile_password;
    SSL_CTX_set_default_passwd_cb(&ctx, key_password_callback);
    SSL_CTX_set_default_passwd_cb_userdata(&ctx, &password);
    const int key_ok = SSL_CTX_use_PrivateKey_file(&ctx, key.c_str(), SSL_FILETYPE_PEM);
    SSL_CTX_set_default_passwd_cb_userdata(&ctx, nullptr);
    if (!password.empty()) OPENSSL_cleanse(&password[0], password.size());
    if (key_ok != 1 && ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH)
        return fail("the private key in \"" + key + "\" does not match the certificate in \"" + o.certfile + "\"");
    if (key_ok != 1)
        return fail("could not load the private key from restapi " +
                    std::string(o.keyfile.empty() ? "certfile" : "keyfile") + " \"" + key + "\"" +
                    (o.keyfile_password.empty() ? std::string() : std::string(" (wrong keyfile_password?)")));
    if (SSL_CTX_check_private_key(&ctx) != 1)
        return fail("the private key in \"" + key + "\" does not match the certificate in \"" + o.certfile + "\"");

    if (!o.cafile.empty()) {
        if (!check_readable("cafile", o.cafile, error)) return false;
        if (SSL_CTX_load_verify_locations(&ctx, o.cafile.c_str(), nullptr) != 1)
            return fail("could not load CA certificates from restapi cafile \"" + o.cafile + "\"");
        // Tell clients which CAs we accept, so they pick the right certificate.
        if (STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o.cafile.c_str()))
            SSL_CTX_set_client_CA_list(&ctx, names);  // takes ownership
        ERR_clear_error();
    } else if (mode != SSL_VERIFY_NONE) {
        // Python's create_default_context() without cafile: the system CAs.
        SSL_CTX_set_default_verify_paths(&ctx);
        ERR_clear_error();
    }
    SSL_CTX_set_verify(&ctx, mode, nullptr);
    return true;
}

ApiAccessPolicy access_policy(const ApiServerOptions &o) {
    ApiAccessPolicy p;
    p.username = o.auth_username;
    p.password = o.auth_password;
    p.auth_for_reads = o.auth_for_reads;
    p.allow_unauthenticated = o.allow_unauthenticated;
    p.allowlist_include_members = o.allowlist_include_members;
    std::string ignored;  // start() reports it
    if (!parse_allowlist(o.allowlist, p.allowlist, ignored)) {
        p.allowlist.clear();
        p.allowlist_include_members = true;  // fail closed: only members (start() refuses anyway)
    }
    const int mode = verify_mode(o.verify_client);
    p.client_cert_required = !o.certfile.empty() && mode > 0 && (mode & SSL_VERIFY_PEER);
    return p;
}

// Patroni resolves the members' api_url hosts with getaddrinfo: literal
// addresses as they are, names to every address they have.
std::vector<std::string> resolve_hosts(const std::vector<std::string> &hosts) {
    std::vector<std::string> out;
    for (const std::string &h : hosts) {
        if (parse_ip_network(h)) {
            out.push_back(h);
            continue;
        }
        addrinfo hints{};
        hints.ai_socktype = SOCK_STREAM;
        addrinfo *res = nullptr;
        if (::getaddrinfo(h.c_str(), nullptr, &hints, &res) != 0) continue;
        for (addrinfo *a = res; a; a = a->ai_next) {
            char buf[INET6_ADDRSTRLEN] = {};
            const void *src = a->ai_family == AF_INET
                                  ? static_cast<const void *>(&reinterpret_cast<sockaddr_in *>(a->ai_addr)->sin_addr)
                                  : static_cast<const void *>(&reinterpret_cast<sockaddr_in6 *>(a->ai_addr)->sin6_addr);
            if ((a->ai_family == AF_INET || a->ai_family == AF_INET6) && ::inet_ntop(a->ai_family, src, buf, sizeof buf))
                out.push_back(buf);
        }
        ::freeaddrinfo(res);
    }
    return out;
}

// The listening socket of any httplib::Server (SSLServer included) is a
// protected member; a pointer to member formed in a derived class reaches it.
struct ListenerAccess : httplib::Server {
    static std::atomic<socket_t> &sock(httplib::Server &s) { return s.*(&ListenerAccess::svr_sock_); }
};

}  // namespace

// The cpp-httplib server (plain or TLS) plus access to its listening socket.
class ApiServer::Server {
  public:
    explicit Server(std::unique_ptr<httplib::Server> server) : http(std::move(server)) {}
    int listening_fd() const { return ListenerAccess::sock(*http); }
    // Closes the bound socket of a server whose listen loop never ran.
    void close_unused_listener() {
        socket_t s = ListenerAccess::sock(*http).exchange(INVALID_SOCKET);
        if (s != INVALID_SOCKET) ::close(s);
    }
    bool is_running() const { return http->is_running(); }
    void stop() { http->stop(); }

    std::unique_ptr<httplib::Server> http;
};

ApiServer::ApiServer(ApiServerOptions options) noexcept : options_(std::move(options)) {
    try {
        access_ = access_policy(options_);
    } catch (...) {
        // bad_alloc copying two strings: fail closed (start() would fail too)
        access_.username = "\x01";
        access_.auth_for_reads = true;
    }
}

ApiServer::~ApiServer() { stop(); }

bool ApiServer::set_management_hook(ManagementHook hook) noexcept {
    std::lock_guard<std::mutex> lock(lifecycle_mu_);
    if (server_ || events_) return false;  // handlers read mgmt_ without a lock
    mgmt_ = std::move(hook);
    return true;
}

bool ApiServer::parse_listen_address(const std::string &listen, std::string &host, int &port, std::string &error) {
    std::string why;
    if (parse_host_port(listen, HostPortForm::Listen, host, port, why)) return true;
    error = "invalid listen address \"" + listen + "\": " + why + " (expected host:port, e.g. 0.0.0.0:8008 or [::]:8008)";
    return false;
}

bool ApiServer::alive() const noexcept {
    if (events_) return events_->alive();
    return port_.load(std::memory_order_relaxed) != 0 && !listener_done_.load(std::memory_order_acquire);
}

// One request as both transports hand it over.
struct ApiServer::Incoming {
    std::string method;
    std::string path;
    std::multimap<std::string, std::string> query;
    std::string body;
    const std::string *authorization = nullptr;  // nullptr: absent; "" when repeated (malformed)
    bool client_cert_verified = false;
    std::string remote_addr;
};

struct ApiServer::Outgoing {
    HttpReply reply;
    bool challenge = false;  // add WWW-Authenticate: kBasicAuthChallenge
};

ApiServer::Outgoing ApiServer::answer(const Incoming &in) noexcept {
    Outgoing out;
    try {
        // Patroni's check_access, before anything else looks at the request.
        std::vector<std::string> member_addrs;
        if (access_.allowlist_include_members && !is_safe_method(in.method)) {
            if (const SnapshotPtr snap = box_->get()) member_addrs = resolve_hosts(member_api_hosts(*snap));
        }
        if (auto denied = check_access(access_, in.method, in.authorization, in.client_cert_verified, in.remote_addr,
                                       member_addrs)) {
            out.challenge = denied->status == 401;
            out.reply = std::move(*denied);
            served_.fetch_add(1, std::memory_order_relaxed);
            return out;
        }
        HttpRequestView view;
        view.method = in.method;
        view.path = in.path;
        view.query = in.query;
        if (is_body_method(in.method)) view.body = in.body;
        const SnapshotPtr snap = box_->get();
        out.reply = handle_request(snap.get(), view, steady_now_ms(), mgmt_);
    } catch (...) {
        out.reply = HttpReply{500, std::string(), std::string()};
    }
    served_.fetch_add(1, std::memory_order_relaxed);
    return out;
}

void ApiServer::serve(const httplib::Request &req, httplib::Response &res) noexcept {
    try {
        Incoming in;
        in.method = req.method;
        in.path = req.path;
        in.query = std::multimap<std::string, std::string>(req.params.begin(), req.params.end());
        if (is_body_method(req.method)) in.body = req.body;
        std::string auth_value;  // stays "" (malformed) when the header is repeated
        if (const std::size_t n = req.get_header_value_count("Authorization")) {
            if (n == 1) auth_value = req.get_header_value("Authorization");
            in.authorization = &auth_value;
        }
        if (req.ssl)
            in.client_cert_verified =
                // const SSL* up to cpp-httplib 0.2x, an opaque TLS session pointer in 0.41 (Debian sid).
                SSL_get0_peer_certificate(static_cast<const SSL *>(req.ssl)) != nullptr &&
                SSL_get_verify_result(static_cast<const SSL *>(req.ssl)) == X509_V_OK;
        in.remote_addr = req.remote_addr;
        Outgoing out = answer(in);
        res.status = out.reply.status;
        if (out.challenge) res.set_header("WWW-Authenticate", kBasicAuthChallenge);
        if (!out.reply.content_type.empty()) res.set_header("Content-Type", out.reply.content_type);
        res.body = std::move(out.reply.body);
    } catch (...) {
        res.status = 500;
        res.body.clear();
    }
}

std::size_t ApiServer::connections() const noexcept { return events_ ? events_->connections() : 0; }

bool ApiServer::start_events(const std::string &host, int port, const std::string &listen, std::string &error) {
    const ApiServerOptions &o = options_;
    EventServerLimits l;
    l.head_deadline_ms = o.head_deadline_ms > 0 ? o.head_deadline_ms : 1000;
    l.request_deadline_ms = std::max(l.head_deadline_ms, o.read_timeout_s * 1000);
    l.write_deadline_ms = std::max(1000, o.write_timeout_s * 1000);
    l.keep_alive_idle_ms = std::max(0, o.keep_alive_timeout_s * 1000);
    l.keep_alive_max_requests = static_cast<int>(std::min<std::size_t>(
        std::max<std::size_t>(1, o.keep_alive_max_count), 1000000));
    l.max_header_bytes = o.max_header_bytes;
    l.max_headers = o.max_headers;
    l.max_body_bytes = o.payload_max_bytes;
    l.max_connections = o.max_connections;
    l.slow_threads = o.management_threads;
    l.slow_queue = o.management_queue;
    auto handler = [this](const EventRequest &req) {
        Incoming in;
        in.method = req.method;
        in.path = req.path;
        in.query = req.query;
        in.body = req.body;
        std::string auth_value;
        if (const std::size_t n = req.header_count("authorization")) {
            if (n == 1) auth_value = *req.header("authorization");
            in.authorization = &auth_value;
        }
        in.remote_addr = req.remote_addr;
        Outgoing out = answer(in);
        EventReply r;
        r.status = out.reply.status;
        r.content_type = std::move(out.reply.content_type);
        r.body = std::move(out.reply.body);
        if (out.challenge) r.headers.emplace_back("WWW-Authenticate", kBasicAuthChallenge);
        return r;
    };
    // The management methods wait for the worker's loop: off the event loop.
    auto slow = [](const EventRequest &req) { return !is_safe_method(req.method); };
    auto events = std::make_unique<EventServer>(l, handler, slow);
    if (!events->bind(host, port, o.listen_backlog, listen_socket_options, error)) {
        error = "could not bind the HTTP API to " + listen + ": " + error;
        return false;
    }
    {
        ScopedSignalBlock block;  // the loop and the management threads never get a signal
        if (!block.ok()) {
            error = "could not block signals for the HTTP API threads";
            return false;
        }
        if (!events->start(error)) return false;
    }
    port_.store(events->port());
    events_ = std::move(events);
    return true;
}

bool ApiServer::start(const std::string &listen, const SnapshotBox &box, std::string &error) noexcept {
    std::lock_guard<std::mutex> lock(lifecycle_mu_);
    try {
        if (server_ || events_) {
            error = "HTTP API already started on port " + std::to_string(port_.load());
            return false;
        }
        std::string host;
        int port = 0;
        if (!parse_listen_address(listen, host, port, error)) return false;
        {
            std::vector<IpNetwork> nets;
            std::string why;
            if (!parse_allowlist(options_.allowlist, nets, why)) {
                error = "invalid restapi allowlist: " + why;
                return false;
            }
        }

        box_ = &box;
        listener_done_.store(false);
        served_.store(0);
        const ApiServerOptions &o = options_;
        if (o.certfile.empty()) {
            if (verify_mode(o.verify_client) < 0) {
                error = "invalid restapi verify_client \"" + o.verify_client + "\" (expected none, optional or required)";
                return false;
            }
            if (start_events(host, port, listen, error)) return true;
            box_ = nullptr;
            return false;
        }
        std::unique_ptr<Server> wrapper;
        if (o.certfile.empty()) {
            if (verify_mode(o.verify_client) < 0) {
                error = "invalid restapi verify_client \"" + o.verify_client + "\" (expected none, optional or required)";
                return false;
            }
            wrapper = std::make_unique<Server>(std::make_unique<httplib::Server>());
        } else {
            std::string tls_error;
            auto tls = std::make_unique<httplib::SSLServer>(
                [&](SSL_CTX &ctx) { return setup_tls_context(ctx, o, tls_error); });
            if (!tls->is_valid()) {
                if (tls_error.empty()) tls_error = "could not create the TLS context: " + openssl_errors();
                error = "could not serve HTTPS on " + listen + ": " + tls_error;
                return false;
            }
            wrapper = std::make_unique<Server>(std::move(tls));
        }
        httplib::Server *server = wrapper->http.get();
        const std::size_t threads = o.threads ? o.threads : 1;
        server->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
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
        if (o.listen_backlog > 0) ::listen(wrapper->listening_fd(), o.listen_backlog);

        Server *raw = wrapper.get();
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
                        raw->http->listen_after_bind();
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
        server_ = std::move(wrapper);
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
    if (events_) {
        events_->stop();
        events_.reset();
        port_.store(0);
        box_ = nullptr;
        return;
    }
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
