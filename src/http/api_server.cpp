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
#include <cstring>
#include <map>
#include <vector>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

namespace pgha {

namespace {

// Socket options for the listening socket; Linux copies TCP_NODELAY and the
// keepalive settings to every accepted connection.
void listen_socket_options(int sock) {
    int yes = 1, no = 0;
    // SO_REUSEADDR only (not SO_REUSEPORT, which
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

// Configures the server SSL_CTX the way Patroni's
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

}  // namespace

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
    if (events_) return false;  // handlers read mgmt_ without a lock
    mgmt_ = std::move(hook);
    return true;
}

bool ApiServer::parse_listen_address(const std::string &listen, std::string &host, int &port, std::string &error) {
    std::string why;
    if (parse_host_port(listen, HostPortForm::Listen, host, port, why)) return true;
    error = "invalid listen address \"" + listen + "\": " + why + " (expected host:port, e.g. 0.0.0.0:8008 or [::]:8008)";
    return false;
}

bool ApiServer::alive() const noexcept { return events_ && events_->alive(); }

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
        std::shared_ptr<const std::string> body;
        if (snap) {
            std::lock_guard<std::mutex> lk(body_mu_);
            if (body_snap_ != snap) {
                body_ = std::make_shared<const std::string>(status_body_text(*snap));
                body_snap_ = snap;
            }
            body = body_;
        }
        out.reply = handle_request(snap.get(), view, snapshot_clock_ms(), mgmt_, body.get());
    } catch (...) {
        out.reply = HttpReply{500, std::string(), std::string()};
    }
    served_.fetch_add(1, std::memory_order_relaxed);
    return out;
}

std::size_t ApiServer::connections() const noexcept { return events_ ? events_->connections() : 0; }

bool ApiServer::start_events(const std::string &host, int port, const std::string &listen, ssl_ctx_st *tls,
                             std::string &error) {
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
        in.client_cert_verified = req.client_cert_verified;
        Outgoing out = answer(in);
        EventReply r;
        r.status = out.reply.status;
        r.content_type = std::move(out.reply.content_type);
        r.body = std::move(out.reply.body);
        r.on_sent = std::move(out.reply.on_sent);
        if (out.challenge) r.headers.emplace_back("WWW-Authenticate", kBasicAuthChallenge);
        return r;
    };
    // The management methods wait for the worker's loop: off the event loop.
    auto slow = [](const EventRequest &req) { return !is_safe_method(req.method); };
    auto events = std::make_unique<EventServer>(l, handler, slow);
    events->set_tls(tls);
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
        if (events_) {
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

        if (verify_mode(options_.verify_client) < 0) {
            error = "invalid restapi verify_client \"" + options_.verify_client +
                    "\" (expected none, optional or required)";
            return false;
        }
        // HTTPS: the same event loop, with a TLS context configured the way
        // Patroni configures its ssl.SSLContext.
        std::unique_ptr<SSL_CTX, void (*)(SSL_CTX *)> tls(nullptr, SSL_CTX_free);
        if (!options_.certfile.empty()) {
            tls.reset(SSL_CTX_new(TLS_server_method()));
            std::string tls_error;
            if (!tls) tls_error = "could not create the TLS context: " + openssl_errors();
            else if (!setup_tls_context(*tls, options_, tls_error) && tls_error.empty())
                tls_error = "could not create the TLS context: " + openssl_errors();
            if (!tls_error.empty()) {
                error = "could not serve HTTPS on " + listen + ": " + tls_error;
                return false;
            }
        }
        box_ = &box;
        served_.store(0);
        if (start_events(host, port, listen, tls.get(), error)) return true;
        box_ = nullptr;
        return false;
    } catch (const std::exception &e) {
        error = std::string("could not start the HTTP API on ") + listen + ": " + e.what();
    } catch (...) {
        error = "could not start the HTTP API on " + listen;
    }
    return false;
}

void ApiServer::stop() noexcept {
    std::lock_guard<std::mutex> lock(lifecycle_mu_);
    if (!events_) return;
    events_->stop();
    events_.reset();
    port_.store(0);
    box_ = nullptr;
}

}  // namespace pgha
