// RAII wrapper around the single-threaded ZooKeeper C client (libzookeeper_st).
//
// The client has no threads of its own: the owner asks interest() which
// socket/events/timeout to wait for, waits (the worker: in its WaitEventSet;
// pg_hactl: poll), then calls process(). All completions and watches run
// inside process(), on the caller's thread. So a stalled caller sends no
// pings and its session expires on the server, releasing the leader znode
// (DESIGN.md §2.5).
#pragma once
#include "core/no_postgres.hpp"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

struct _zhandle;

namespace pgha {

// Session id + password, so a restarted worker can resume its session.
struct ZkCredentials {
    std::int64_t session_id = 0;
    std::string password;  // 16 raw bytes
    bool valid() const { return session_id != 0 && password.size() == 16; }
};

struct ZkStat {
    std::int32_t version = -1;
    std::int64_t ephemeral_owner = 0;
    std::int64_t mzxid = 0;
};

struct ZkInterest {
    int fd = -1;
    bool read = false;
    bool write = false;
    int timeout_ms = 1000;  // call process() after this long even without I/O
};

// Result codes are the C client's (ZOK, ZNONODE, ZNODEEXISTS, ZBADVERSION, ...).
class ZkSession {
  public:
    using GetCb = std::function<void(int rc, const std::string &data, const ZkStat &stat)>;
    using StatCb = std::function<void(int rc, const ZkStat &stat)>;
    using PathCb = std::function<void(int rc, const std::string &created_path)>;
    using VoidCb = std::function<void(int rc)>;
    using ChildrenCb = std::function<void(int rc, const std::vector<std::string> &children)>;
    // A watch fired, or the session state changed. `path` is empty for session events.
    using WatchCb = std::function<void(const std::string &path)>;

    ZkSession();
    ~ZkSession();
    ZkSession(const ZkSession &) = delete;
    ZkSession &operator=(const ZkSession &) = delete;

    // Starts connecting (non-blocking). `resume` continues an earlier session.
    bool open(const std::string &hosts, int session_timeout_ms, const ZkCredentials *resume, std::string &error);
    void close();
    // Process exit without ending the session: the server keeps it (and its
    // ephemeral znodes) until it times out, so a restarted process can
    // resume it. Leaks the client handle on purpose; call only when exiting.
    void abandon();
    bool is_open() const { return zh_ != nullptr; }

    ZkInterest interest();
    void process(bool readable, bool writable);

    bool connected() const;
    bool expired() const;  // the server expired the session (or refused to resume it)
    int negotiated_timeout_ms() const;
    std::int64_t session_id() const;
    ZkCredentials credentials() const;
    const std::string &hosts() const { return hosts_; }

    // Steady-clock ms at which the newest request that the server answered on
    // the current session was queued (before it was sent): the server heard
    // from us no earlier than this. 0 when nothing was answered yet.
    std::int64_t last_answered_send_ms() const { return last_answered_send_ms_; }

    void set_watcher(WatchCb cb) { watcher_ = std::move(cb); }

    // Asynchronous operations. Return the C client's submit code (ZOK when queued);
    // on a submit failure the callback is not called.
    int get(const std::string &path, bool watch, GetCb cb);
    int exists(const std::string &path, bool watch, StatCb cb);
    int create(const std::string &path, const std::string &data, bool ephemeral, PathCb cb);
    int set(const std::string &path, const std::string &data, int version, StatCb cb);
    int remove(const std::string &path, int version, VoidCb cb);
    int children(const std::string &path, bool watch, ChildrenCb cb);

    // Pending completions (for blocking helpers).
    int in_flight() const { return in_flight_; }

    static std::int64_t steady_ms();
    static std::string error_text(int rc);

    // Called from the C client's trampolines only.
    void on_answer(int rc, std::int64_t sent_ms, std::int64_t session_at_send);
    void on_watch(int type, int state, const char *path);
    void request_done() { --in_flight_; }
    bool closing() const { return closing_; }

  private:
    _zhandle *zh_ = nullptr;
    std::string hosts_;
    WatchCb watcher_;
    std::int64_t last_answered_send_ms_ = 0;
    std::int64_t answered_session_ = 0;
    int in_flight_ = 0;
    bool closing_ = false;
};

// For command-line use: drive the session with poll() until `done()` is true
// or `timeout_ms` passes. Returns done().
bool zk_run_until(ZkSession &zk, const std::function<bool()> &done, int timeout_ms);

}  // namespace pgha
