// An in-memory ZooKeeper for the engine's unit tests: one FakeZkServer holds
// the tree and the sessions, each FakeZk is one client session on it.
// Operations complete in process() (asynchronously, as the C client does);
// watches fire through the client's watcher. Time is the test's manual clock.
#pragma once

#include <zookeeper/zookeeper.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "dcs/zk_client.hpp"

namespace pgha::test {

struct ManualClock {
    std::int64_t now = 1000000;
    std::int64_t wall_offset = 1700000000000;  // wall clock = now + offset
    std::function<std::int64_t()> fn() {
        return [this] { return now; };
    }
};

struct FakeZkServer {
    struct Node {
        std::string data;
        std::int32_t version = 0;
        std::int64_t owner = 0;
    };
    std::map<std::string, Node> nodes;
    std::int64_t next_session = 100;
    std::set<std::int64_t> live_sessions;
    std::map<std::string, std::vector<std::function<void(const std::string &)>>> watches;
    std::map<std::string, int> removes;  // per path, by clients
    std::map<std::string, int> replaces;  // per path, replace_ephemeral by clients

    void fire(const std::string &path) {
        auto it = watches.find(path);
        if (it == watches.end()) return;
        auto cbs = std::move(it->second);
        watches.erase(it);
        for (auto &cb : cbs) cb(path);
    }
    static std::string parent(const std::string &p) {
        auto i = p.rfind('/');
        return i == 0 ? "/" : p.substr(0, i);
    }
    void expire(std::int64_t session) {
        live_sessions.erase(session);
        std::vector<std::string> gone;
        for (auto &n : nodes)
            if (n.second.owner == session) gone.push_back(n.first);
        for (auto &p : gone) {
            nodes.erase(p);
            fire(p);
            fire(parent(p));
        }
    }
    std::vector<std::string> children(const std::string &p) const {
        std::vector<std::string> out;
        const std::string prefix = p == "/" ? "/" : p + "/";
        for (auto &n : nodes)
            if (n.first.compare(0, prefix.size(), prefix) == 0 && n.first.find('/', prefix.size()) == std::string::npos &&
                n.first.size() > prefix.size())
                out.push_back(n.first.substr(prefix.size()));
        return out;
    }
    // Test helpers
    void put(const std::string &p, const std::string &data, std::int64_t owner = 0) {
        // create parents
        for (std::size_t i = 1; i < p.size(); ++i)
            if (p[i] == '/' && !nodes.count(p.substr(0, i))) nodes[p.substr(0, i)] = Node{};
        bool existed = nodes.count(p) > 0;
        Node &n = nodes[p];
        n.data = data;
        n.owner = owner;
        if (existed) ++n.version;
        fire(p);
        if (!existed) fire(parent(p));
    }
    // A replace_ephemeral, as ZooKeeper applies the multi: the delete's
    // notices (the znode's data watchers, the parent's children watchers),
    // then the create, which finds no watch left to fire.
    void replace(const std::string &p, const std::string &data, std::int64_t owner) {
        ++replaces[p];
        Node n;
        n.data = data;
        n.owner = owner;
        nodes[p] = n;
        fire(p);
        fire(parent(p));
    }
    bool has(const std::string &p) const { return nodes.count(p) > 0; }
    std::string get(const std::string &p) const {
        auto it = nodes.find(p);
        return it == nodes.end() ? "" : it->second.data;
    }
    std::int64_t owner(const std::string &p) const {
        auto it = nodes.find(p);
        return it == nodes.end() ? 0 : it->second.owner;
    }
};

class FakeZk final : public ZkClient {
  public:
    FakeZk(FakeZkServer &server, ManualClock &clock, int timeout_ms = 10000)
        : server_(server), clock_(clock), timeout_ms_(timeout_ms) {}

    // Test controls
    bool partitioned = false;  // requests get no answer (and the session looks disconnected)
    // Connected to a ZooKeeper follower cut off from the ZooKeeper leader:
    // reads are answered, syncs and writes never are. (The real server also
    // holds later reads of the session behind them; the lease must not
    // depend on that, so the fake does not.)
    bool follower_cut_off = false;
    int opens = 0;
    // Every answer comes this long after its request (in order, as on one
    // TCP connection); notices are not delayed.
    int latency_ms = 0;
    // Negotiate the session timeout the client asks for (ZooKeeper's bounds
    // aside) instead of the constructor's.
    bool negotiate_timeout = false;
    // Requests this client sent, by kind and path below /service/batman
    // ("get /members/pg-2", "sync /leader").
    std::map<std::string, int> requests;

    bool open(const std::string &, int session_timeout_ms, const ZkCredentials *resume, std::string &) override {
        ++opens;
        if (negotiate_timeout) timeout_ms_ = session_timeout_ms;
        if (resume && server_.live_sessions.count(resume->session_id)) session_ = resume->session_id;
        else session_ = ++server_.next_session;
        server_.live_sessions.insert(session_);
        open_ = true;
        return true;
    }
    void close() override {
        if (open_ && session_) server_.expire(session_);
        open_ = false;
        queue_.clear();
    }
    void abandon() override { open_ = false; }
    bool is_open() const override { return open_; }
    ZkInterest interest() override { return ZkInterest{-1, false, false, 100}; }
    void process(bool, bool) override {
        if (partitioned) return;
        auto q = std::move(queue_);
        queue_.clear();
        std::deque<Op> held;  // still unanswered, in the order they were sent
        bool late = false;
        for (auto &op : q) {
            if (!server_.live_sessions.count(session_)) break;
            late = late || clock_.now < op.sent + latency_ms;
            if (late) {  // not answered yet, nor anything after it (FIFO)
                held.push_back(op);
                continue;
            }
            if (op.confirms && follower_cut_off) {
                held.push_back(op);  // waits for the leader that never answers
                continue;
            }
            if (op.confirms) last_answered_ = std::max(last_answered_, op.sent);
            op.run();  // may send more: those queue behind the ones held
        }
        held.insert(held.end(), queue_.begin(), queue_.end());
        queue_ = std::move(held);
    }
    bool connected() const override { return open_ && !partitioned && server_.live_sessions.count(session_); }
    bool expired() const override { return open_ && !server_.live_sessions.count(session_); }
    int negotiated_timeout_ms() const override { return open_ ? timeout_ms_ : 0; }
    std::int64_t session_id() const override { return open_ ? session_ : 0; }
    ZkCredentials credentials() const override {
        ZkCredentials c;
        c.session_id = session_;
        c.password = std::string(16, 'p');
        return c;
    }
    std::int64_t last_confirmed_send_ms() const override { return last_answered_; }
    void set_watcher(WatchCb cb) override { watcher_ = std::move(cb); }

    int sync(const std::string &path, VoidCb cb) override {
        count("sync", path);
        return submit([cb] { cb(ZOK); }, true);
    }
    int get(const std::string &path, bool watch, GetCb cb) override {
        count("get", path);
        return submit([this, path, watch, cb] {
            // As ZooKeeper: a read of a missing znode leaves no watch (only exists() would).
            if (watch && server_.has(path)) watch_path(path);
            auto it = server_.nodes.find(path);
            if (it == server_.nodes.end()) return cb(ZNONODE, "", ZkStat{});
            ZkStat st;
            st.version = it->second.version;
            st.ephemeral_owner = it->second.owner;
            cb(ZOK, it->second.data, st);
        });
    }
    int create(const std::string &path, const std::string &data, bool ephemeral, PathCb cb) override {
        count("create", path);
        return submit([this, path, data, ephemeral, cb] {
            if (server_.has(path)) return cb(ZNODEEXISTS, "");
            if (!server_.has(FakeZkServer::parent(path)) && FakeZkServer::parent(path) != "/") return cb(ZNONODE, "");
            server_.put(path, data, ephemeral ? session_ : 0);
            cb(ZOK, path);
        }, true);
    }
    int set(const std::string &path, const std::string &data, int version, StatCb cb) override {
        count("set", path);
        return submit([this, path, data, version, cb] {
            auto it = server_.nodes.find(path);
            if (it == server_.nodes.end()) return cb(ZNONODE, ZkStat{});
            if (version >= 0 && version != it->second.version) return cb(ZBADVERSION, ZkStat{});
            server_.put(path, data, it->second.owner);
            cb(ZOK, ZkStat{});
        }, true);
    }
    int remove(const std::string &path, int, VoidCb cb) override {
        count("remove", path);
        return submit([this, path, cb] {
            if (!server_.has(path)) return cb(ZNONODE);
            ++server_.removes[path];
            server_.nodes.erase(path);
            server_.fire(path);
            server_.fire(FakeZkServer::parent(path));
            cb(ZOK);
        }, true);
    }
    int replace_ephemeral(const std::string &path, const std::string &data, VoidCb cb) override {
        count("replace", path);
        return submit([this, path, data, cb] {
            if (!server_.has(path)) return cb(ZNONODE);
            server_.replace(path, data, session_);
            cb(ZOK);
        }, true);
    }
    int children(const std::string &path, bool watch, ChildrenCb cb) override {
        count("children", path);
        return submit([this, path, watch, cb] {
            if (watch && server_.has(path)) watch_path(path);
            if (!server_.has(path)) return cb(ZNONODE, {});
            cb(ZOK, server_.children(path));
        });
    }

  private:
    void count(const char *kind, const std::string &path) {
        static const std::string base = "/service/batman";
        if (!open_) return;
        const bool below = path.compare(0, base.size(), base) == 0;
        ++requests[std::string(kind) + " " + (below ? path.substr(base.size()) : path)];
    }
    struct Op {
        std::int64_t sent;
        std::function<void()> run;
        bool confirms = false;
    };
    int submit(std::function<void()> run, bool confirms = false) {
        if (!open_) return ZINVALIDSTATE;
        queue_.push_back(Op{clock_.now, std::move(run), confirms});
        return ZOK;
    }
    void watch_path(const std::string &path) {
        server_.watches[path].push_back([this](const std::string &p) {
            if (watcher_) watcher_(p);
        });
    }
    FakeZkServer &server_;
    ManualClock &clock_;
    int timeout_ms_;
    bool open_ = false;
    std::int64_t session_ = 0;
    std::int64_t last_answered_ = 0;
    std::deque<Op> queue_;
    WatchCb watcher_;
};

}  // namespace pgha::test
