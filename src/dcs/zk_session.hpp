// RAII wrapper around the single-threaded ZooKeeper C client (libzookeeper_st).
//
// The client has no threads of its own: the owner asks interest() which
// socket/events/timeout to wait for, waits (the worker: in its WaitEventSet;
// pg_hactl: poll), then calls process(). All completions and watches run
// inside process(), on the caller's thread. So a stalled caller sends no
// pings and its session expires on the server, releasing the leader znode:
// a hung worker cannot keep the lock.
#pragma once
#include "core/no_postgres.hpp"
#include "dcs/zk_client.hpp"

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <vector>

struct _zhandle;

namespace pgha {

// Result codes are the C client's (ZOK, ZNONODE, ZNODEEXISTS, ZBADVERSION, ...).
class ZkSession final : public ZkClient {
  public:

    ZkSession();
    ~ZkSession();
    ZkSession(const ZkSession &) = delete;
    ZkSession &operator=(const ZkSession &) = delete;

    // Starts connecting (non-blocking). `resume` continues an earlier session.
    bool open(const std::string &hosts, int session_timeout_ms, const ZkCredentials *resume, std::string &error) override;
    void close() override;
    // Process exit without ending the session: the server keeps it (and its
    // ephemeral znodes) until it times out, so a restarted process can
    // resume it. Leaks the client handle on purpose; call only when exiting.
    void abandon() override;
    bool is_open() const override { return zh_ != nullptr; }

    ZkInterest interest() override;
    void process(bool readable, bool writable) override;

    bool connected() const override;
    bool expired() const override;  // the server expired the session (or refused to resume it)
    int negotiated_timeout_ms() const override;
    std::int64_t session_id() const override;
    ZkCredentials credentials() const override;
    const std::string &hosts() const { return hosts_; }

    // Steady-clock ms at which the newest request that the server answered on
    // the current session was queued (before it was sent): the server heard
    // from us no earlier than this. 0 when nothing was answered yet.
    std::int64_t last_confirmed_send_ms() const override { return last_confirmed_send_ms_; }

    void set_watcher(WatchCb cb) override { watcher_ = std::move(cb); }
    void set_auth(const ZkAuth &auth) override { auth_ = auth; }
    bool authenticated() const { return auth_.enabled(); }

    // Asynchronous operations. Return the C client's submit code (ZOK when queued);
    // on a submit failure the callback is not called.
    int get(const std::string &path, bool watch, GetCb cb) override;
    int create(const std::string &path, const std::string &data, bool ephemeral, PathCb cb) override;
    int set(const std::string &path, const std::string &data, int version, StatCb cb) override;
    int remove(const std::string &path, int version, VoidCb cb) override;
    int replace_ephemeral(const std::string &path, const std::string &data, VoidCb cb) override;
    int children(const std::string &path, bool watch, ChildrenCb cb) override;
    int sync(const std::string &path, VoidCb cb) override;


    static std::int64_t steady_ms();
    static std::string error_text(int rc);

    // Called from the C client's trampolines only.
    void on_answer(int rc, std::int64_t sent_ms, std::int64_t session_at_send, bool confirms);
    void on_watch(int type, int state, const char *path);
    void request_done() { --in_flight_; }
    // Runs a user callback from a C trampoline: an exception must not unwind
    // through the C client; it is kept and rethrown when process() returns.
    template <typename Fn>
    void guard(Fn &&fn) noexcept {
        try {
            fn();
        } catch (...) {
            if (!deferred_) deferred_ = std::current_exception();
        }
    }
    bool closing() const { return closing_; }

  private:
    _zhandle *zh_ = nullptr;
    std::string hosts_;
    WatchCb watcher_;
    std::int64_t last_confirmed_send_ms_ = 0;
    std::int64_t answered_session_ = 0;
    int in_flight_ = 0;
    std::exception_ptr deferred_;
    bool closing_ = false;
    ZkAuth auth_;  // holds the password: never log it
};

// For command-line use: drive the session with poll() until `done()` is true
// or `timeout_ms` passes. Returns done().
bool zk_run_until(ZkSession &zk, const std::function<bool()> &done, int timeout_ms);

}  // namespace pgha
