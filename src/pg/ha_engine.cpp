// The HA engine: everything the worker does that is not a PostgreSQL call.
// Runs on the worker's main thread only (called from worker.cpp through
// engine_api.h). Owns the ZooKeeper session, the HTTP server thread and a
// libpq connection to the local server. Never includes PostgreSQL headers.
#include "core/no_postgres.hpp"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>
#include <memory>
#include <deque>
#include <future>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include <zookeeper/zookeeper.h>

#include "core/cluster.hpp"
#include "core/ha_state_machine.hpp"
#include "core/node_settings.hpp"
#include "core/patroni_codec.hpp"
#include "core/snapshot.hpp"
#include "core/timeutil.hpp"
#include "core/version.hpp"
#include "dcs/cluster_store.hpp"
#include "dcs/zk_session.hpp"
#include "http/api_server.hpp"
#include "http/peer_client.hpp"
#include "pg/engine_api.h"
#include "pg/local_conn.hpp"
#include "watchdog/watchdog.hpp"

namespace pgha {
namespace {

std::string s_or(const char *p) { return p ? std::string(p) : std::string(); }

// Another endpoint of the API a member published as ".../patroni".
std::string api_endpoint(const std::string &api_url, const std::string &path) {
    return api_url.empty() ? "" : api_url.substr(0, api_url.rfind('/')) + path;
}

ApiServerOptions api_options(const NodeSettings &s) {
    ApiServerOptions o;
    o.auth_username = s.restapi_username;
    o.auth_password = s.restapi_password;
    o.certfile = s.restapi_certfile;
    o.keyfile = s.restapi_keyfile;
    o.keyfile_password = s.restapi_keyfile_password;
    o.cafile = s.restapi_cafile;
    o.verify_client = s.restapi_verify_client;
    if (o.verify_client.empty()) o.verify_client = "none";
    return o;
}

std::string iso_now() {
    std::time_t t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[64];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S+00:00", &tm);
    return buf;
}

std::string hex(const std::string &bytes) {
    static const char *d = "0123456789abcdef";
    std::string out;
    for (unsigned char c : bytes) {
        out += d[c >> 4];
        out += d[c & 15];
    }
    return out;
}

std::string unhex(const std::string &h) {
    std::string out;
    for (std::size_t i = 0; i + 1 < h.size(); i += 2) out += static_cast<char>(std::stoi(h.substr(i, 2), nullptr, 16));
    return out;
}

}  // namespace

// What a leader that lost ZooKeeper told us over POST /failsafe (written by
// HTTP threads, read by the engine; never touches PostgreSQL).
//
// A promise given to a failsafe leader and our own bid for the lock exclude
// each other under one mutex: once we accepted a failsafe heartbeat we do not
// take the lock for ttl, and once we bid for (or hold) the lock we refuse
// heartbeats, so the old leader cannot extend its lease past our promotion.
class FailsafeBox {
  public:
    bool accept(const Member &leader, std::int64_t now_ms) {
        std::lock_guard<std::mutex> g(mu_);
        if (claimed_) return false;
        leader_ = leader;
        at_ms_ = now_ms;
        return true;
    }
    // Before creating the leader znode: false while a promise is active.
    bool claim(std::int64_t now_ms, int ttl_ms) {
        std::lock_guard<std::mutex> g(mu_);
        if (at_ms_ != 0 && now_ms - at_ms_ < ttl_ms) return false;
        claimed_ = true;
        return true;
    }
    void release() {
        std::lock_guard<std::mutex> g(mu_);
        claimed_ = false;
    }
    std::optional<Member> active(std::int64_t now_ms, int ttl_ms) const {
        std::lock_guard<std::mutex> g(mu_);
        if (at_ms_ == 0 || now_ms - at_ms_ >= ttl_ms) return std::nullopt;
        return leader_;
    }

  private:
    mutable std::mutex mu_;
    Member leader_;
    std::int64_t at_ms_ = 0;
    bool claimed_ = false;
};

// An operator request (SQL through shared memory, or REST), carried out by
// the engine on the worker's thread; `done` is called exactly once there.
struct Command {
    std::string kind;  // switchover, failover, pause, resume, set_config, reload, restart, reinitialize
    nlohmann::json args = nlohmann::json::object();
    std::int64_t deadline_ms = 0;
    std::function<void(int status, const std::string &message)> done;
    // progress, engine only
    bool answered = false;
    bool wrapped = false;
    std::uint64_t need_view = 0;  // validate against a cluster read that started after the request
    bool waiting = false;  // the failover key is written; waiting for the new leader
    bool key_seen = false;  // a cluster read showed our failover key
    std::string old_leader, target;
    std::int64_t next_probe_ms = 0;
};

// HTTP threads push, the engine drains; the eventfd wakes the worker's loop.
class CommandQueue {
  public:
    CommandQueue() : fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}
    ~CommandQueue() {
        if (fd_ >= 0) ::close(fd_);
    }
    CommandQueue(const CommandQueue &) = delete;
    CommandQueue &operator=(const CommandQueue &) = delete;
    void push(std::shared_ptr<Command> c) {
        {
            std::lock_guard<std::mutex> g(mu_);
            q_.push_back(std::move(c));
        }
        std::uint64_t one = 1;
        if (fd_ >= 0 && ::write(fd_, &one, sizeof one) < 0) { /* counter full: already signalled */ }
    }
    std::vector<std::shared_ptr<Command>> drain() {
        std::uint64_t v;
        if (fd_ >= 0 && ::read(fd_, &v, sizeof v) < 0) { /* nothing signalled */ }
        std::lock_guard<std::mutex> g(mu_);
        std::vector<std::shared_ptr<Command>> out(q_.begin(), q_.end());
        q_.clear();
        return out;
    }
    int fd() const { return fd_; }

  private:
    int fd_;
    std::mutex mu_;
    std::deque<std::shared_ptr<Command>> q_;
};

// Switchover on the old leader, one phase per loop iteration (the loop spins
// every 10 ms meanwhile).
struct Handover {
    enum Phase { Start, Fenced, CatchUp, Released } phase = Start;
    std::string target;
    Lsn lsn = 0;
    std::int64_t deadline_ms = 0;
    std::int64_t drain_until_ms = 0;
};

class Engine {
  public:
    explicit Engine(const NodeSettings &s);
    ~Engine();
    bool init(std::string &error);
    void wait_spec(PgHaWaitSpec &spec);
    void step(const PgHaLocal &local, bool r, bool w, bool woken, PgHaOutputs &out);
    void shutdown(bool release);

  private:
    // settings
    std::string scope_, ns_, name_, zk_hosts_, connect_address_, api_listen_, api_connect_address_;
    std::string superuser_, superuser_password_, repl_user_, repl_password_, socket_dir_, data_dir_;
    int port_;
    Tags tags_;
    int margin_ms_;
    bool enforcement_;
    Watchdog watchdog_;
    int watchdog_margin_s_;
    std::string watchdog_msg_;
    std::string watchdog_precheck() const;
    void tend_watchdog();

    ZkSession zk_;
    std::unique_ptr<ClusterStore> store_;
    SnapshotBox box_;
    ApiServer api_;
    std::string api_scheme_ = "http";
    std::string api_auth_;  // "user:password" for unsafe calls to other members
    std::string api_cafile_;
    PeerRequest peer(const std::string &name, const std::string &url, const std::string &method = "GET") const {
        PeerRequest r;
        r.name = name;
        r.url = url;
        r.method = method;
        if (method != "GET") r.basic_auth = api_auth_;
        r.ca_file = api_cafile_;
        return r;
    }
    bool api_started_ = false;
    std::int64_t api_retry_ms_ = 0;
    LocalConn local_conn_;

    PgHaLocal local_{};
    std::string primary_conninfo_;
    ClusterView view_;
    bool view_ok_ = false;
    std::uint64_t view_seq_ = 0;  // completed cluster reads
    std::int64_t dcs_last_seen_ = 0;
    bool read_requested_ = true;
    std::int64_t next_read_ms_ = 0;
    std::int64_t zk_retry_ms_ = 0;
    bool base_ensured_ = false, base_pending_ = false;
    std::int64_t saved_session_ = 0;
    int requested_timeout_ms_ = 30000;

    bool is_leader_ = false;
    std::string role_ = "uninitialized";
    std::string message_;
    std::string last_member_json_;
    std::int64_t last_member_session_ = 0;
    std::int64_t promote_requested_ms_ = 0;
    bool promote_now_ = false;
    bool fence_ = false, shutdown_requested_ = false;
    std::int64_t last_follow_ms_ = 0;
    std::int64_t last_slots_ms_ = 0;
    bool probe_ok_ = false;
    std::vector<WalSender> replication_;
    std::int64_t history_written_tl_ = 0;
    FailsafeBox failsafe_box_;
    std::int64_t failsafe_deadline_ = 0;   // lease extension confirmed by every member
    std::int64_t next_failsafe_ms_ = 0;
    int peer_timeout_ms() const;
    void check_peers(Observation &obs);
    void failsafe_round(std::int64_t now);
    std::optional<HttpReply> management(const NodeSnapshot *snap, const HttpRequestView &req);
    CommandQueue queue_;
    std::vector<std::shared_ptr<Command>> commands_;
    std::uint64_t sql_request_seen_ = 0;
    std::uint64_t reply_id_ = 0;
    int reply_status_ = 0;
    std::string reply_message_;
    std::vector<int> protected_pids_;  // SQL callers waiting for a switchover: not terminated
    std::unique_ptr<Handover> handover_;
    bool shutdown_immediate_ = false;
    std::int64_t shutdown_not_before_ms_ = 0;
    std::int64_t shutdown_requested_ms_ = 0;
    LocalRole last_role_ = LocalRole::Stopped;
    std::int64_t streaming_seen_ms_ = 0;  // last time the WAL receiver streamed (or we were not a standby)
    void take_sql_request(const PgHaLocal &local);
    void start_command(const std::shared_ptr<Command> &cmd);
    void poll_command(Command &c, std::int64_t now);
    void advance_handover(std::int64_t now);
    std::string protected_pids_array() const;
    void abort_handover(const std::string &why);
    void clear_failover_key();
    void write_config(const nlohmann::json &patch, const std::function<void(int, const std::string &)> &done);
    HttpReply http_command(const std::string &kind, const nlohmann::json &args, int timeout_ms);

    std::vector<std::string> logs_;
    std::vector<const char *> log_ptrs_;
    std::string status_json_;

    std::string session_file() const { return data_dir_ + "/pg_ha.zksession"; }
    void log(const std::string &line) { logs_.push_back(line); }
    void ensure_zk(std::int64_t now);
    void save_session();
    bool load_session(ZkCredentials &c);
    void start_read();
    void on_cluster(bool ok, const ClusterView &v, const std::string &err);
    void decide_and_act();
    LocalState local_state();
    LocalRole local_role() const;
    void probe_local();
    void execute(const Decision &d, const Observation &obs);
    void touch_member(const LocalState &ls);
    void publish(const LocalState &ls);
    std::int64_t lease_deadline() const;
    std::string member_conn_url() const { return "postgres://" + connect_address_ + "/postgres"; }
    std::string member_api_url() const { return api_scheme_ + "://" + api_connect_address_ + "/patroni"; }
    void follow(const std::string &leader);
    void ensure_slots(const std::vector<std::string> &names);
    void record_promotion(const LocalState &ls);
};

Engine::Engine(const NodeSettings &s)
    : scope_(s.scope),
      ns_(s.ns),
      name_(s.node_name),
      zk_hosts_(s.zookeeper_hosts),
      connect_address_(s.connect_address),
      api_listen_(s.api_listen),
      api_connect_address_(s.api_connect_address),
      superuser_(s.superuser),
      superuser_password_(s.superuser_password),
      repl_user_(s.replication_user),
      repl_password_(s.replication_password),
      socket_dir_(s.socket_dir),
      data_dir_(s.data_dir),
      port_(s.port),
      margin_ms_(s.lease_safety_margin),
      enforcement_(s.lease_enforcement),
      watchdog_(s.watchdog_device.empty() ? Watchdog::kDefaultDevice : s.watchdog_device,
                s.watchdog_mode == kWatchdogRequired ? WatchdogMode::Required
                : s.watchdog_mode == kWatchdogAutomatic ? WatchdogMode::Automatic
                                                        : WatchdogMode::Off,
                s.watchdog_safety_margin),
      watchdog_margin_s_(s.watchdog_safety_margin),
      api_(api_options(s)),
      local_conn_("host=" + LocalConn::quote_literal(socket_dir_) + " port=" + std::to_string(s.port) +
                  " dbname=postgres user=" + LocalConn::quote_literal(superuser_) +
                  " password=" + LocalConn::quote_literal(superuser_password_) +
                  " application_name=pg_ha_worker connect_timeout=2 options='-c statement_timeout=5000'") {
    tags_.nofailover = s.nofailover;
    tags_.noloadbalance = s.noloadbalance;
    tags_.nosync = s.nosync;
    tags_.clonefrom = s.clonefrom;
    store_ = std::make_unique<ClusterStore>(zk_, ns_, scope_);
    if (!s.restapi_certfile.empty()) api_scheme_ = "https";
    if (!s.restapi_username.empty()) api_auth_ = s.restapi_username + ":" + s.restapi_password;
    api_cafile_ = s.restapi_cafile;
}

Engine::~Engine() { shutdown(false); }

bool Engine::init(std::string &error) {
    if (scope_.empty()) { error = "pg_ha.scope is not set"; return false; }
    if (name_.empty()) { error = "pg_ha.node_name is not set"; return false; }
    if (zk_hosts_.empty()) { error = "pg_ha.zookeeper_hosts is not set"; return false; }
    std::string h;
    int p;
    if (!parse_host_port(connect_address_, h, p)) {
        error = "pg_ha.connect_address \"" + connect_address_ + "\" is not host:port";
        return false;
    }
    if (!parse_host_port(api_connect_address_, h, p)) {
        error = "pg_ha.api_connect_address \"" + api_connect_address_ + "\" is not host:port";
        return false;
    }
    zk_.set_watcher([this](const std::string &) { read_requested_ = true; });
    api_.set_management_hook(
        [this](const NodeSnapshot *snap, const HttpRequestView &req) { return management(snap, req); });
    return true;
}

void Engine::shutdown(bool release) {
    api_.stop();
    if (release) watchdog_.disable();  // magic close: a clean stop must not reset the host
    if (zk_.is_open()) {
        if (release && is_leader_ && !handover_) {
            // A stopping primary keeps its lock: the worker exits before the
            // shutdown checkpoint is written and streamed, and a standby that
            // took over now would fork before it (the old primary would need
            // a rewind). Restarted within ttl, the node resumes the session and
            // leads on; otherwise the session expires after ttl and the
            // standbys, which by then have all WAL, race for the lock. To move
            // the primary on purpose, use a switchover.
            zk_.abandon();
        } else if (release) {
            // A standby's clean stop leaves the cluster at once.
            std::remove(session_file().c_str());
            zk_.close();
        }
    }
}

bool Engine::load_session(ZkCredentials &c) {
    std::ifstream in(session_file());
    std::string who, sid, pw;
    if (!(in >> who >> sid >> pw) || who != name_) return false;  // a clone carries its source's file
    try {
        c.session_id = static_cast<std::int64_t>(std::stoull(sid, nullptr, 16));
        c.password = unhex(pw);
    } catch (const std::exception &) {
        return false;
    }
    return c.valid();
}

void Engine::save_session() {
    ZkCredentials c = zk_.credentials();
    if (!c.valid() || c.session_id == saved_session_) return;
    const std::string tmp = session_file() + ".tmp";
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) return;
    char sid[32];
    std::snprintf(sid, sizeof sid, "%llx", static_cast<unsigned long long>(c.session_id));
    std::string line = name_ + " " + sid + " " + hex(c.password) + "\n";
    bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
    ::fsync(fd);
    ::close(fd);
    if (ok && std::rename(tmp.c_str(), session_file().c_str()) == 0) saved_session_ = c.session_id;
}

void Engine::ensure_zk(std::int64_t now) {
    if (zk_.is_open() && zk_.expired()) {
        log("ZooKeeper session expired; starting a new session");
        std::remove(session_file().c_str());
        zk_.close();
        base_ensured_ = base_pending_ = false;
        view_ok_ = false;
        if (is_leader_ && local_role() == LocalRole::Primary && failsafe_deadline_ <= now && !view_.config.pause) {
            // The lock is gone with the session: someone else may lead already.
            log("the leader's ZooKeeper session expired: fencing and shutting down to rejoin as a standby");
            fence_ = shutdown_requested_ = true;
        }
        if (failsafe_deadline_ <= now) is_leader_ = false;
    }
    if (zk_.is_open() || now < zk_retry_ms_) return;
    ZkCredentials creds;
    bool resume = load_session(creds);
    if (view_.config_present && !resume) requested_timeout_ms_ = view_.config.ttl * 1000;
    std::string err;
    if (!zk_.open(zk_hosts_, requested_timeout_ms_, resume ? &creds : nullptr, err)) {
        log(err + " (check pg_ha.zookeeper_hosts); retrying in 5 s");
        zk_retry_ms_ = now + 5000;
        return;
    }
    if (resume) log("resuming ZooKeeper session 0x" + [&] {
        char b[32];
        std::snprintf(b, sizeof b, "%llx", static_cast<unsigned long long>(creds.session_id));
        return std::string(b);
    }());
    read_requested_ = true;
}

void Engine::wait_spec(PgHaWaitSpec &spec) {
    spec.zk_fd = -1;
    spec.zk_read = spec.zk_write = false;
    spec.wake_fd = queue_.fd();
    std::int64_t now = ZkSession::steady_ms();
    long timeout = 1000;
    if (zk_.is_open()) {
        ZkInterest in = zk_.interest();
        spec.zk_fd = in.fd;
        spec.zk_read = in.read;
        spec.zk_write = in.write;
        timeout = in.timeout_ms;
    }
    if (next_read_ms_ > now) timeout = std::min<long>(timeout, static_cast<long>(next_read_ms_ - now));
    else timeout = 0;
    if (read_requested_ && zk_.connected() && !store_->reading()) timeout = 0;
    if (handover_ || !commands_.empty()) timeout = std::min<long>(timeout, 10);
    spec.timeout_ms = std::max<long>(0, std::min<long>(timeout, 1000));
}

std::int64_t Engine::lease_deadline() const {
    if (!is_leader_) return 0;
    // failsafe_mode: every member confirmed it will not take over before this.
    std::int64_t lease = failsafe_deadline_;
    // While disconnected, what the server answered before still bounds its expiry.
    if (!zk_.is_open() || zk_.expired()) return lease;
    std::int64_t sent = zk_.last_answered_send_ms();
    int timeout = zk_.negotiated_timeout_ms();
    if (sent == 0 || timeout <= 0) return lease;
    int margin = std::min(margin_ms_, timeout / 4);
    return std::max(lease, sent + timeout - margin);
}

// required mode, before bidding for the lock: is the device there at all?
// (Opening a real device would arm it, so only look.)
std::string Engine::watchdog_precheck() const {
    if (watchdog_.mode() != WatchdogMode::Required) return "";
    struct stat st {};
    const std::string &dev = watchdog_.device();
    if (::stat(dev.c_str(), &st) != 0)
        return "watchdog is required but " + dev + " does not exist (" + std::strerror(errno) + ")";
    if (!S_ISCHR(st.st_mode) && !S_ISFIFO(st.st_mode)) return "watchdog is required but " + dev + " is not a device";
    if (::access(dev.c_str(), W_OK) != 0)
        return "watchdog is required but " + dev + " is not writable by this user (" + std::strerror(errno) + ")";
    if (watchdog_timeout_for(view_.config.ttl, watchdog_margin_s_) == 0)
        return "watchdog is required but ttl " + std::to_string(view_.config.ttl) + " s leaves no timeout after the safety margin";
    return "";
}

// Leader: armed, kept alive every loop (a stalled loop stops the keepalives
// and the device resets the host). Not leader: disarmed with the magic close.
void Engine::tend_watchdog() {
    if (watchdog_.mode() == WatchdogMode::Off) return;
    std::string msg;
    if (is_leader_ && !fence_) {
        bool ok = watchdog_.activate(view_.config.ttl, msg, 2);
        if (ok && watchdog_.active()) ok = watchdog_.keepalive(msg);
        if (!msg.empty() && msg != watchdog_msg_) log("watchdog: " + msg);
        watchdog_msg_ = msg;
        if (!ok) {
            // required and not working: give the lock back, and stop writing.
            log("watchdog is required but not working: giving up leadership");
            store_->remove("leader", -1, [this](int) { read_requested_ = true; });
            is_leader_ = false;
            if (local_role() == LocalRole::Primary) fence_ = shutdown_requested_ = true;
        }
    } else if (watchdog_.active()) {
        if (!watchdog_.disable(msg)) log("watchdog: " + msg);
        else log("watchdog disarmed");
        watchdog_msg_.clear();
    }
}

int Engine::peer_timeout_ms() const {
    int ttl_ms = (view_.config_present ? view_.config.ttl : 30) * 1000;
    return std::max(300, std::min(2000, ttl_ms / 4));
}

// Like Patroni's _is_healthiest_node: ask every other member's API where it
// stands, so a stale znode cannot make a lagging node the leader.
void Engine::check_peers(Observation &obs) {
    std::vector<PeerRequest> reqs;
    for (const auto &m : view_.members) {
        if (m.name == name_ || m.api_url.empty()) continue;
        reqs.push_back(peer(m.name, m.api_url));
    }
    obs.peers_checked = true;
    obs.peer_positions.clear();
    obs.primaries_alive.clear();
    if (reqs.empty()) return;
    for (const auto &rep : http_parallel(reqs, peer_timeout_ms())) {
        if (!rep.ok) {
            log("failover check: " + rep.name + " did not answer (" + rep.error + ")");
            continue;
        }
        PeerStatus st = parse_patroni_status(rep.body);
        if (!st.valid) {
            log("failover check: " + rep.name + " answered garbage: " + st.error);
            continue;
        }
        if (st.state != "running") continue;
        if (!st.in_recovery) {
            obs.primaries_alive.push_back(rep.name);
            continue;
        }
        if (!st.nofailover) obs.peer_positions[rep.name] = st.position;
    }
}

// failsafe_mode on a leader without ZooKeeper: POST /failsafe to every member;
// when all accept, none of them will take over for ttl from now, so the lease
// may run until then (minus the margin).
void Engine::failsafe_round(std::int64_t now) {
    const int ttl_ms = view_.config.ttl * 1000;
    next_failsafe_ms_ = now + std::max(1000, ttl_ms / 4);
    nlohmann::json body = {{"name", name_}, {"conn_url", member_conn_url()}, {"api_url", member_api_url()}};
    std::vector<PeerRequest> reqs;
    for (const auto &m : view_.members) {
        if (m.name == name_) continue;
        PeerRequest r = peer(m.name, api_endpoint(m.api_url, "/failsafe"), "POST");
        r.body = body.dump();
        reqs.push_back(r);
    }
    const std::int64_t sent = ZkSession::steady_ms();
    bool all = true;
    for (const auto &rep : http_parallel(reqs, peer_timeout_ms())) {
        if (!rep.ok || rep.status != 200 || rep.body != "Accepted") {
            all = false;
            log("failsafe: " + rep.name + " did not accept (" + (rep.ok ? std::to_string(rep.status) + " " + rep.body : rep.error) + ")");
        }
    }
    if (!all) return;
    const int margin = std::min(margin_ms_, ttl_ms / 4);
    if (failsafe_deadline_ <= now) log("failsafe mode: ZooKeeper is unreachable but every member confirmed this leader; continuing as primary");
    failsafe_deadline_ = sent + ttl_ms - margin;
}

std::optional<HttpReply> Engine::management(const NodeSnapshot *snap, const HttpRequestView &req) {
    // Runs on an HTTP thread: snapshot and thread-safe boxes only.
    if (req.method == "POST" && req.path == "/failsafe") {
        if (!snap || !snap->cluster.config.failsafe_mode) return HttpReply{502, "text/plain", "failsafe mode is off"};
        nlohmann::json j = nlohmann::json::parse(req.body, nullptr, false);
        if (!j.is_object() || !j.contains("name") || !j["name"].is_string() || !j.contains("conn_url") ||
            !j["conn_url"].is_string() || !j.contains("api_url") || !j["api_url"].is_string())
            return HttpReply{400, "text/plain", "expected {\"name\": ..., \"conn_url\": ..., \"api_url\": ...}"};
        if ((snap->role == "primary" && snap->state == "running") || snap->is_leader)
            return HttpReply{500, "text/plain", "Running as a leader"};
        Member m;
        m.name = j["name"].get<std::string>();
        m.conn_url = j["conn_url"].get<std::string>();
        m.api_url = j["api_url"].get<std::string>();
        m.state = "running";
        m.role = "primary";
        if (!failsafe_box_.accept(m, ZkSession::steady_ms()))
            return HttpReply{500, "text/plain", "Running as a leader"};
        return HttpReply{200, "text/plain", "Accepted"};
    }
    if (req.method == "POST" && (req.path == "/switchover" || req.path == "/failover")) {
        nlohmann::json j = nlohmann::json::parse(req.body, nullptr, false);
        if (!j.is_object()) return HttpReply{400, "text/plain", "Bad request: the body must be a JSON object"};
        for (const char *k : {"leader", "candidate", "member", "scheduled_at"})
            if (j.contains(k) && !j[k].is_null() && !j[k].is_string())
                return HttpReply{400, "text/plain", std::string("Bad request: \"") + k + "\" must be a string"};
        return http_command(req.path.substr(1), j, 35000);
    }
    if (req.method == "POST" && (req.path == "/restart" || req.path == "/reinitialize" || req.path == "/reload")) {
        nlohmann::json j = req.body.empty() ? nlohmann::json::object() : nlohmann::json::parse(req.body, nullptr, false);
        if (!j.is_object()) return HttpReply{400, "text/plain", "Bad request: the body must be a JSON object"};
        j["member"] = snap ? snap->name : "";
        return http_command(req.path.substr(1), j, 10000);
    }
    if ((req.method == "PATCH" || req.method == "PUT") && req.path == "/config") {
        nlohmann::json j = nlohmann::json::parse(req.body, nullptr, false);
        if (!j.is_object()) return HttpReply{400, "text/plain", "Bad request: the body must be a JSON object"};
        return http_command(req.method == "PUT" ? "replace_config" : "set_config", j, 10000);
    }
    return std::nullopt;
}

HttpReply Engine::http_command(const std::string &kind, const nlohmann::json &args, int timeout_ms) {
    // HTTP thread: hand the request to the engine and wait for its answer.
    auto prom = std::make_shared<std::promise<std::pair<int, std::string>>>();
    auto fut = prom->get_future();
    auto once = std::make_shared<std::atomic<bool>>(false);
    auto c = std::make_shared<Command>();
    c->kind = kind;
    c->args = args;
    c->deadline_ms = ZkSession::steady_ms() + timeout_ms;
    c->done = [prom, once](int st, const std::string &msg) {
        if (!once->exchange(true)) prom->set_value({st, msg});
    };
    queue_.push(c);
    if (fut.wait_for(std::chrono::milliseconds(timeout_ms + 3000)) != std::future_status::ready)
        return HttpReply{503, "text/plain", kind + " status unknown: no answer from the HA loop"};
    auto r = fut.get();
    return HttpReply{r.first, "text/plain", r.second};
}

void Engine::take_sql_request(const PgHaLocal &local) {
    if (local.request_id == 0 || local.request_id == sql_request_seen_ || !local.request_json) return;
    sql_request_seen_ = local.request_id;
    const std::uint64_t id = local.request_id;
    nlohmann::json j = nlohmann::json::parse(local.request_json, nullptr, false);
    auto c = std::make_shared<Command>();
    c->done = [this, id](int st, const std::string &msg) {
        reply_id_ = id;
        reply_status_ = st;
        reply_message_ = msg;
    };
    if (!j.is_object() || !j.contains("kind") || !j["kind"].is_string()) {
        c->done(400, "malformed request");
        return;
    }
    c->kind = j["kind"].get<std::string>();
    c->args = j.contains("args") && j["args"].is_object() ? j["args"] : nlohmann::json::object();
    int timeout = j.contains("timeout_ms") && j["timeout_ms"].is_number_integer() ? j["timeout_ms"].get<int>() : 30000;
    c->deadline_ms = ZkSession::steady_ms() + std::max(1000, timeout);
    if (local.request_pid > 0) protected_pids_.push_back(local.request_pid);
    commands_.push_back(c);
}

namespace {
std::string jstr(const nlohmann::json &j, const char *k) {
    return j.contains(k) && j[k].is_string() ? j[k].get<std::string>() : std::string();
}
}  // namespace

void Engine::start_command(const std::shared_ptr<Command> &cmd) {
    Command &c = *cmd;
    const auto &a = c.args;
    if (!view_ok_ || !zk_.connected()) {
        c.done(503, "ZooKeeper is not reachable from this node: cannot " + c.kind);
        return;
    }
    const std::string leader = view_.leader ? *view_.leader : "";
    if (c.kind == "switchover" || c.kind == "failover") {
        std::string want_leader = jstr(a, "leader");
        std::string candidate = jstr(a, "candidate");
        if (candidate.empty()) candidate = jstr(a, "member");
        std::string scheduled = jstr(a, "scheduled_at");
        const bool sw = c.kind == "switchover";
        if (!sw && candidate.empty()) {
            c.done(400, "Failover could be performed only to a specific candidate");
            return;
        }
        if (!sw && !leader.empty() && a.contains("require_no_leader") && a["require_no_leader"] == true) {
            c.done(412, "the cluster has a leader (" + leader + "): use a switchover to move a healthy primary");
            return;
        }
        if (sw && leader.empty()) {
            c.done(412, "switchover is not possible: the cluster has no leader (use failover with a candidate)");
            return;
        }
        if (!want_leader.empty() && want_leader != leader) {
            c.done(412, "leader name does not match: the leader is " + (leader.empty() ? std::string("nobody") : leader));
            return;
        }
        if (view_.failover) {
            c.done(409, "a switchover or failover is already pending (to " +
                            (view_.failover->candidate.empty() ? std::string("any member") : view_.failover->candidate) +
                            "); wait for it or clear it");
            return;
        }
        if (view_.config.pause && candidate.empty()) {
            c.done(412, "switchover is possible only to a specific candidate in a paused state");
            return;
        }
        std::int64_t when = 0;
        if (!scheduled.empty()) {
            std::string err;
            if (!parse_iso8601(scheduled, when, err)) {
                c.done(400, "Invalid scheduled_at: " + err);
                return;
            }
            if (view_.config.pause) {
                c.done(412, "Can't schedule " + c.kind + " in the paused state");
                return;
            }
            if (when < std::time(nullptr)) {
                c.done(422, "Cannot schedule " + c.kind + " in the past");
                return;
            }
        }
        if (!leader.empty()) {
            std::string target = candidate.empty() ? best_switchover_candidate(view_, leader) : candidate;
            std::string why = target.empty() ? "no member can take over" : switchover_ineligibility(view_, leader, target);
            if (!why.empty()) {
                c.done(412, c.kind + " is not possible: " + why);
                return;
            }
            c.target = candidate;  // "" = whoever the leader picks
        } else {
            const Member *m = view_.member(candidate);
            if (!m) {
                c.done(412, "failover is not possible: member " + candidate + " does not exist");
                return;
            }
            if (m->tags.nofailover) {
                c.done(412, "failover is not possible: " + candidate + " is tagged nofailover");
                return;
            }
            if (m->state != "running") {
                c.done(412, "failover is not possible: " + candidate + " is not running (state " + m->state + ")");
                return;
            }
            c.target = candidate;
        }
        FailoverRequest f;
        f.leader = leader;
        f.candidate = candidate;
        f.scheduled_at = scheduled.empty() ? "" : format_iso8601(when);
        c.old_leader = leader;
        std::shared_ptr<Command> keep = cmd;
        store_->create("failover", encode_failover(f), false, [this, keep, scheduled](int rc) {
            if (rc == ZNODEEXISTS) {
                keep->done(409, "a switchover or failover is already pending");
            } else if (rc != ZOK) {
                keep->done(503, "failed to write the failover key into ZooKeeper: " + ZkSession::error_text(rc));
            } else if (!scheduled.empty()) {
                keep->done(202, keep->kind == "switchover" ? "Switchover scheduled" : "Failover scheduled");
            } else {
                keep->waiting = true;
                read_requested_ = true;
                log(keep->kind + " requested" + (keep->target.empty() ? std::string() : " to " + keep->target));
                return;
            }
        });
        c.waiting = false;
        c.next_probe_ms = -1;  // key being written
        return;
    }
    if (c.kind == "pause" || c.kind == "resume") {
        const bool p = c.kind == "pause";
        if (view_.config.pause == p) {
            c.done(200, p ? "the cluster is already paused" : "the cluster is not paused");
            return;
        }
        write_config({{"pause", p}}, c.done);
        c.next_probe_ms = -1;
        return;
    }
    if (c.kind == "set_config" || c.kind == "replace_config") {
        nlohmann::json patch = a.contains("config") ? a["config"] : a;
        if (!patch.is_object()) {
            c.done(400, "the configuration must be a JSON object");
            return;
        }
        if (c.kind == "replace_config") patch["__replace__"] = true;
        write_config(patch, c.done);
        c.next_probe_ms = -1;
        return;
    }
    if (c.kind == "reload") {
        if (local_conn_.query("SELECT pg_catalog.pg_reload_conf()")) c.done(202, "reload scheduled");
        else c.done(503, "reload failed: " + local_conn_.error());
        return;
    }
    if (c.kind == "restart" || c.kind == "reinitialize") {
        std::string member = jstr(a, "member");
        if (member.empty() || member == name_) {
            if (c.kind == "reinitialize" && is_leader_) {
                c.done(503, "I am the leader, can not reinitialize");
                return;
            }
            if (c.kind == "reinitialize") {
                int fd = ::open((data_dir_ + "/pg_ha.reinitialize").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
                if (fd < 0) {
                    c.done(503, "cannot mark the data directory for reinitialization");
                    return;
                }
                ::close(fd);
            }
            log(c.kind + " requested: shutting down; pg_hactl boot " +
                (c.kind == "reinitialize" ? "clones a fresh copy from the leader" : "starts the server again"));
            if (is_leader_)
                log("the leader restarts and keeps the leader lock: writes pause until it is back (a standby takes "
                    "over only if it is not back within ttl)");
            shutdown_requested_ = true;  // answering below delays the stop until the answer is out
            c.done(200, c.kind == "restart" ? "restarted successfully" : "reinitialize started");
            return;
        }
        const Member *m = view_.member(member);
        if (!m) {
            c.done(404, "member " + member + " does not exist");
            return;
        }
        PeerRequest r = peer(member, api_endpoint(m->api_url, "/" + c.kind), "POST");
        r.body = "{}";
        auto rep = http_parallel({r}, 5000);
        if (!rep[0].ok) c.done(503, member + " did not answer: " + rep[0].error);
        else c.done(static_cast<int>(rep[0].status), rep[0].body);
        return;
    }
    c.done(400, "unknown request " + c.kind);
}

void Engine::write_config(const nlohmann::json &patch_in, const std::function<void(int, const std::string &)> &done) {
    nlohmann::json patch = patch_in;
    const bool replace = patch.contains("__replace__");
    patch.erase("__replace__");
    nlohmann::json merged = replace ? patch : view_.config.raw;
    if (!merged.is_object()) merged = nlohmann::json::object();
    if (!replace) merged.merge_patch(patch);  // RFC 7386, as Patroni's PATCH /config (null deletes)
    std::vector<std::string> errors;
    DynamicConfig cfg = DynamicConfig::from_json(merged, errors);
    for (const auto &e : cfg.validate()) errors.push_back(e);
    if (!errors.empty()) {
        std::string msg = "invalid configuration:";
        for (const auto &e : errors) msg += " " + e + ";";
        msg.pop_back();
        done(400, msg);
        return;
    }
    const int version = view_.config_present ? static_cast<int>(view_.config_version) : -1;
    auto finish = [this, done, merged](int rc) {
        if (rc == ZOK) {
            read_requested_ = true;
            done(200, merged.dump());
        } else if (rc == ZBADVERSION || rc == ZNODEEXISTS) {
            done(409, "the configuration changed meanwhile; read it again and retry");
        } else {
            done(503, "cannot write the configuration: " + ZkSession::error_text(rc));
        }
    };
    if (view_.config_present) store_->set_versioned("config", merged.dump(), version, finish);
    else store_->create("config", merged.dump(), false, finish);
}

// Switchover/failover requests wait until the new leader accepts writes.
void Engine::poll_command(Command &c, std::int64_t now) {
    if (!c.waiting || now < c.next_probe_ms) return;
    c.next_probe_ms = now + 50;
    const std::string leader = view_.leader ? *view_.leader : "";
    if (view_.failover) c.key_seen = true;
    if (!leader.empty() && leader != c.old_leader && (c.target.empty() || leader == c.target)) {
        const Member *m = view_.member(leader);
        if (!m) return;
        PeerRequest r = peer(leader, api_endpoint(m->api_url, "/primary"));
        auto rep = http_parallel({r}, 300);
        if (rep[0].ok && rep[0].status == 200) {
            c.waiting = false;
            c.done(200, "Successfully " + std::string(c.kind == "switchover" ? "switched" : "failed") + " over to \"" +
                            leader + "\"");
        }
        return;
    }
    if (!leader.empty() && leader != c.old_leader && !c.target.empty() && leader != c.target) {
        c.waiting = false;
        c.done(200, std::string(c.kind == "switchover" ? "Switched" : "Failed") + " over to \"" + leader +
                        "\" instead of \"" + c.target + "\"");
        return;
    }
    if (c.key_seen && !view_.failover && view_ok_ && (leader.empty() || leader == c.old_leader) && !handover_) {
        c.waiting = false;
        c.done(503, c.kind == "switchover" ? "Switchover failed (see the leader's log)" : "Failover failed (see the log)");
    }
}

void Engine::clear_failover_key() {
    store_->remove("failover", -1, [this](int rc) {
        if (rc != ZOK && rc != ZNONODE) log("cannot delete the failover key: " + ZkSession::error_text(rc));
        read_requested_ = true;
    });
}

// SQL callers waiting for the switchover, as a PostgreSQL int[] literal.
std::string Engine::protected_pids_array() const {
    std::string a = "{";
    for (std::size_t i = 0; i < protected_pids_.size(); ++i) a += (i ? "," : "") + std::to_string(protected_pids_[i]);
    return a + "}";
}

void Engine::abort_handover(const std::string &why) {
    log("switchover aborted: " + why + "; this node stays the primary");
    handover_.reset();
    fence_ = false;
    clear_failover_key();
}

// The old leader's side of a switchover. Writes stop at Fenced; the outage
// lasts until the candidate has promoted, which it does as soon as it sees the
// lock free (a ZooKeeper watch), not at a loop tick.
void Engine::advance_handover(std::int64_t now) {
    Handover &h = *handover_;
    switch (h.phase) {
        case Handover::Start: {
            // A checkpoint while still writable keeps the final one short.
            local_conn_.query("CHECKPOINT");
            fence_ = true;  // applied by the worker after this step: no commits, no new sessions
            h.phase = Handover::Fenced;
            log("switchover to " + h.target + ": checkpoint done, fencing writes");
            return;
        }
        case Handover::Fenced: {
            const std::string keep = protected_pids_array();
            local_conn_.query(
                "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity "
                "WHERE backend_type = 'client backend' AND pid <> pg_catalog.pg_backend_pid() AND pid <> ALL($1::int[])",
                {keep});
            h.phase = Handover::CatchUp;
            h.deadline_ms = now + 10000;
            h.drain_until_ms = now + 2000;
            return;
        }
        case Handover::CatchUp: {
            // Terminated backends write their abort records on the way out:
            // let them go first (bounded), so the candidate gets those too.
            const std::string keep = protected_pids_array();
            if (now < h.drain_until_ms) {
                auto left = local_conn_.query(
                    "SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE backend_type = 'client backend' "
                    "AND pid <> pg_catalog.pg_backend_pid() AND pid <> ALL($1::int[])",
                    {keep});
                if (left && !left->empty() && (*left)[0][0] != "0") return;
                h.drain_until_ms = 0;
            }
            // Compare with the current end of WAL every time, not a snapshot.
            auto r = local_conn_.query(
                "SELECT pg_catalog.pg_current_wal_insert_lsn()::text, coalesce((SELECT max(flush_lsn)::text FROM "
                "pg_catalog.pg_stat_replication WHERE application_name = $1), '')",
                {h.target});
            if (!r || r->empty()) {
                abort_handover("cannot read the WAL positions: " + local_conn_.error());
                return;
            }
            h.lsn = parse_lsn((*r)[0][0]).value_or(0);
            Lsn got = parse_lsn((*r)[0][1]).value_or(0);
            if (got >= h.lsn && h.lsn != 0) {
                log("switchover: " + h.target + " has all WAL up to " + format_lsn(h.lsn) + "; releasing the leader lock");
                store_->remove("leader", -1, [this](int rc) {
                    if (rc != ZOK && rc != ZNONODE) log("cannot release the leader lock: " + ZkSession::error_text(rc));
                    read_requested_ = true;
                });
                is_leader_ = false;
                shutdown_immediate_ = true;  // no shutdown checkpoint after the candidate's fork point
                h.phase = Handover::Released;
                h.deadline_ms = now + 15000;
                return;
            }
            if (now > h.deadline_ms)
                abort_handover(h.target + " did not receive WAL up to " + format_lsn(h.lsn) + " within 10 s (it has " +
                               format_lsn(got) + ")");
            return;
        }
        case Handover::Released:
            if (view_.leader && *view_.leader != name_) return;  // Demote follows from decide()
            if (now > h.deadline_ms) {
                log("switchover: " + h.target + " did not take the leader lock within 15 s");
                handover_.reset();
                fence_ = false;
                shutdown_immediate_ = false;
                clear_failover_key();
            }
            return;
    }
}

void Engine::start_read() {
    std::int64_t now = ZkSession::steady_ms();
    read_requested_ = false;
    int period = (view_.config_present ? view_.config.loop_wait : 10) * 1000;
    // A leader renews its lease more often than loop_wait: every third of the session timeout.
    if (is_leader_ && zk_.negotiated_timeout_ms() > 0) period = std::min(period, zk_.negotiated_timeout_ms() / 3);
    next_read_ms_ = now + period;
    store_->read(true, [this](bool ok, const ClusterView &v, const std::string &err) { on_cluster(ok, v, err); });
}

void Engine::on_cluster(bool ok, const ClusterView &v, const std::string &err) {
    if (!ok) {
        log("reading the cluster from ZooKeeper failed: " + err);
        view_ok_ = false;
        return;
    }
    for (const auto &w : v.warnings)
        if (view_.warnings.empty() || std::find(view_.warnings.begin(), view_.warnings.end(), w) == view_.warnings.end())
            log("ignoring bad data in ZooKeeper: " + w);
    view_ = v;
    view_ok_ = true;
    ++view_seq_;
    dcs_last_seen_ = std::time(nullptr);
    failsafe_deadline_ = 0;  // ZooKeeper answers again: the lock is what counts
    if (view_.config_present && view_.config.ttl * 1000 != requested_timeout_ms_ && !is_leader_) {
        // A ZooKeeper session's timeout is fixed when it is created: start a
        // new one (a leader keeps its session; the new ttl applies to its next).
        requested_timeout_ms_ = view_.config.ttl * 1000;
        log("ttl is " + std::to_string(view_.config.ttl) + " s: reconnecting to ZooKeeper with that session timeout");
        std::remove(session_file().c_str());
        zk_.close();
        base_ensured_ = base_pending_ = false;
        view_ok_ = false;
        return;
    }
    decide_and_act();
}

LocalRole Engine::local_role() const {
    if (local_.server_version == 0) return LocalRole::Stopped;
    if (!local_.in_recovery) return LocalRole::Primary;
    if (local_.standby_signal) return LocalRole::Standby;
    return LocalRole::Recovering;
}

void Engine::probe_local() {
    // One round trip proves the server accepts connections and gives what
    // shared memory does not: the walsenders with their application names.
    auto rows = local_conn_.query(
        "SELECT application_name, coalesce(host(client_addr), ''), state, sync_state, "
        "coalesce(sent_lsn::text, ''), coalesce(write_lsn::text, ''), coalesce(flush_lsn::text, ''), "
        "coalesce(replay_lsn::text, '') FROM pg_catalog.pg_stat_replication ORDER BY 1");
    probe_ok_ = rows.has_value();
    replication_.clear();
    if (!rows) return;
    for (const auto &r : *rows) {
        WalSender ws;
        ws.application_name = r[0];
        ws.client_addr = r[1];
        ws.state = r[2];
        ws.sync_state = r[3];
        ws.sent_lsn = parse_lsn(r[4]).value_or(0);
        ws.write_lsn = parse_lsn(r[5]).value_or(0);
        ws.flush_lsn = parse_lsn(r[6]).value_or(0);
        ws.replay_lsn = parse_lsn(r[7]).value_or(0);
        replication_.push_back(ws);
    }
}

LocalState Engine::local_state() {
    LocalState ls;
    LocalRole r = local_role();
    ls.in_recovery = local_.in_recovery;
    ls.accepts_connections = probe_ok_;
    ls.state = r == LocalRole::Stopped ? PgState::Stopped
               : probe_ok_             ? PgState::Running
                                       : PgState::Starting;
    char sysid[32];
    std::snprintf(sysid, sizeof sysid, "%llu", static_cast<unsigned long long>(local_.system_identifier));
    ls.system_identifier = local_.system_identifier ? sysid : "";
    ls.server_version = local_.server_version;
    ls.timeline = local_.timeline;
    ls.write_lsn = local_.write_lsn;
    ls.receive_lsn = local_.receive_lsn;
    ls.replay_lsn = local_.replay_lsn;
    ls.replication_state = local_.in_recovery ? (local_.walreceiver_streaming ? "streaming" : "in archive recovery") : "";
    conninfo_host_port(primary_conninfo_, ls.upstream_host, ls.upstream_port);
    ls.replication = replication_;
    return ls;
}

void Engine::decide_and_act() {
    probe_local();
    LocalState ls = local_state();
    Observation obs;
    obs.me = name_;
    obs.tags = tags_;
    obs.role = local_role();
    obs.running = probe_ok_;
    obs.local = ls;
    obs.dcs_ok = view_ok_ && zk_.connected();
    obs.session_id = zk_.session_id();
    const std::int64_t now = ZkSession::steady_ms();
    if (view_.config.failsafe_mode && is_leader_ && obs.role == LocalRole::Primary && !obs.dcs_ok &&
        now >= next_failsafe_ms_)
        failsafe_round(now);
    obs.lease_valid = lease_deadline() > now;
    obs.was_leader = is_leader_;
    obs.cluster = view_;
    if (view_.config.failsafe_mode) obs.failsafe_leader = failsafe_box_.active(now, view_.config.ttl * 1000);
    if (!is_leader_) obs.watchdog_failure = watchdog_precheck();
    if (obs.role != LocalRole::Standby || local_.walreceiver_streaming || streaming_seen_ms_ == 0) streaming_seen_ms_ = now;
    obs.not_streaming_s = static_cast<int>((now - streaming_seen_ms_) / 1000);
    if (view_.failover && !view_.failover->scheduled_at.empty()) {
        std::int64_t when = 0;
        std::string err;
        obs.failover_due = parse_iso8601(view_.failover->scheduled_at, when, err) && when <= std::time(nullptr);
    }
    Decision d = decide(obs);
    if (d.has(ActionKind::AcquireLeader) && obs.role == LocalRole::Standby) {
        // Failover race: confirm over the peers' APIs before taking the lock.
        check_peers(obs);
        d = decide(obs);
    }
    if (d.message != message_) log(d.message);
    message_ = d.message;
    role_ = d.role;
    bool was_leader = is_leader_;
    // Without a fresh view leadership is unknown: keep it, the lease bounds it.
    if (obs.dcs_ok) is_leader_ = d.is_leader;
    if (obs.dcs_ok && !is_leader_ && !d.has(ActionKind::AcquireLeader)) failsafe_box_.release();
    if (is_leader_ && !was_leader) log("this node (" + name_ + ") now holds the leader lock");
    if (!is_leader_ && was_leader) log("this node (" + name_ + ") no longer holds the leader lock");
    execute(d, obs);  // without ZooKeeper decide() asks for nothing but fencing
    if (obs.dcs_ok) touch_member(ls);
    publish(ls);
}

void Engine::execute(const Decision &d, const Observation &obs) {
    const std::int64_t now = ZkSession::steady_ms();
    for (const auto &a : d.actions) {
        switch (a.kind) {
            case ActionKind::WriteInitialize:
                store_->create("initialize", obs.local.system_identifier, false, [this](int rc) {
                    if (rc != ZOK && rc != ZNODEEXISTS) log("cannot write initialize: " + ZkSession::error_text(rc));
                });
                break;
            case ActionKind::WriteDefaultConfig:
                store_->create("config", DynamicConfig{}.to_json().dump(), false, [this](int rc) {
                    if (rc == ZOK) log("wrote the default dynamic configuration to ZooKeeper");
                });
                break;
            case ActionKind::AcquireLeader:
                if (!failsafe_box_.claim(now, view_.config.ttl * 1000)) {
                    log("not taking the leader lock: a failsafe leader heartbeat arrived less than ttl ago");
                    break;
                }
                store_->create("leader", name_, true, [this](int rc) {
                    if (rc == ZOK) log("acquired the leader lock");
                    else if (rc != ZNODEEXISTS) log("cannot create the leader lock: " + ZkSession::error_text(rc));
                    read_requested_ = true;  // act on the outcome now, not a loop later
                });
                break;
            case ActionKind::DeleteStaleLeader:
                store_->remove("leader", -1, [this](int) { read_requested_ = true; });
                break;
            case ActionKind::Promote:
                if (now - promote_requested_ms_ > 10000) {
                    promote_requested_ms_ = now;
                    promote_now_ = true;
                    log("promoting this standby to primary");
                }
                read_requested_ = true;
                break;
            case ActionKind::RecordPromotion:
                record_promotion(obs.local);
                break;
            case ActionKind::Demote:
                if (!shutdown_requested_) {
                    log(a.target.empty() ? "fencing: refusing connections and writes, shutting down to rejoin as a standby"
                                         : "fencing: " + a.target + " holds the leader lock; refusing writes and shutting down to rejoin as a standby");
                    fence_ = true;
                    shutdown_requested_ = true;
                }
                break;
            case ActionKind::Follow:
                follow(a.target);
                break;
            case ActionKind::WriteStatus:
                store_->set_or_create("status", encode_status(a.lsn), [](int) {});
                break;
            case ActionKind::Handover:
                if (!handover_ && !fence_) {
                    handover_ = std::make_unique<Handover>();
                    handover_->target = a.target;
                }
                break;
            case ActionKind::ClearFailover:
                if (!handover_) {
                    if (d.message.find("not possible") != std::string::npos || d.message.find("ignoring") != std::string::npos)
                        log(d.message);
                    clear_failover_key();
                }
                break;
            case ActionKind::EnsureSlots:
                if (now - last_slots_ms_ > 5000) {
                    last_slots_ms_ = now;
                    ensure_slots(a.names);
                }
                break;
        }
    }
}

void Engine::follow(const std::string &leader) {
    std::int64_t now = ZkSession::steady_ms();
    if (now - last_follow_ms_ < 5000) return;
    last_follow_ms_ = now;
    const Member *m = view_.member(leader);
    std::string host;
    int port = 0;
    if (!m || !parse_conn_url(m->conn_url, host, port)) return;
    std::string conninfo = "user=" + repl_user_ + " password=" + repl_password_ + " host=" + host +
                           " port=" + std::to_string(port) + " application_name=" + name_ +
                           " sslmode=prefer connect_timeout=5";
    std::string sql = "ALTER SYSTEM SET primary_conninfo = " + LocalConn::quote_literal(conninfo);
    if (!local_conn_.query(sql)) {
        log("cannot point replication at " + leader + ": " + local_conn_.error());
        return;
    }
    if (view_.config.use_slots)
        local_conn_.query("ALTER SYSTEM SET primary_slot_name = " + LocalConn::quote_literal(slot_name_for_member(name_)));
    local_conn_.query("SELECT pg_catalog.pg_reload_conf()");
    log("replication now follows " + leader + " at " + host + ":" + std::to_string(port));
}

void Engine::ensure_slots(const std::vector<std::string> &names) {
    std::string arr = "{";
    for (std::size_t i = 0; i < names.size(); ++i) arr += (i ? "," : "") + names[i];
    arr += "}";
    auto r = local_conn_.query(
        "SELECT s, pg_catalog.pg_create_physical_replication_slot(s, true) FROM unnest($1::text[]) s "
        "WHERE s NOT IN (SELECT slot_name FROM pg_catalog.pg_replication_slots)",
        {arr});
    if (!r) log("cannot create replication slots: " + local_conn_.error());
    else
        for (const auto &row : *r) log("created physical replication slot " + row[0]);
}

void Engine::record_promotion(const LocalState &ls) {
    if (history_written_tl_ == ls.timeline) return;
    history_written_tl_ = ls.timeline;
    // pg_control shows the new timeline only after a checkpoint; pg_rewind on
    // the old primary compares against it (Patroni: ensure_checkpoint_after_promote).
    if (!local_conn_.query("CHECKPOINT")) log("checkpoint after promotion failed: " + local_conn_.error());
    std::vector<HistoryEntry> h = view_.history;
    HistoryEntry e;
    e.timeline = ls.timeline - 1;
    e.lsn = view_.status_optime ? view_.status_optime : ls.write_lsn;
    // The exact switch point, as Patroni records it: the last line of our
    // timeline history file ("<parent tli>\t<switch lsn>\t<reason>").
    char hist[32];
    std::snprintf(hist, sizeof hist, "pg_wal/%08X.history", static_cast<unsigned>(ls.timeline));
    {
        std::ifstream in(data_dir_ + "/" + hist);
        std::string line, last;
        while (std::getline(in, line))
            if (!line.empty() && line[0] != '#') last = line;
        std::istringstream fields(last);
        std::string tli, lsn;
        if (fields >> tli >> lsn) {
            if (auto l = parse_lsn(lsn)) e.lsn = *l;
        }
    }
    e.reason = "pg_ha: " + name_ + " promoted";
    e.timestamp = iso_now();
    e.new_leader = name_;
    h.push_back(e);
    store_->set_or_create("history", encode_history(h), [this](int rc) {
        if (rc != ZOK) log("cannot record the promotion in history: " + ZkSession::error_text(rc));
    });
}

void Engine::touch_member(const LocalState &ls) {
    Member m;
    m.name = name_;
    m.conn_url = member_conn_url();
    m.api_url = member_api_url();
    m.state = to_string(ls.state);
    m.role = role_;
    m.version = PG_HA_VERSION;
    m.xlog_location = ls.position();
    m.timeline = ls.timeline;
    if (ls.in_recovery) {
        m.replication_state = ls.replication_state;
        m.receive_lsn = ls.receive_lsn;
        m.replay_lsn = ls.replay_lsn;
    }
    m.tags = tags_;
    m.pause = view_.config.pause;
    std::string json = encode_member(m);
    const Member *cur = view_.member(name_);
    std::int64_t owner = cur ? cur->session : 0;
    if (json == last_member_json_ && owner == zk_.session_id() && last_member_session_ == owner) return;
    last_member_json_ = json;
    last_member_session_ = zk_.session_id();
    store_->touch_member(name_, json, owner, [this](int rc) {
        if (rc != ZOK) {
            last_member_json_.clear();
            log("cannot publish member data: " + ZkSession::error_text(rc));
        }
    });
}

void Engine::publish(const LocalState &ls) {
    auto snap = std::make_shared<NodeSnapshot>();
    const std::int64_t now = ZkSession::steady_ms();
    snap->scope = scope_;
    snap->name = name_;
    snap->version = PG_HA_VERSION;
    snap->api_url = member_api_url();
    snap->conn_url = member_conn_url();
    snap->state = to_string(ls.state);
    snap->role = role_;
    snap->is_leader = is_leader_;
    bool lease_ok = lease_deadline() > now;
    snap->accepts_writes = is_leader_ && lease_ok && probe_ok_ && !ls.in_recovery && !fence_;
    snap->dcs_ok = view_ok_ && zk_.connected();
    snap->dcs_last_seen = dcs_last_seen_;
    snap->loop_steady_ms = now;
    snap->postmaster_start_time = local_.postmaster_start_time;
    snap->message = message_;
    snap->tags = tags_;
    snap->local = ls;
    snap->cluster = view_;
    box_.publish(snap);

    // The SQL functions' view (ha_status(), ha_node()).
    nlohmann::json j;
    nlohmann::json node = {{"name", name_},
                           {"scope", scope_},
                           {"role", role_},
                           {"state", snap->state},
                           {"is_leader", is_leader_},
                           {"accepts_writes", snap->accepts_writes},
                           {"timeline", ls.timeline},
                           {"lsn", format_lsn(ls.position())},
                           {"leader", view_.leader ? *view_.leader : ""},
                           {"paused", view_.config.pause},
                           {"dcs_ok", snap->dcs_ok},
                           {"lease_remaining_ms", lease_ok ? lease_deadline() - now : 0},
                           {"message", message_},
                           {"tags", tags_.to_json()},
                           {"api_url", snap->api_url},
                           {"conn_url", snap->conn_url}};
    j["node"] = node;
    nlohmann::json members = nlohmann::json::array();
    for (const auto &m : view_.members) {
        const bool leader = view_.leader && *view_.leader == m.name;
        bool sync = false;
        for (const auto &s : view_.sync.sync_standby) sync = sync || s == m.name;
        Lsn pos = m.position();
        nlohmann::json row = {{"name", m.name},
                              {"host", m.host()},
                              {"port", m.port()},
                              {"role", leader ? "leader" : sync ? "sync_standby" : "replica"},
                              {"state", m.replication_state.empty() ? m.state : m.replication_state},
                              {"timeline", m.timeline},
                              {"lsn", format_lsn(pos)},
                              {"lag", leader ? nlohmann::json(0)
                                             : nlohmann::json(view_.status_optime > pos ? view_.status_optime - pos : 0)},
                              {"tags", m.tags.to_json()},
                              {"is_leader", leader}};
        members.push_back(row);
    }
    j["members"] = members;
    j["config"] = view_.config_present ? view_.config.raw : view_.config.to_json();
    nlohmann::json hist = nlohmann::json::array();
    for (const auto &h : view_.history)
        hist.push_back({{"timeline", h.timeline}, {"lsn", format_lsn(h.lsn)}, {"reason", h.reason},
                        {"timestamp", h.timestamp.empty() ? nlohmann::json(nullptr) : nlohmann::json(h.timestamp)},
                        {"new_leader", h.new_leader}});
    j["history"] = hist;
    status_json_ = j.dump();
}

void Engine::step(const PgHaLocal &local, bool r, bool w, bool woken, PgHaOutputs &out) {
    logs_.clear();
    local_ = local;
    primary_conninfo_ = s_or(local.primary_conninfo);
    local_.primary_conninfo = nullptr;
    const std::int64_t now = ZkSession::steady_ms();

    if (!api_started_ && now >= api_retry_ms_) {
        std::string err;
        if (api_.start(api_listen_, box_, err)) {
            api_started_ = true;
            log("REST API listening on " + api_listen_);
        } else {
            log("cannot start the REST API on " + api_listen_ + ": " + err + "; retrying in 10 s");
            api_retry_ms_ = now + 10000;
        }
    }

    ensure_zk(now);
    if (zk_.is_open()) zk_.process(r, w);
    if (zk_.connected()) {
        save_session();
        if (!base_ensured_ && !base_pending_) {
            base_pending_ = true;
            store_->ensure_base([this](int rc) {
                base_pending_ = false;
                base_ensured_ = rc == ZOK;
                if (rc != ZOK) log("cannot create the cluster's znodes: " + ZkSession::error_text(rc));
            });
        }
        if (!store_->reading() && (read_requested_ || now >= next_read_ms_)) start_read();
    } else if (now >= next_read_ms_) {
        // No ZooKeeper: still observe, decide (the lease runs out on its own) and publish.
        next_read_ms_ = now + 1000;
        view_ok_ = false;
        decide_and_act();
    }
    if (is_leader_ && !fence_ && local_role() == LocalRole::Primary && lease_deadline() <= now && zk_.connected() &&
        now >= next_read_ms_) {
        // Connected, but no answer renewed the lease in time (ZooKeeper stalled):
        // decide on what we know, which fences.
        next_read_ms_ = now + 1000;
        view_ok_ = false;
        decide_and_act();
    }
    if (local_role() != last_role_) {
        // Promotion finished, recovery ended, ...: act now, not a loop later.
        last_role_ = local_role();
        read_requested_ = true;
    }
    take_sql_request(local);
    if (woken)  // the eventfd is readable: an HTTP thread queued a command
        for (auto &c : queue_.drain()) commands_.push_back(c);
    for (auto &c : commands_) {
        if (!c->wrapped) {
            // Answer exactly once, whoever answers first (the step, a ZooKeeper
            // callback, or the timeout below).
            auto orig = c->done;
            auto flag = std::make_shared<bool>(false);
            Command *raw = c.get();
            c->done = [this, orig, flag, raw](int st, const std::string &msg) {
                if (*flag) return;
                *flag = true;
                raw->answered = true;
                // An HTTP thread still has to write this answer: do not stop
                // the server under it (e.g. the old leader after a switchover).
                shutdown_not_before_ms_ = std::max(shutdown_not_before_ms_, ZkSession::steady_ms() + 500);
                if (orig) orig(st, msg);
            };
            c->wrapped = true;
        }
        if (c->answered) continue;
        if (c->next_probe_ms == 0 && c->need_view == 0) {
            // The members' states in our view may be a loop old: read first.
            c->need_view = view_seq_ + (store_->reading() ? 2 : 1);
            read_requested_ = true;
        }
        if (c->next_probe_ms == 0 && (view_seq_ >= c->need_view || !zk_.connected())) start_command(c);
        else if (c->next_probe_ms != 0) poll_command(*c, now);
        if (!c->answered && now > c->deadline_ms) c->done(503, c->kind + " status unknown: timed out");
    }
    commands_.erase(std::remove_if(commands_.begin(), commands_.end(), [](const auto &c) { return c->answered; }),
                    commands_.end());
    if (commands_.empty()) protected_pids_.clear();
    if (handover_) advance_handover(now);
    tend_watchdog();  // every iteration (at least once a second) while leading
    if (status_json_.empty()) publish(local_state());

    out.lease_deadline_ms = lease_deadline();
    out.lease_enforced = enforcement_ && !view_.config.pause;
    out.promote = promote_now_;
    promote_now_ = false;
    out.fence = fence_;
    // Leave a moment for answers to waiting callers before stopping (the
    // node is fenced meanwhile).
    if (shutdown_requested_ && shutdown_requested_ms_ == 0) shutdown_requested_ms_ = now;
    out.shutdown = shutdown_requested_ && now >= shutdown_not_before_ms_ &&
                   (commands_.empty() || now >= shutdown_requested_ms_ + 5000);
    out.shutdown_immediate = shutdown_immediate_;
    out.reply_id = reply_id_;
    out.reply_status = reply_status_;
    out.reply_message = reply_message_.c_str();
    out.status_json = status_json_.c_str();
    log_ptrs_.clear();
    for (const auto &l : logs_) log_ptrs_.push_back(l.c_str());
    log_ptrs_.push_back(nullptr);
    out.log_lines = log_ptrs_.data();
}

}  // namespace pgha

struct PgHaEngine {
    pgha::Engine impl;
    explicit PgHaEngine(const pgha::NodeSettings &s) : impl(s) {}
};

extern "C" {

PgHaEngine *pgha_engine_create(const char *const *names, const char *const *values, int n, char *errbuf,
                               int errbuf_len) {
    try {
        std::map<std::string, std::string> kv;
        for (int i = 0; i < n; i++)
            if (names[i]) kv[names[i]] = values[i] ? values[i] : "";
        std::vector<std::string> errors;
        const pgha::NodeSettings settings = pgha::NodeSettings::from_map(kv, errors);
        if (!errors.empty()) {
            std::string all;
            for (const auto &e : errors) all += (all.empty() ? "" : "; ") + e;
            std::snprintf(errbuf, static_cast<std::size_t>(errbuf_len), "%s", all.c_str());
            return nullptr;
        }
        auto e = std::make_unique<PgHaEngine>(settings);
        std::string err;
        if (!e->impl.init(err)) {
            std::snprintf(errbuf, static_cast<std::size_t>(errbuf_len), "%s", err.c_str());
            return nullptr;
        }
        return e.release();
    } catch (const std::exception &ex) {
        std::snprintf(errbuf, static_cast<std::size_t>(errbuf_len), "%s", ex.what());
    } catch (...) {
        std::snprintf(errbuf, static_cast<std::size_t>(errbuf_len), "unknown error");
    }
    return nullptr;
}

void pgha_engine_wait_spec(PgHaEngine *engine, PgHaWaitSpec *spec) {
    try {
        engine->impl.wait_spec(*spec);
    } catch (...) {
        spec->zk_fd = -1;
        spec->wake_fd = -1;
        spec->timeout_ms = 1000;
    }
}

void pgha_engine_step(PgHaEngine *engine, const PgHaLocal *local, bool zk_readable, bool zk_writable, bool woken,
                      PgHaOutputs *out) {
    static const char *const no_logs[] = {nullptr};
    static const char *const failed_logs[] = {"pg_ha engine step failed; retrying", nullptr};
    std::memset(out, 0, sizeof *out);
    out->log_lines = no_logs;
    try {
        engine->impl.step(*local, zk_readable, zk_writable, woken, *out);
    } catch (const std::exception &) {
        out->log_lines = failed_logs;
    } catch (...) {
        out->log_lines = failed_logs;
    }
}

void pgha_engine_destroy(PgHaEngine *engine, bool release) {
    try {
        if (engine) engine->impl.shutdown(release);
        delete engine;
    } catch (...) {
    }
}

}  // extern "C"
