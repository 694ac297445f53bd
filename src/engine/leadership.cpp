#include "engine/leadership.hpp"
#include "core/json_text.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/patroni_codec.hpp"

namespace pgha {

bool FailsafeBox::accept(const Member &leader, std::int64_t now_ms) {
    std::lock_guard<std::mutex> g(mu_);
    if (claimed_) return false;
    leader_ = leader;
    at_ms_ = now_ms;
    return true;
}

bool FailsafeBox::claim(std::int64_t now_ms, int ttl_ms) {
    std::lock_guard<std::mutex> g(mu_);
    if (at_ms_ != 0 && now_ms - at_ms_ < ttl_ms) return false;
    claimed_ = true;
    return true;
}

void FailsafeBox::release() {
    std::lock_guard<std::mutex> g(mu_);
    claimed_ = false;
}

std::optional<Member> FailsafeBox::active(std::int64_t now_ms, int ttl_ms) const {
    std::lock_guard<std::mutex> g(mu_);
    if (at_ms_ == 0 || now_ms - at_ms_ >= ttl_ms) return std::nullopt;
    return leader_;
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

void Leadership::check_clocks(std::int64_t wall_ms) {
    const std::int64_t now = clock_();
    if (last_clock_ms_ != 0) {
        const std::int64_t gap = (wall_ms - last_wall_ms_) - (now - last_clock_ms_);
        if (gap > 1000) {
            lease_floor_ms_ = now;
            failsafe_deadline_ = 0;
            if (is_leader_)
                out_.log("the wall clock moved " + std::to_string(gap) +
                         " ms further than the lease clock since the last step (was this machine paused?): no "
                         "write commits until ZooKeeper answers a request sent from now on");
        }
    }
    last_wall_ms_ = wall_ms;
    last_clock_ms_ = now;
}

void Leadership::adopt(const Decision &d, bool dcs_ok) {
    // Without a fresh view leadership is unknown: keep it, the lease bounds it.
    if (!dcs_ok) return;
    bool was = is_leader_;
    is_leader_ = d.is_leader;
    if (!is_leader_ && !d.has(ActionKind::AcquireLeader)) box_.release();
    if (is_leader_ && !was) out_.log("this node (" + s_.node_name + ") now holds the leader lock");
    if (!is_leader_ && was) out_.log("this node (" + s_.node_name + ") no longer holds the leader lock");
}

void Leadership::on_session_expired(LocalRole role) {
    const std::int64_t now = clock_();
    const ClusterView &v = link_.view();
    if (is_leader_ && role == LocalRole::Primary && failsafe_deadline_ <= now && !v.config.pause) {
        out_.log("the leader's ZooKeeper session expired: fencing and shutting down to rejoin as a standby");
        out_.fence_and_stop();
    }
    if (failsafe_deadline_ <= now) is_leader_ = false;
}

int Leadership::peer_timeout_ms() const {
    const ClusterView &v = link_.view();
    int ttl_ms = (v.config_present ? v.config.ttl : 30) * 1000;
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
        obs.primaries_alive = primaries_alive_;
        return true;
    }
    if (peers_in_flight_) return false;
    std::vector<PeerRequest> reqs;
    for (const auto &m : link_.view().members) {
        if (m.name == s_.node_name || m.api_url.empty()) continue;
        reqs.push_back(peer_request(s_, m.name, m.api_url));
    }
    if (reqs.empty()) {
        obs.peers_checked = true;
        obs.peer_positions.clear();
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
                if (!st.nofailover) peer_positions_[rep.name] = st.position;
            }
            link_.request_decision();  // decide again with the answers
        };
    });
    return false;
}

// failsafe_mode on a leader without ZooKeeper: POST /failsafe to every member;
// when all accept, none of them will take over for ttl from the send time, so
// the lease may run until then (minus the margin).
void Leadership::failsafe_tick(LocalRole role, bool dcs_ok) {
    const ClusterView &v = link_.view();
    const std::int64_t now = clock_();
    if (!v.config.failsafe_mode || !is_leader_ || role != LocalRole::Primary || dcs_ok) return;
    if (failsafe_in_flight_ || now < next_failsafe_ms_) return;
    const int ttl_ms = v.config.ttl * 1000;
    next_failsafe_ms_ = now + std::max(1000, ttl_ms / 4);
    nlohmann::json body = {{"name", s_.node_name}, {"conn_url", s_.member_conn_url()}, {"api_url", s_.member_api_url()}};
    std::vector<PeerRequest> reqs;
    for (const auto &m : v.members) {
        if (m.name == s_.node_name) continue;
        PeerRequest r = peer_request(s_, m.name, m.api_endpoint("/failsafe"), "POST");
        r.body = json_text(body);
        reqs.push_back(r);
    }
    failsafe_in_flight_ = true;
    const int timeout = peer_timeout_ms();
    const int margin = s_.lease_safety_margin;
    PeerHttp http = http_;
    Clock clock = clock_;
    bg_.submit([this, reqs, timeout, http, clock, ttl_ms, margin]() -> Background::Continuation {
        const std::int64_t sent = clock();
        auto replies = http(reqs, timeout);
        return [this, replies, sent, ttl_ms, margin] {
            failsafe_in_flight_ = false;
            bool all = true;
            for (const auto &rep : replies) {
                if (!rep.ok || rep.status != 200 || rep.body != "Accepted") {
                    all = false;
                    out_.log("failsafe: " + rep.name + " did not accept (" +
                             (rep.ok ? std::to_string(rep.status) + " " + rep.body : rep.error) + ")");
                }
            }
            if (!all || !is_leader_ || link_.dcs_ok()) return;
            if (failsafe_deadline_ <= clock_())
                out_.log("failsafe mode: ZooKeeper is unreachable but every member confirmed this leader; "
                         "continuing as primary");
            failsafe_deadline_ = sent + ttl_ms - margin;
        };
    });
}

std::string Leadership::cannot_lead() const {
    // The lease must outlast the next renewal (every third of the session
    // timeout) by a margin the operator chose; a larger margin is honoured,
    // not capped (review F9), so it can leave no usable lease at all.
    const ClusterView &v = link_.view();
    int timeout = link_.negotiated_timeout_ms();
    if (timeout <= 0) timeout = (v.config_present ? v.config.ttl : 30) * 1000;
    if (s_.lease_safety_margin >= timeout * 2 / 3)
        return "pg_ha.lease_safety_margin (" + std::to_string(s_.lease_safety_margin) +
               " ms) leaves no usable lease with a ZooKeeper session timeout of " + std::to_string(timeout) +
               " ms (it must stay below two thirds of it: raise ttl or lower the margin)";
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
    const int ttl = link_.view().config.ttl;
    if (watchdog_timeout_for(ttl, s_.watchdog_safety_margin) == 0)
        return "watchdog is required but ttl " + std::to_string(ttl) + " s leaves no timeout after the safety margin";
    return "";
}

// Leader: armed, kept alive every loop (a stalled loop stops the keepalives
// and the device resets the host). Not leader, or paused (as Patroni): disarmed.
void Leadership::tend_watchdog(LocalRole role) {
    if (watchdog_.mode() == WatchdogMode::Off) return;
    std::string msg;
    if (is_leader_ && !out_.fence && !link_.view().config.pause) {
        bool ok = watchdog_.activate(link_.view().config.ttl, msg, 2);
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
