#include "engine/leadership.hpp"
#include "core/dynamic_config.hpp"
#include "core/json_text.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/patroni_codec.hpp"

namespace pgha {

namespace {

std::string boot_id() {
    std::ifstream f("/proc/sys/kernel/random/boot_id");
    std::string id;
    std::getline(f, id);
    return id;
}

}  // namespace

FailsafeBox::FailsafeBox(std::string path) : path_(std::move(path)) {}

bool FailsafeBox::store(std::int64_t deadline_ms, std::int64_t wall_deadline_ms, int promise_ms) const {
    if (path_.empty()) return true;
    // One line per field; the member's strings cannot hold a newline (they
    // came out of JSON strings we checked), but refuse rather than guess.
    for (const std::string *s : {&leader_.name, &leader_.conn_url, &leader_.api_url})
        if (s->find('\n') != std::string::npos) return false;
    const std::string tmp = path_ + ".tmp";
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return false;
    const std::string text = "pg_ha failsafe promise v1\n" + boot_id() + "\n" + std::to_string(deadline_ms) + "\n" +
                             std::to_string(wall_deadline_ms) + "\n" + std::to_string(promise_ms) + "\n" +
                             leader_.name + "\n" + leader_.conn_url + "\n" + leader_.api_url + "\n";
    bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
    ok = (::close(fd) == 0) && ok;
    if (ok) ok = ::rename(tmp.c_str(), path_.c_str()) == 0;
    if (!ok) ::unlink(tmp.c_str());
    return ok;
}

bool FailsafeBox::accept(const Member &leader, std::int64_t now_ms, std::int64_t wall_ms, int promise_ms) {
    std::lock_guard<std::mutex> g(mu_);
    if (claimed_ || promise_ms <= 0) return false;
    const Member before = leader_;
    leader_ = leader;
    const std::int64_t deadline = std::max(deadline_ms_, now_ms + promise_ms);
    // Stored before it counts: a promise we could not keep across a restart
    // is not given.
    if (!store(deadline, wall_ms + (deadline - now_ms), promise_ms)) {
        leader_ = before;
        return false;
    }
    deadline_ms_ = deadline;
    return true;
}

std::string FailsafeBox::load(std::int64_t now_ms, std::int64_t wall_ms) {
    if (path_.empty()) return "";
    std::ifstream f(path_);
    if (!f) return "";
    std::vector<std::string> lines;
    for (std::string l; lines.size() < 8 && std::getline(f, l);) lines.push_back(l);
    std::lock_guard<std::mutex> g(mu_);
    // A promise file we cannot read is honoured for a whole default ttl: it
    // may be the only record of a leader still writing without ZooKeeper.
    std::int64_t deadline = 0, wall_deadline = 0;
    long promise = 0;
    bool ok = lines.size() == 8 && lines[0] == "pg_ha failsafe promise v1";
    if (ok) {
        char *end = nullptr;
        deadline = std::strtoll(lines[2].c_str(), &end, 10);
        ok = *end == '\0';
        wall_deadline = std::strtoll(lines[3].c_str(), &end, 10);
        ok = ok && *end == '\0';
        promise = std::strtol(lines[4].c_str(), &end, 10);
        ok = ok && *end == '\0' && promise > 0 && promise <= 24L * 3600 * 1000;
    }
    if (!ok) {
        deadline_ms_ = now_ms + 30000;
        leader_ = Member{};
        return "the failsafe promise file " + path_ + " is unreadable: not taking the leader lock for 30 s";
    }
    leader_.name = lines[5];
    leader_.conn_url = lines[6];
    leader_.api_url = lines[7];
    leader_.state = "running";
    leader_.role = "primary";
    const std::string id = boot_id();
    if (!id.empty() && lines[1] == id) {
        deadline_ms_ = deadline;
    } else if (wall_deadline > wall_ms) {
        deadline_ms_ = now_ms + promise;  // rebooted: the lease clock restarted
    } else {
        return "";
    }
    if (deadline_ms_ <= now_ms) return "";
    return "keeping the failsafe promise given to " + leader_.name + " before this restart: not taking the leader "
           "lock for another " + std::to_string(deadline_ms_ - now_ms) + " ms";
}

bool FailsafeBox::claim(std::int64_t now_ms) {
    std::lock_guard<std::mutex> g(mu_);
    if (deadline_ms_ > now_ms) return false;
    claimed_ = true;
    return true;
}

void FailsafeBox::release() {
    std::lock_guard<std::mutex> g(mu_);
    claimed_ = false;
}

std::optional<Member> FailsafeBox::active(std::int64_t now_ms) const {
    std::lock_guard<std::mutex> g(mu_);
    if (deadline_ms_ <= now_ms || leader_.name.empty()) return std::nullopt;
    return leader_;
}

std::string failsafe_accepted_body(int promise_ms) { return "Accepted promise_ms=" + std::to_string(promise_ms); }

bool parse_failsafe_accepted(const std::string &body, int &promise_ms) {
    static const std::string prefix = "Accepted promise_ms=";
    if (body.compare(0, prefix.size(), prefix) != 0 || body.size() == prefix.size() || body.size() > prefix.size() + 9)
        return false;
    long v = 0;
    for (std::size_t i = prefix.size(); i < body.size(); ++i) {
        if (body[i] < '0' || body[i] > '9') return false;
        v = v * 10 + (body[i] - '0');
    }
    if (v <= 0) return false;
    promise_ms = static_cast<int>(v);
    return true;
}

PeerRequest peer_request(const EngineSettings &s, const std::string &name, const std::string &url,
                         const std::string &method) {
    PeerRequest r;
    r.name = name;
    r.url = url;
    r.method = method;
    // Credentials only with unsafe methods.
    if (method != "GET" && !s.restapi_username.empty()) r.basic_auth = s.restapi_username + ":" + s.restapi_password;
    r.allow_http_credentials = s.restapi_allow_http_credentials;
    r.ca_file = s.restapi_cafile;
    return r;
}

namespace {
WatchdogMode watchdog_mode(int m) {
    return m == 2 ? WatchdogMode::Required : m == 1 ? WatchdogMode::Automatic : WatchdogMode::Off;
}
}  // namespace

Leadership::Leadership(const EngineSettings &s, ClusterLink &link, Outbox &out, Background &bg, PeerHttp http,
                       Clock clock)
    : s_(s),
      link_(link),
      out_(out),
      bg_(bg),
      http_(std::move(http)),
      clock_(std::move(clock)),
      box_(s.data_dir.empty() ? std::string() : s.data_dir + "/pg_ha.failsafe"),
      watchdog_(s.watchdog_device.empty() ? Watchdog::kDefaultDevice : s.watchdog_device,
                watchdog_mode(s.watchdog_mode), s.watchdog_safety_margin) {}

std::int64_t Leadership::lease_deadline() const {
    if (!is_leader_) return 0;
    // failsafe_mode: every member confirmed it will not take over before this.
    std::int64_t lease = failsafe_deadline_;
    std::int64_t sent = link_.last_confirmed_send_ms();
    int timeout = link_.negotiated_timeout_ms();
    // While disconnected, what the server answered before still bounds its expiry.
    if (sent == 0 || timeout <= 0 || sent < lease_floor_ms_) return lease;
    // Only while the view shows our session owns the lock (review F10).
    if (!link_.owns_leader_znode()) return lease;
    return std::max(lease, sent + timeout - s_.lease_safety_margin);
}

bool Leadership::check_clocks(std::int64_t wall_ms) {
    const std::int64_t now = clock_();
    bool revoked = false;
    if (last_clock_ms_ != 0) {
        const std::int64_t gap = (wall_ms - last_wall_ms_) - (now - last_clock_ms_);
        if (gap > 1000) {
            lease_floor_ms_ = now;
            failsafe_deadline_ = 0;
            if (is_leader_) {
                revoked = true;
                out_.log("the wall clock moved " + std::to_string(gap) +
                         " ms further than the lease clock since the last step (was this machine paused?): no "
                         "write commits until ZooKeeper answers a request sent from now on");
            }
        }
    }
    last_wall_ms_ = wall_ms;
    last_clock_ms_ = now;
    return revoked;
}

void Leadership::adopt(const Decision &d, bool dcs_ok) {
    // Without a fresh view leadership is unknown: keep it, the lease bounds it.
    if (!dcs_ok) return;
    bool was = is_leader_;
    is_leader_ = d.is_leader;
    if (!is_leader_ && !d.has(ActionKind::AcquireLeader)) box_.release();
    if (is_leader_ && !was) {
        leader_since_ms_ = clock_();
        out_.log("this node (" + s_.node_name + ") now holds the leader lock");
    }
    if (!is_leader_ && was) out_.log("this node (" + s_.node_name + ") no longer holds the leader lock");
}

void Leadership::on_session_expired(LocalRole role) {
    const std::int64_t now = clock_();
    const ClusterView &v = link_.view();
    if (is_leader_ && role == LocalRole::Primary && failsafe_deadline_ <= now && !v.config.pause) {
        out_.log("the leader's ZooKeeper session expired: fencing and shutting down to rejoin as a standby");
        out_.fence_and_stop_now();
    }
    if (failsafe_deadline_ <= now) is_leader_ = false;
}

int Leadership::peer_timeout_ms() const {
    const ClusterView &v = link_.view();
    const int ttl_ms = v.config_present ? v.config.ttl_ms : 30000;
    return std::max(300, std::min(2000, ttl_ms / 4));
}

// Like Patroni's _is_healthiest_node: ask every other member's API where it
// stands, so a stale znode cannot make a lagging node the leader. The answers
// are good for one second after they arrived.
bool Leadership::peers_ready(Observation &obs) {
    const std::int64_t now = clock_();
    if (peers_done_ms_ != 0 && now - peers_done_ms_ < 1000) {
        obs.peers_checked = true;
        obs.peer_positions = peer_positions_;
        obs.vote_positions = vote_positions_;
        obs.primaries_alive = primaries_alive_;
        return true;
    }
    if (peers_in_flight_) return false;
    std::vector<PeerRequest> reqs;
    const ClusterView &view = link_.view();
    for (const auto &m : view.members) {
        if (m.name == s_.node_name || m.api_url.empty()) continue;
        reqs.push_back(peer_request(s_, m.name, m.api_url));
    }
    // failsafe_mode: also ask the members the `failsafe` key lists, so that a
    // leader whose member znode expired while it runs on promises is seen
    // (review F3b).
    if (view.config.failsafe_mode && view.failsafe)
        for (const auto &f : *view.failsafe)
            if (f.first != s_.node_name && !f.second.empty() && !view.member(f.first))
                reqs.push_back(peer_request(s_, f.first, f.second));
    if (reqs.empty()) {
        obs.peers_checked = true;
        obs.peer_positions.clear();
        obs.vote_positions.clear();
        obs.primaries_alive.clear();
        return true;
    }
    peers_in_flight_ = true;
    const int timeout = peer_timeout_ms();
    PeerHttp http = http_;
    bg_.submit([this, reqs, timeout, http]() -> Background::Continuation {
        auto replies = http(reqs, timeout);
        return [this, replies] {
            peers_in_flight_ = false;
            peers_done_ms_ = clock_();
            peer_positions_.clear();
            vote_positions_.clear();
            primaries_alive_.clear();
            for (const auto &rep : replies) {
                if (!rep.ok) {
                    out_.log("failover check: " + rep.name + " did not answer (" + rep.error + ")");
                    continue;
                }
                PeerStatus st = parse_patroni_status(rep.body);
                if (!st.valid) {
                    out_.log("failover check: " + rep.name + " answered garbage: " + st.error);
                    continue;
                }
                if (st.state != "running") continue;
                if (!st.in_recovery) {
                    primaries_alive_.push_back(rep.name);
                    continue;
                }
                vote_positions_[rep.name] = st.position;
                if (!st.nofailover) peer_positions_[rep.name] = st.position;
            }
            link_.request_decision();  // decide again with the answers
        };
    });
    return false;
}

// failsafe_mode on a leader without ZooKeeper: POST /failsafe to every other
// member the `failsafe` key lists (the members when ZooKeeper last answered;
// review F3). When every one of them, and at least one, accepted, none of
// them takes over before the shortest promise it stated ends, counted from
// our send time, so the lease may run until then (minus the margin).
void Leadership::failsafe_tick(LocalRole role, bool dcs_ok) {
    const ClusterView &v = link_.view();
    const std::int64_t now = clock_();
    if (dcs_ok) failsafe_alone_logged_ = false;
    if (!v.config.failsafe_mode || !is_leader_ || role != LocalRole::Primary || dcs_ok) return;
    if (failsafe_in_flight_ || now < next_failsafe_ms_) return;
    const int ttl_ms = v.config.ttl_ms;
    next_failsafe_ms_ = now + std::max(1000, ttl_ms / 4);
    nlohmann::json body = {{"name", s_.node_name}, {"conn_url", s_.member_conn_url()}, {"api_url", s_.member_api_url()}};
    std::vector<PeerRequest> reqs;
    if (v.failsafe && v.failsafe_valid)
        for (const auto &f : *v.failsafe) {
            if (f.first == s_.node_name) continue;
            Member m;
            m.api_url = f.second;
            PeerRequest r = peer_request(s_, f.first, m.api_endpoint("/failsafe"), "POST");
            r.body = json_text(body);
            reqs.push_back(r);
        }
    if (reqs.empty()) {
        // Zero confirmations prove nothing (review F3a): the lease runs out.
        if (!failsafe_alone_logged_)
            out_.log(std::string("failsafe mode: ZooKeeper is unreachable and ") +
                     (v.failsafe ? "the failsafe key lists no other member" : "there is no failsafe key") +
                     " that could confirm this leader: the lease is not extended");
        failsafe_alone_logged_ = true;
        return;
    }
    failsafe_in_flight_ = true;
    const int timeout = peer_timeout_ms();
    const int margin = s_.lease_safety_margin;
    PeerHttp http = http_;
    Clock clock = clock_;
    bg_.submit([this, reqs, timeout, http, clock, margin]() -> Background::Continuation {
        const std::int64_t sent = clock();
        auto replies = http(reqs, timeout);
        return [this, replies, sent, margin, n = reqs.size()] {
            failsafe_in_flight_ = false;
            bool all = replies.size() == n;
            int shortest = 0;
            for (const auto &rep : replies) {
                int promise = 0;
                if (!rep.ok || rep.status != 200 || !parse_failsafe_accepted(rep.body, promise)) {
                    all = false;
                    out_.log("failsafe: " + rep.name + " did not accept (" +
                             (rep.ok ? std::to_string(rep.status) + " " + rep.body.substr(0, 200) : rep.error) + ")");
                    continue;
                }
                shortest = shortest == 0 ? promise : std::min(shortest, promise);
            }
            if (!all || shortest <= 0 || !is_leader_ || link_.dcs_ok()) return;
            if (failsafe_deadline_ <= clock_())
                out_.log("failsafe mode: ZooKeeper is unreachable but every member in the failsafe key confirmed "
                         "this leader; continuing as primary");
            failsafe_deadline_ = std::max(failsafe_deadline_, sent + shortest - margin);
        };
    });
}

std::string Leadership::cannot_lead() const {
    // The lease must outlast the next renewal (every third of the session
    // timeout) by a margin the operator chose; a larger margin is honoured,
    // not capped (review F9), so it can leave no usable lease at all.
    const ClusterView &v = link_.view();
    int timeout = link_.negotiated_timeout_ms();
    if (timeout <= 0) timeout = v.config_present ? v.config.ttl_ms : 30000;
    if (std::string why = lease_margin_problem(s_.lease_safety_margin, timeout); !why.empty()) return why;
    // required mode: is the device there at all? (Opening a real device
    // would arm it, so only look.)
    if (watchdog_.mode() != WatchdogMode::Required) return "";
    struct stat st {};
    const std::string &dev = watchdog_.device();
    if (::stat(dev.c_str(), &st) != 0)
        return "watchdog is required but " + dev + " does not exist (" + std::strerror(errno) + ")";
    if (!S_ISCHR(st.st_mode) && !S_ISFIFO(st.st_mode)) return "watchdog is required but " + dev + " is not a device";
    if (::access(dev.c_str(), W_OK) != 0)
        return "watchdog is required but " + dev + " is not writable by this user (" + std::strerror(errno) + ")";
    const int ttl_ms = link_.view().config.ttl_ms;
    if (watchdog_timeout_for(ttl_ms / 1000, s_.watchdog_safety_margin) < kMinLeaderWatchdogTimeout)
        return "watchdog is required but ttl " + seconds_text(ttl_ms) + " s leaves no timeout of " +
               std::to_string(kMinLeaderWatchdogTimeout) + " whole seconds or more after the safety margin";
    return "";
}

// Leader: armed, kept alive every loop (a stalled loop stops the keepalives
// and the device resets the host). Not leader, or paused (as Patroni): disarmed.
void Leadership::tend_watchdog(LocalRole role) {
    if (watchdog_.mode() == WatchdogMode::Off) return;
    std::string msg;
    if (is_leader_ && !out_.fence && !link_.view().config.pause) {
        bool ok = watchdog_.activate(link_.view().config.ttl_ms / 1000, msg, kMinLeaderWatchdogTimeout);
        if (ok && watchdog_.active()) ok = watchdog_.keepalive(msg);
        if (!msg.empty() && msg != watchdog_msg_) out_.log("watchdog: " + msg);
        watchdog_msg_ = msg;
        watchdog_failed_ = !ok;
        if (!ok) {
            // required and not working: give the lock back, and stop writing.
            out_.log("watchdog is required but not working: giving up leadership");
            link_.remove("leader");
            is_leader_ = false;
            if (role == LocalRole::Primary) out_.fence_and_stop();
        }
    } else if (watchdog_.active()) {
        if (!watchdog_.disable(msg)) out_.log("watchdog: " + msg);
        else out_.log("watchdog disarmed");
        watchdog_msg_.clear();
    }
}

void Leadership::disarm_watchdog_on_exit() { watchdog_.disable(); }

}  // namespace pgha
