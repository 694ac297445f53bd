// The HTTP API's event loop: one epoll thread owns every connection (accept,
// parse, TLS, write, deadlines, eviction) and hands management requests to a
// bounded pool. Kept in one file on purpose (a little over 900 lines): the
// connection state (Conn) and its transitions are private to this loop, and
// splitting parsing or TLS out would expose Conn to other translation units.
// The request-head parser, the one part usable alone, is already separate in
// the header (parse_request_head) and fuzzed by tests/fuzz/fuzz_health_api.cpp.
#include "core/no_postgres.hpp"

#include "http/event_server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>


namespace pgha {

namespace {

// %XX decoding of a request target (our own: cpp-httplib's detail:: helpers
// changed between 0.11 and the versions in newer Debian releases).
std::string percent_decode(const std::string &s, bool plus_is_space) {
    auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
        const char c = s[i];
        if (c == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
            out += static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2]));
            i += 2;
        } else if (c == '+' && plus_is_space) {
            out += ' ';
        } else {
            out += c;
        }
    }
    return out;
}

constexpr std::uint64_t kListenerId = 0;
constexpr std::uint64_t kWakeId = ~std::uint64_t(0);

std::int64_t now_ms() {
    using namespace std::chrono;
    return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
}

const char *reason(int status) {
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 417: return "Expectation Failed";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Status";
    }
}

std::string lower(std::string s) {
    for (char &c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

bool is_token_char(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

std::string trim_ows(const std::string &s) {
    std::size_t b = 0, e = s.size();
    while (b < e && (s[b] == ' ' || s[b] == '\t')) ++b;
    while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t')) --e;
    return s.substr(b, e - b);
}

bool has_token(const std::string &value, const char *token) {
    // comma-separated list, case-insensitive
    std::string v = lower(value);
    std::size_t pos = 0;
    while (pos <= v.size()) {
        std::size_t comma = v.find(',', pos);
        if (comma == std::string::npos) comma = v.size();
        if (trim_ows(v.substr(pos, comma - pos)) == token) return true;
        pos = comma + 1;
    }
    return false;
}

}  // namespace

std::size_t EventRequest::header_count(const std::string &lower_name) const {
    return static_cast<std::size_t>(std::count_if(headers.begin(), headers.end(),
                                                  [&](const auto &h) { return h.first == lower_name; }));
}

const std::string *EventRequest::header(const std::string &lower_name) const {
    for (const auto &h : headers)
        if (h.first == lower_name) return &h.second;
    return nullptr;
}

int parse_request_head(const std::string &head, std::size_t max_headers, EventRequest &out) {
    std::size_t pos = 0;
    auto next_line = [&](std::string &line) {
        if (pos >= head.size()) return false;
        std::size_t eol = head.find('\n', pos);
        if (eol == std::string::npos) eol = head.size();
        line = head.substr(pos, eol - pos);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        pos = eol + 1;
        return true;
    };
    std::string line;
    // RFC 9112 2.2: ignore empty lines before the request line
    do {
        if (!next_line(line)) return 400;
    } while (line.empty());
    const std::size_t sp1 = line.find(' ');
    const std::size_t sp2 = sp1 == std::string::npos ? sp1 : line.find(' ', sp1 + 1);
    if (sp1 == std::string::npos || sp2 == std::string::npos || line.find(' ', sp2 + 1) != std::string::npos)
        return 400;
    out.method = line.substr(0, sp1);
    out.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    const std::string version = line.substr(sp2 + 1);
    if (out.method.empty() || !std::all_of(out.method.begin(), out.method.end(), is_token_char)) return 400;
    if (out.target.empty() || out.target.front() != '/') return 400;
    if (out.target.size() > 8192) return 414;  // as cpp-httplib
    for (char c : out.target)
        if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return 400;
    if (version.size() != 8 || version.compare(0, 7, "HTTP/1.") != 0 || !std::isdigit((unsigned char)version[7]))
        return version.compare(0, 5, "HTTP/") == 0 ? 505 : 400;
    out.minor_version = version[7] - '0';

    while (next_line(line)) {
        if (line.empty()) break;
        if (out.headers.size() >= max_headers) return 431;
        if (line.front() == ' ' || line.front() == '\t') return 400;  // obsolete line folding
        const std::size_t colon = line.find(':');
        if (colon == std::string::npos || colon == 0) return 400;
        std::string name = line.substr(0, colon);
        if (!std::all_of(name.begin(), name.end(), is_token_char)) return 400;
        std::string value = trim_ows(line.substr(colon + 1));
        for (char c : value)
            if (c == '\0' || c == '\r' || c == '\n') return 400;
        out.headers.emplace_back(lower(std::move(name)), std::move(value));
    }

    const std::size_t q = out.target.find('?');
    out.path = percent_decode(out.target.substr(0, q), false);
    if (q != std::string::npos) {
        // key=value pairs split on '&' ('+' is a space in them); pairs without
        // a key are dropped, as cpp-httplib does.
        const std::string query = out.target.substr(q + 1);
        std::size_t start = 0;
        while (start <= query.size()) {
            std::size_t amp = query.find('&', start);
            if (amp == std::string::npos) amp = query.size();
            const std::string pair = query.substr(start, amp - start);
            const std::size_t eq = pair.find('=');
            std::string key = pair.substr(0, eq);
            std::string val = eq == std::string::npos ? std::string() : pair.substr(eq + 1);
            const std::size_t eq2 = val.find('=');
            if (eq2 != std::string::npos) val.resize(eq2);  // "a=b=c": cpp-httplib keeps "b"
            if (!key.empty()) out.query.emplace(percent_decode(key, true), percent_decode(val, true));
            start = amp + 1;
        }
    }
    return 0;
}

// ---- connections ------------------------------------------------------------------

struct EventServer::Conn {
    enum class State { Head, Body, Busy, Writing };
    std::uint64_t id = 0;
    int fd = -1;
    std::string remote;
    State state = State::Head;
    std::string in;
    std::string out;
    std::size_t out_off = 0;
    std::int64_t deadline = 0;       // of the current phase
    std::int64_t request_start = 0;  // first byte of the current request (0: none yet)
    std::int64_t accepted_at = 0;
    int requests = 0;
    bool close_after = false;
    EventRequest req;
    std::size_t body_len = 0;
    std::uint32_t events = 0;
    std::function<void()> on_sent;  // of the reply being written
    SSL *ssl = nullptr;  // TLS: owns the two memory BIOs below
    BIO *rbio = nullptr;  // bytes from the socket, for OpenSSL to decrypt
    BIO *wbio = nullptr;  // bytes OpenSSL wants sent

    Conn() = default;
    Conn(const Conn &) = delete;
    Conn &operator=(const Conn &) = delete;
    ~Conn() {
        if (ssl) SSL_free(ssl);
        sent();  // closed before (or after) the reply was written: nobody waits any longer
    }
    void sent() {
        if (!on_sent) return;
        auto f = std::move(on_sent);
        on_sent = nullptr;
        f();
    }
};

namespace {

// Sends all of `data` now or reports that it could not (a full socket buffer
// during a handshake or a 100 Continue: the peer is not reading).
bool send_now(int fd, const std::string &data) {
    std::size_t off = 0;
    while (off < data.size()) {
        const ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += static_cast<std::size_t>(n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        return false;
    }
    return true;
}

}  // namespace

void EventServer::set_tls(ssl_ctx_st *ctx) {
    if (ctx) SSL_CTX_up_ref(ctx);
    if (tls_) SSL_CTX_free(tls_);
    tls_ = ctx;
}

void EventServer::tls_drain(Conn &c, std::string &to) {
    char buf[16 * 1024];
    for (;;) {
        const int n = BIO_read(c.wbio, buf, sizeof buf);
        if (n <= 0) break;
        to.append(buf, static_cast<std::size_t>(n));
    }
}

bool EventServer::tls_send(Conn &c, const char *data, std::size_t len) {
    if (len > 0 && SSL_write(c.ssl, data, static_cast<int>(len)) <= 0) {
        ERR_clear_error();
        return false;
    }
    std::string raw;
    tls_drain(c, raw);
    return send_now(c.fd, raw);
}

bool EventServer::tls_pump(Conn &c) {
    char buf[16 * 1024];
    const std::size_t cap = limits_.max_header_bytes + limits_.max_body_bytes + 4;
    bool peer_closed = false;
    // Raw bytes: never more buffered than one request can be (plus a record).
    for (int round = 0; round < 8 && static_cast<std::size_t>(BIO_ctrl_pending(c.rbio)) < cap + sizeof buf;
         ++round) {
        const ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
        if (n > 0) {
            if (BIO_write(c.rbio, buf, static_cast<int>(n)) != static_cast<int>(n)) return false;
            if (static_cast<std::size_t>(n) < sizeof buf) break;
            continue;
        }
        if (n == 0) {
            peer_closed = true;
            break;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        return false;
    }
    std::string raw;
    bool ok = true;
    if (!SSL_is_init_finished(c.ssl)) {
        const int r = SSL_do_handshake(c.ssl);
        if (r != 1) {
            const int e = SSL_get_error(c.ssl, r);
            ok = e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
        }
    }
    while (ok && SSL_is_init_finished(c.ssl) && c.in.size() < cap) {
        const int want = static_cast<int>(std::min(sizeof buf, cap - c.in.size()));
        const int r = SSL_read(c.ssl, buf, want);
        if (r > 0) {
            c.in.append(buf, static_cast<std::size_t>(r));
            continue;
        }
        const int e = SSL_get_error(c.ssl, r);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) ok = false;  // close_notify or an error
        break;
    }
    ERR_clear_error();
    tls_drain(c, raw);  // handshake flights, alerts, session tickets
    if (!raw.empty() && !send_now(c.fd, raw)) return false;
    return ok && !peer_closed;
}

EventServer::EventServer(EventServerLimits limits, Handler handler, Predicate is_slow)
    : limits_(limits), handler_(std::move(handler)), is_slow_(std::move(is_slow)) {}

EventServer::~EventServer() {
    stop();
    if (listen_fd_ >= 0) ::close(listen_fd_);
    if (tls_) SSL_CTX_free(tls_);
}

bool EventServer::bind(const std::string &host, int port, int backlog, const std::function<void(int)> &socket_options,
                       std::string &error) {
    auto try_one = [&](const std::string &h) -> int {
        addrinfo hints{};
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
        addrinfo *res = nullptr;
        const std::string service = std::to_string(port);
        if (int rc = ::getaddrinfo(h.c_str(), service.c_str(), &hints, &res); rc != 0) {
            error = gai_strerror(rc);
            errno = 0;
            return -1;
        }
        int fd = -1, saved = 0;
        for (addrinfo *a = res; a && fd < 0; a = a->ai_next) {
            fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
            if (fd < 0) {
                saved = errno;
                continue;
            }
            if (socket_options) socket_options(fd);
            if (::bind(fd, a->ai_addr, a->ai_addrlen) != 0 || ::listen(fd, backlog > 0 ? backlog : 128) != 0) {
                saved = errno;
                ::close(fd);
                fd = -1;
            }
        }
        ::freeaddrinfo(res);
        if (fd < 0) {
            error = std::strerror(saved ? saved : EADDRNOTAVAIL);
            errno = saved;
        }
        return fd;
    };
    int fd;
    if (host.empty()) {
        fd = try_one("::");
        if (fd < 0 && errno != EADDRINUSE) fd = try_one("0.0.0.0");
    } else {
        fd = try_one(host);
    }
    if (fd < 0) return false;
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (::getsockname(fd, reinterpret_cast<sockaddr *>(&ss), &len) == 0)
        port_ = ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6 *>(&ss)->sin6_port
                                               : reinterpret_cast<sockaddr_in *>(&ss)->sin_port);
    listen_fd_ = fd;
    return true;
}

bool EventServer::start(std::string &error) {
    if (listen_fd_ < 0) {
        error = "not bound";
        return false;
    }
    epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
    wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (epoll_fd_ < 0 || wake_fd_ < 0) {
        error = std::string("epoll/eventfd: ") + std::strerror(errno);
        return false;
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kListenerId;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &ev);
    ev.data.u64 = kWakeId;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev);
    stopping_.store(false);
    try {
        for (std::size_t i = 0; i < std::max<std::size_t>(1, limits_.slow_threads); ++i)
            workers_.emplace_back([this] { slow_worker(); });
        running_.store(true, std::memory_order_release);
        loop_thread_ = std::thread([this] { loop(); });
    } catch (const std::exception &e) {
        error = std::string("could not start the HTTP threads: ") + e.what();
        running_.store(false);
        stop();
        return false;
    }
    return true;
}

void EventServer::stop() {
    stopping_.store(true, std::memory_order_release);
    {
        std::lock_guard<std::mutex> g(mu_);
        jobs_.clear();
    }
    cv_.notify_all();
    if (wake_fd_ >= 0) {
        const std::uint64_t one = 1;
        [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof one);
    }
    if (loop_thread_.joinable()) loop_thread_.join();
    for (auto &t : workers_)
        if (t.joinable()) t.join();
    workers_.clear();
    for (auto &kv : conns_) ::close(kv.second->fd);
    conns_.clear();
    open_.store(0);
    if (listen_fd_ >= 0) {
        ::close(listen_fd_);
        listen_fd_ = -1;
    }
    if (epoll_fd_ >= 0) ::close(epoll_fd_);
    if (wake_fd_ >= 0) ::close(wake_fd_);
    epoll_fd_ = wake_fd_ = -1;
    running_.store(false, std::memory_order_release);
}

void EventServer::slow_worker() {
    for (;;) {
        Job job;
        {
            std::unique_lock<std::mutex> lk(mu_);
            cv_.wait(lk, [&] { return stopping_.load() || !jobs_.empty(); });
            if (stopping_.load()) return;
            job = std::move(jobs_.front());
            jobs_.pop_front();
        }
        EventReply reply;
        try {
            reply = handler_(job.req);
        } catch (...) {
            reply = EventReply{500, std::string(), std::string(), {}, {}};
        }
        {
            std::lock_guard<std::mutex> g(mu_);
            done_.push_back(Done{job.conn_id, std::move(reply)});
        }
        const std::uint64_t one = 1;
        [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof one);
    }
}

void EventServer::watch(Conn &c, std::uint32_t events) {
    if (c.events == events) return;
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = c.id;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.fd, &ev);
    c.events = events;
}

void EventServer::close_conn(std::uint64_t id) {
    auto it = conns_.find(id);
    if (it == conns_.end()) return;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, it->second->fd, nullptr);
    ::close(it->second->fd);
    by_fd_.erase(it->second->fd);
    conns_.erase(it);
    open_.store(conns_.size(), std::memory_order_relaxed);
}

// Which connection gives way when the budget is full, among those accepted
// before `before_id` (one accepted in the same accept round has not been read
// yet: evicting it would drop a waiting request unread) and open for at least
// `min_age_ms`. In this order, the oldest of each kind first:
//   1. idle keep-alive: served at least once, nothing of a next request yet;
//   2. a request still arriving (slow sender);
//   3. nothing received yet: a client such as HAProxy sends its check right
//      after connecting, so under a connect flood the newest-but-silent
//      connection is most likely a check whose bytes are in flight.
// Busy and writing connections are never evicted.
bool EventServer::evict_one(std::uint64_t before_id, std::int64_t now, int min_age_ms) {
    std::uint64_t best[3] = {0, 0, 0};  // 0: none (ids start at 1)
    for (auto &kv : conns_) {
        if (kv.first >= before_id || now - kv.second->accepted_at < min_age_ms) break;  // younger ones follow
        const Conn &c = *kv.second;
        if (c.state != Conn::State::Head && c.state != Conn::State::Body) continue;
        const int kind = c.in.empty() ? (c.requests > 0 ? 0 : 2) : 1;
        if (best[kind] == 0) best[kind] = kv.first;
        if (kind == 0) break;  // nothing goes before it
    }
    for (std::uint64_t id : best) {
        if (id == 0) continue;
        close_conn(id);
        evicted_.fetch_add(1, std::memory_order_relaxed);
        return true;
    }
    return false;
}

void EventServer::accept_all(std::int64_t now) {
    const std::uint64_t round_start = next_id_;
    for (int i = 0; i < 256; ++i) {  // bounded per wakeup; the listener stays readable
        sockaddr_storage ss{};
        socklen_t len = sizeof ss;
        int fd = ::accept4(listen_fd_, reinterpret_cast<sockaddr *>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno == EMFILE || errno == ENFILE) {
                // Out of fds (the budget was not reached): only connections
                // that had time to send their request are evicted.
                if (evict_one(round_start, now, 200)) continue;
                // Nothing to evict: stop watching the listener for a moment,
                // or the level-triggered epoll wakes this loop at once, forever.
                epoll_event ev{};
                ev.events = 0;
                ev.data.u64 = kListenerId;
                ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, listen_fd_, &ev);
                listener_paused_ = true;
                listener_resume_ = now + 100;
            }
            return;  // EAGAIN, or out of fds
        }
        if (conns_.size() >= std::max<std::size_t>(1, limits_.max_connections) && !evict_one(round_start, now, 0)) {
            ::close(fd);  // every slot is handling a request
            continue;
        }
        auto c = std::make_unique<Conn>();
        c->id = next_id_++;
        c->fd = fd;
        c->accepted_at = now;
        c->deadline = now + limits_.head_deadline_ms;
        char buf[INET6_ADDRSTRLEN] = {};
        if (ss.ss_family == AF_INET)
            ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in *>(&ss)->sin_addr, buf, sizeof buf);
        else if (ss.ss_family == AF_INET6)
            ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6 *>(&ss)->sin6_addr, buf, sizeof buf);
        c->remote = buf;
        if (tls_) {
            c->ssl = SSL_new(tls_);
            BIO *r = c->ssl ? BIO_new(BIO_s_mem()) : nullptr;
            BIO *w = r ? BIO_new(BIO_s_mem()) : nullptr;
            if (!w) {
                if (r) BIO_free(r);
                ERR_clear_error();
                ::close(fd);
                continue;  // c (and its SSL) freed here
            }
            BIO_set_mem_eof_return(r, -1);
            BIO_set_mem_eof_return(w, -1);
            SSL_set_bio(c->ssl, r, w);  // the SSL owns both now
            SSL_set_mode(c->ssl, SSL_MODE_RELEASE_BUFFERS);
            SSL_set_accept_state(c->ssl);
            c->rbio = r;
            c->wbio = w;
        }
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLRDHUP;
        ev.data.u64 = c->id;
        if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
            ::close(fd);
            continue;
        }
        c->events = ev.events;
        by_fd_[fd] = c->id;
        const std::uint64_t id = c->id;
        Conn &added = *c;
        conns_.emplace(id, std::move(c));
        open_.store(conns_.size(), std::memory_order_relaxed);
        // The request is often there already: read it now, so the connection
        // is busy (never evicted) rather than waiting for the next wakeup.
        on_readable(added, now);
    }
}

void EventServer::on_readable(Conn &c, std::int64_t now) {
    const std::uint64_t id = c.id;
    if (c.ssl) {
        const bool was_empty = c.in.empty();
        if (!tls_pump(c)) {
            close_conn(id);
            return;
        }
        if (was_empty && !c.in.empty() && c.request_start == 0) {
            c.request_start = now;
            c.deadline = std::min(c.deadline, now + limits_.head_deadline_ms);
        }
        try_parse(c, now);
        return;
    }
    char buf[16 * 1024];
    // Never buffer more than one request can be (head + body).
    const std::size_t cap = limits_.max_header_bytes + limits_.max_body_bytes + 4;
    for (int round = 0; round < 8; ++round) {
        if (c.in.size() >= cap) break;
        const std::size_t want = std::min(sizeof buf, cap - c.in.size());
        const ssize_t n = ::recv(c.fd, buf, want, 0);
        if (n > 0) {
            if (c.in.empty() && c.request_start == 0) {
                c.request_start = now;
                // an idle keep-alive connection: the head deadline starts with its first byte
                c.deadline = std::min(c.deadline, now + limits_.head_deadline_ms);
            }
            c.in.append(buf, static_cast<std::size_t>(n));
            if (static_cast<std::size_t>(n) < want) break;
            continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            close_conn(id);
            return;
        }
        break;
    }
    try_parse(c, now);
}

void EventServer::try_parse(Conn &c, std::int64_t now) {
    if (c.state == Conn::State::Head) {
        std::size_t end = c.in.find("\r\n\r\n");
        std::size_t skip = 4;
        if (end == std::string::npos) {
            end = c.in.find("\n\n");
            skip = 2;
        }
        if (end == std::string::npos || end + skip > limits_.max_header_bytes) {
            if (c.in.size() > limits_.max_header_bytes || (end != std::string::npos)) {
                c.close_after = true;
                respond(c, EventReply{431, "text/plain", "request header fields too large\n", {}, {}}, now);
            }
            return;
        }
        c.req = EventRequest();
        const int bad = parse_request_head(c.in.substr(0, end), limits_.max_headers, c.req);
        c.in.erase(0, end + skip);
        if (bad != 0) {
            c.close_after = true;
            respond(c, EventReply{bad, "text/plain", std::string(reason(bad)) + "\n", {}, {}}, now);
            return;
        }
        c.req.remote_addr = c.remote;
        if (c.ssl)
            c.req.client_cert_verified =
                SSL_get0_peer_certificate(c.ssl) != nullptr && SSL_get_verify_result(c.ssl) == X509_V_OK;
        if (c.req.header("transfer-encoding")) {
            c.close_after = true;
            respond(c, EventReply{411, "text/plain", "chunked request bodies are not supported\n", {}, {}}, now);
            return;
        }
        c.body_len = 0;
        const std::size_t cl_count = c.req.header_count("content-length");
        if (cl_count > 1) {
            c.close_after = true;
            respond(c, EventReply{400, "text/plain", "Bad Request\n", {}, {}}, now);
            return;
        }
        if (const std::string *cl = c.req.header("content-length")) {
            if (cl->empty() || cl->size() > 12 || !std::all_of(cl->begin(), cl->end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
                c.close_after = true;
                respond(c, EventReply{400, "text/plain", "Bad Request\n", {}, {}}, now);
                return;
            }
            c.body_len = static_cast<std::size_t>(std::stoull(*cl));
            if (c.body_len > limits_.max_body_bytes) {
                c.close_after = true;
                respond(c, EventReply{413, "text/plain", "Payload Too Large\n", {}, {}}, now);
                return;
            }
        }
        const std::string *conn_hdr = c.req.header("connection");
        if (c.req.minor_version == 0) c.close_after = !(conn_hdr && has_token(*conn_hdr, "keep-alive"));
        else if (conn_hdr && has_token(*conn_hdr, "close")) c.close_after = true;
        if (++c.requests >= limits_.keep_alive_max_requests) c.close_after = true;
        c.state = Conn::State::Body;
        c.deadline = (c.request_start ? c.request_start : now) + limits_.request_deadline_ms;
        if (c.body_len > c.in.size()) {
            if (const std::string *expect = c.req.header("expect"); expect && lower(*expect) == "100-continue") {
                static const char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
                if (c.ssl) {
                    if (!tls_send(c, kContinue, sizeof kContinue - 1)) {
                        close_conn(c.id);
                        return;
                    }
                } else {
                    [[maybe_unused]] ssize_t n = ::send(c.fd, kContinue, sizeof kContinue - 1, MSG_NOSIGNAL);
                }
            }
        }
    }
    if (c.state != Conn::State::Body) return;
    if (c.in.size() < c.body_len) return;
    c.req.body = c.in.substr(0, c.body_len);
    c.in.erase(0, c.body_len);

    bool slow = false;
    try {
        slow = is_slow_ && is_slow_(c.req);
    } catch (...) {
    }
    if (slow) {
        std::unique_lock<std::mutex> lk(mu_);
        if (jobs_.size() >= std::max<std::size_t>(1, limits_.slow_queue)) {
            lk.unlock();
            c.close_after = true;
            respond(c, EventReply{503, "application/json", "{\"error\": \"too many management requests\"}", {}, {}}, now);
            return;
        }
        jobs_.push_back(Job{c.id, std::move(c.req)});
        lk.unlock();
        cv_.notify_one();
        c.state = Conn::State::Busy;
        c.deadline = 0;  // the handler has its own bounds
        watch(c, 0);     // nothing to read until the answer is out
        return;
    }
    EventReply reply;
    try {
        reply = handler_(c.req);
    } catch (...) {
        reply = EventReply{500, std::string(), std::string(), {}, {}};
    }
    respond(c, std::move(reply), now);
}

void EventServer::respond(Conn &c, EventReply reply, std::int64_t now) {
    const bool head = c.req.method == "HEAD";
    std::string &o = c.out;
    o.clear();
    c.on_sent = std::move(reply.on_sent);
    o += "HTTP/1.1 " + std::to_string(reply.status) + " " + reason(reply.status) + "\r\n";
    if (!reply.content_type.empty()) o += "Content-Type: " + reply.content_type + "\r\n";
    for (const auto &h : reply.headers) o += h.first + ": " + h.second + "\r\n";
    o += "Content-Length: " + std::to_string(reply.body.size()) + "\r\n";
    o += c.close_after ? "Connection: close\r\n" : "Connection: keep-alive\r\n";
    o += "\r\n";
    if (!head) o += reply.body;
    if (c.ssl) {
        std::string plain;
        plain.swap(o);
        if (SSL_write(c.ssl, plain.data(), static_cast<int>(plain.size())) <= 0) {
            ERR_clear_error();
            close_conn(c.id);
            return;
        }
        tls_drain(c, o);
    }
    c.out_off = 0;
    c.state = Conn::State::Writing;
    c.deadline = now + limits_.write_deadline_ms;
    served_.fetch_add(1, std::memory_order_relaxed);
    flush(c, now);
}

void EventServer::flush(Conn &c, std::int64_t now) {
    while (c.out_off < c.out.size()) {
        const ssize_t n = ::send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c.out_off += static_cast<std::size_t>(n);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            watch(c, static_cast<std::uint32_t>(EPOLLOUT));
            return;
        }
        if (n < 0 && errno == EINTR) continue;
        close_conn(c.id);
        return;
    }
    finish_request(c, now);
}

void EventServer::finish_request(Conn &c, std::int64_t now) {
    c.sent();
    if (c.close_after) {
        if (c.ssl) {
            SSL_shutdown(c.ssl);  // close_notify, best effort
            ERR_clear_error();
            std::string raw;
            tls_drain(c, raw);
            send_now(c.fd, raw);
        }
        // Half-close so the client reads the whole answer before the FIN.
        ::shutdown(c.fd, SHUT_WR);
        close_conn(c.id);
        return;
    }
    c.out.clear();
    c.out.shrink_to_fit();
    c.out_off = 0;
    c.state = Conn::State::Head;
    c.request_start = 0;
    c.deadline = now + limits_.keep_alive_idle_ms;
    watch(c, static_cast<std::uint32_t>(EPOLLIN | EPOLLRDHUP));
    if (c.ssl && (SSL_pending(c.ssl) > 0 || BIO_ctrl_pending(c.rbio) > 0)) {
        // decrypted or raw bytes already in OpenSSL: epoll will not report them again
        if (!tls_pump(c)) {
            close_conn(c.id);
            return;
        }
    }
    if (!c.in.empty()) {  // pipelined
        c.request_start = now;
        c.deadline = now + limits_.head_deadline_ms;
        try_parse(c, now);
    }
}

void EventServer::expire(std::int64_t now) {
    std::vector<std::uint64_t> late;
    for (auto &kv : conns_)
        if (kv.second->deadline != 0 && now >= kv.second->deadline) late.push_back(kv.first);
    for (std::uint64_t id : late) close_conn(id);
}

void EventServer::collect_done(std::int64_t now) {
    std::vector<Done> done;
    {
        std::lock_guard<std::mutex> g(mu_);
        done.swap(done_);
    }
    for (Done &d : done) {
        auto it = conns_.find(d.conn_id);
        if (it == conns_.end()) {  // closed meanwhile
            if (d.reply.on_sent) d.reply.on_sent();
            continue;
        }
        respond(*it->second, std::move(d.reply), now);
    }
}

void EventServer::loop() {
    epoll_event events[64];
    while (!stopping_.load(std::memory_order_acquire)) {
        const int n = ::epoll_wait(epoll_fd_, events, 64, 50);
        if (n < 0 && errno != EINTR) break;
        const std::int64_t now = now_ms();
        for (int i = 0; i < n; ++i) {
            const std::uint64_t id = events[i].data.u64;
            if (id == kWakeId) {
                std::uint64_t v;
                [[maybe_unused]] ssize_t r = ::read(wake_fd_, &v, sizeof v);
                collect_done(now);
                continue;
            }
            if (id == kListenerId) {
                accept_all(now);
                continue;
            }
            auto it = conns_.find(id);
            if (it == conns_.end()) continue;
            Conn &c = *it->second;
            const std::uint32_t ev = events[i].events;
            if (ev & (EPOLLERR | EPOLLHUP)) {
                close_conn(id);
                continue;
            }
            if (c.state == Conn::State::Writing && (ev & EPOLLOUT)) {
                flush(c, now);
                continue;
            }
            if (ev & (EPOLLIN | EPOLLRDHUP)) {
                if (c.state == Conn::State::Head || c.state == Conn::State::Body) on_readable(c, now);
                else watch(c, c.state == Conn::State::Writing ? static_cast<std::uint32_t>(EPOLLOUT) : 0u);
            }
        }
        const std::int64_t later = now_ms();
        expire(later);
        if (listener_paused_ && later >= listener_resume_) {
            epoll_event ev{};
            ev.events = EPOLLIN;
            ev.data.u64 = kListenerId;
            ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, listen_fd_, &ev);
            listener_paused_ = false;
        }
    }
    running_.store(false, std::memory_order_release);
}

}  // namespace pgha
