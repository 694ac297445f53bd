// Open-loop latency of one HTTP health endpoint (issue 14 item 6).
//
// wrk (bench/health_endpoint.sh) is a closed loop: each connection sends its
// next request when the answer came, as fast as the machine allows. Its
// latency is then mostly queueing (Little's law: 64 connections at 32,000
// requests/s wait 2 ms on average), whatever the server does per request,
// and on 2 cores the load generator takes the CPU the server needs. This
// tool offers a fixed rate instead: request i is due at start + i/rate, on
// connection i mod C; its latency counts from when it was due (a late send
// is the server's delay too: no coordinated omission). Keep-alive as wrk;
// a connection the server closed (keep-alive request cap) is opened again,
// and that cost is in the latency.
//
//   health_latency HOST PORT PATH RATE CONNECTIONS SECONDS
//
// Prints: sent, answered, answers by status class, errors, reconnects, the
// achieved rate and latency p50 / p90 / p99 / p99.9 / max in ms.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

struct Conn {
    int fd = -1;
    bool connecting = false;
    bool busy = false;               // a request is on the wire
    std::int64_t due_ns = 0;         // when the request on the wire was due
    std::deque<std::int64_t> queue;  // due times of requests not sent yet
    std::string in;                  // bytes of the answer so far
    std::string out;                 // bytes still to send
};

struct Stats {
    std::vector<double> latency_ms;
    long sent = 0, ok2xx = 0, other = 0, errors = 0, reconnects = 0;
};

sockaddr_in target;
std::string request_text;

bool open_conn(int ep, Conn &c, int index) {
    c.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c.fd < 0) return false;
    int one = 1;
    ::setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int rc = ::connect(c.fd, reinterpret_cast<sockaddr *>(&target), sizeof target);
    if (rc != 0 && errno != EINPROGRESS) {
        ::close(c.fd);
        c.fd = -1;
        return false;
    }
    c.connecting = rc != 0;
    c.in.clear();
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP;
    ev.data.u32 = static_cast<std::uint32_t>(index);
    ::epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev);
    return true;
}

void close_conn(int ep, Conn &c) {
    if (c.fd >= 0) {
        ::epoll_ctl(ep, EPOLL_CTL_DEL, c.fd, nullptr);
        ::close(c.fd);
    }
    c.fd = -1;
    c.connecting = false;
}

void flush(Conn &c) {
    while (!c.out.empty()) {
        ssize_t n = ::send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
        if (n <= 0) return;
        c.out.erase(0, static_cast<std::size_t>(n));
    }
}

// Sends the next queued request when the connection is free.
void pump(int ep, Conn &c, int index, Stats &st) {
    if (c.busy || c.queue.empty()) return;
    if (c.fd < 0) {
        ++st.reconnects;
        if (!open_conn(ep, c, index)) {
            ++st.errors;
            c.queue.pop_front();
            return;
        }
    }
    c.busy = true;
    c.due_ns = c.queue.front();
    c.queue.pop_front();
    c.out = request_text;
    ++st.sent;
    if (!c.connecting) flush(c);
}

// A complete answer in c.in: its length, or 0 while incomplete.
std::size_t answer_length(const std::string &in, int &status, bool &close_after) {
    const std::size_t head_end = in.find("\r\n\r\n");
    if (head_end == std::string::npos) return 0;
    status = std::atoi(in.c_str() + 9);  // "HTTP/1.1 200"
    std::string head = in.substr(0, head_end);
    for (auto &ch : head) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    std::size_t body = 0;
    const std::size_t cl = head.find("\r\ncontent-length:");
    if (cl != std::string::npos) body = std::strtoul(head.c_str() + cl + 17, nullptr, 10);
    close_after = head.find("\r\nconnection: close") != std::string::npos;
    return in.size() >= head_end + 4 + body ? head_end + 4 + body : 0;
}

double percentile(std::vector<double> &v, double p) {
    if (v.empty()) return 0;
    std::size_t k = static_cast<std::size_t>(p / 100.0 * static_cast<double>(v.size() - 1) + 0.5);
    std::nth_element(v.begin(), v.begin() + static_cast<long>(k), v.end());
    return v[k];
}

}  // namespace

int main(int argc, char **argv) {
    if (argc != 7) {
        std::fprintf(stderr, "usage: %s HOST PORT PATH RATE CONNECTIONS SECONDS\n", argv[0]);
        return 2;
    }
    const std::string host = argv[1], path = argv[3];
    const double rate = std::atof(argv[4]);
    const int conns = std::atoi(argv[5]);
    const double seconds = std::atof(argv[6]);
    if (rate <= 0 || conns <= 0 || seconds <= 0 || inet_pton(AF_INET, host.c_str(), &target.sin_addr) != 1) {
        std::fprintf(stderr, "bad arguments (HOST must be an IPv4 address)\n");
        return 2;
    }
    target.sin_family = AF_INET;
    target.sin_port = htons(static_cast<std::uint16_t>(std::atoi(argv[2])));
    request_text = "GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\nUser-Agent: pg_ha-bench\r\n\r\n";

    const int ep = ::epoll_create1(EPOLL_CLOEXEC);
    std::vector<Conn> cs(static_cast<std::size_t>(conns));
    Stats st;
    for (int i = 0; i < conns; ++i)
        if (!open_conn(ep, cs[static_cast<std::size_t>(i)], i)) {
            std::fprintf(stderr, "cannot connect to %s:%s\n", host.c_str(), argv[2]);
            return 1;
        }
    const std::int64_t start = now_ns();
    const std::int64_t interval = static_cast<std::int64_t>(1e9 / rate);
    const long total = static_cast<long>(rate * seconds);
    long scheduled = 0;
    std::vector<epoll_event> events(static_cast<std::size_t>(conns) + 1);
    const std::int64_t hard_end = start + static_cast<std::int64_t>((seconds + 5) * 1e9);
    for (;;) {
        const std::int64_t t = now_ns();
        while (scheduled < total && start + scheduled * interval <= t) {
            const int i = static_cast<int>(scheduled % conns);
            cs[static_cast<std::size_t>(i)].queue.push_back(start + scheduled * interval);
            pump(ep, cs[static_cast<std::size_t>(i)], i, st);
            ++scheduled;
        }
        bool pending = scheduled < total;
        for (const auto &c : cs) pending = pending || c.busy || !c.queue.empty();
        if (!pending || t > hard_end) break;
        std::int64_t wait_ns = 10000000;
        if (scheduled < total) wait_ns = std::max<std::int64_t>(0, start + scheduled * interval - now_ns());
        const timespec ts{static_cast<time_t>(wait_ns / 1000000000), static_cast<long>(wait_ns % 1000000000)};
        const int n = ::epoll_pwait2(ep, events.data(), static_cast<int>(events.size()), &ts, nullptr);
        for (int e = 0; e < n; ++e) {
            const int i = static_cast<int>(events[static_cast<std::size_t>(e)].data.u32);
            Conn &c = cs[static_cast<std::size_t>(i)];
            if (c.fd < 0) continue;
            const std::uint32_t flags = events[static_cast<std::size_t>(e)].events;
            if (c.connecting && (flags & EPOLLOUT)) {
                int err = 0;
                socklen_t len = sizeof err;
                ::getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
                if (err != 0) {
                    close_conn(ep, c);
                    if (c.busy) ++st.errors;
                    c.busy = false;
                    pump(ep, c, i, st);
                    continue;
                }
                c.connecting = false;
            }
            if (!c.connecting && (flags & EPOLLOUT)) flush(c);
            if (flags & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
                char buf[16384];
                bool eof = false;
                for (;;) {
                    ssize_t r = ::recv(c.fd, buf, sizeof buf, 0);
                    if (r > 0) {
                        c.in.append(buf, static_cast<std::size_t>(r));
                        continue;
                    }
                    if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) eof = true;
                    break;
                }
                int status = 0;
                bool close_after = false;
                const std::size_t len = c.busy ? answer_length(c.in, status, close_after) : 0;
                if (len > 0) {
                    st.latency_ms.push_back(static_cast<double>(now_ns() - c.due_ns) / 1e6);
                    (status >= 200 && status < 300 ? st.ok2xx : st.other)++;
                    c.in.erase(0, len);
                    c.busy = false;
                    if (close_after) eof = true;
                }
                if (eof) {
                    if (c.busy) {  // closed under a request: it failed
                        ++st.errors;
                        c.busy = false;
                    }
                    close_conn(ep, c);
                }
                pump(ep, c, i, st);
            }
        }
    }
    const double elapsed = static_cast<double>(now_ns() - start) / 1e9;
    std::vector<double> &v = st.latency_ms;
    const double maxv = v.empty() ? 0 : *std::max_element(v.begin(), v.end());
    std::printf("offered %.0f requests/s on %d connections for %.0f s: sent %ld, answered %zu (2xx %ld, other %ld), "
                "errors %ld, reconnects %ld, %.0f answers/s\n",
                rate, conns, seconds, st.sent, v.size(), st.ok2xx, st.other, st.errors, st.reconnects,
                static_cast<double>(v.size()) / elapsed);
    const double p50 = percentile(v, 50), p90 = percentile(v, 90), p99 = percentile(v, 99), p999 = percentile(v, 99.9);
    std::printf("latency ms: p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f\n", p50, p90, p99, p999, maxv);
    return v.empty() ? 1 : 0;
}
