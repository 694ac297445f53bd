// net_delay: holds every packet of one NFQUEUE queue for a fixed delay, then
// lets it through in arrival order. A stand-in for `tc qdisc ... netem delay`
// on kernels built without sch_netem (this development VM's).
//
//   net_delay QUEUE_NUM DELAY_MS DURATION_S
//
// Run it in the network namespace whose traffic it delays, with a rule that
// sends the packets there, e.g. (bench/soak.py does both):
//   iptables -A OUTPUT -j NFQUEUE --queue-num 7 --queue-bypass
// --queue-bypass lets packets through unchanged while nothing listens, so a
// dead helper never cuts the host off. The helper exits after DURATION_S
// seconds (bounded), releasing what it holds. Prints one line at exit:
// packets delayed, the most held at once, verdict errors.
#include <arpa/inet.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <string>

namespace {

std::int64_t now_ms() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return std::int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

struct Held {
    std::uint32_t id;
    std::int64_t due_ms;
};

struct State {
    std::deque<Held> held;
    std::int64_t delay_ms = 0;
    unsigned long packets = 0, peak = 0, verdict_errors = 0;
};

int on_packet(nfq_q_handle *, nfgenmsg *, nfq_data *nfa, void *data) {
    auto *st = static_cast<State *>(data);
    const nfqnl_msg_packet_hdr *ph = nfq_get_msg_packet_hdr(nfa);
    if (!ph) return 0;
    st->held.push_back({ntohl(ph->packet_id), now_ms() + st->delay_ms});
    ++st->packets;
    if (st->held.size() > st->peak) st->peak = st->held.size();
    return 0;
}

void release_due(nfq_q_handle *qh, State &st, std::int64_t now) {
    while (!st.held.empty() && st.held.front().due_ms <= now) {
        if (nfq_set_verdict(qh, st.held.front().id, NF_ACCEPT, 0, nullptr) < 0) ++st.verdict_errors;
        st.held.pop_front();
    }
}

long arg(const char *text, long lo, long hi, const char *what) {
    char *end = nullptr;
    errno = 0;
    long v = std::strtol(text, &end, 10);
    if (errno || !end || *end || v < lo || v > hi) {
        std::fprintf(stderr, "net_delay: %s must be an integer in [%ld, %ld], got \"%s\"\n", what, lo, hi, text);
        std::exit(2);
    }
    return v;
}

}  // namespace

int main(int argc, char **argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: net_delay QUEUE_NUM DELAY_MS DURATION_S\n");
        return 2;
    }
    const auto queue = static_cast<std::uint16_t>(arg(argv[1], 0, 65535, "QUEUE_NUM"));
    State st;
    st.delay_ms = arg(argv[2], 0, 60000, "DELAY_MS");
    const std::int64_t end_ms = now_ms() + arg(argv[3], 1, 86400, "DURATION_S") * 1000;

    nfq_handle *h = nfq_open();
    if (!h) {
        std::perror("net_delay: nfq_open");
        return 1;
    }
    nfq_q_handle *qh = nfq_create_queue(h, queue, &on_packet, &st);
    if (!qh) {
        std::perror("net_delay: nfq_create_queue (is another program bound to this queue?)");
        nfq_close(h);
        return 1;
    }
    nfq_set_mode(qh, NFQNL_COPY_META, 0);  // the verdict needs only the packet id
    nfq_set_queue_maxlen(qh, 1 << 16);
    const int fd = nfq_fd(h);
    int rcvbuf = 8 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf);
    std::printf("net_delay: queue %u, every packet held %lld ms\n", queue, static_cast<long long>(st.delay_ms));
    std::fflush(stdout);

    char buf[65536];
    unsigned long enobufs = 0;
    for (;;) {
        const std::int64_t now = now_ms();
        release_due(qh, st, now);
        if (now >= end_ms) break;
        std::int64_t wait = end_ms - now;
        if (!st.held.empty()) wait = std::min<std::int64_t>(wait, st.held.front().due_ms - now);
        pollfd p{fd, POLLIN, 0};
        int r = poll(&p, 1, static_cast<int>(std::max<std::int64_t>(0, std::min<std::int64_t>(wait, 1000))));
        if (r < 0 && errno != EINTR) {
            std::perror("net_delay: poll");
            break;
        }
        if (r > 0) {
            // Drain what is there without blocking.
            for (int i = 0; i < 1024; ++i) {
                ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
                if (n < 0) {
                    if (errno == ENOBUFS) {  // the kernel dropped packets for us; they are lost, as on a congested link
                        ++enobufs;
                        continue;
                    }
                    break;
                }
                nfq_handle_packet(h, buf, static_cast<int>(n));
            }
        }
    }
    // Let go of what is still held (in order), then unbind.
    for (auto &e : st.held) e.due_ms = 0;
    release_due(qh, st, now_ms());
    nfq_destroy_queue(qh);
    nfq_close(h);
    std::printf("net_delay: done, %lu packets delayed, at most %lu held at once, %lu verdict errors, %lu receive "
                "overruns\n",
                st.packets, st.peak, st.verdict_errors, enobufs);
    return 0;
}
