// The ZooKeeper operations the engine and the cluster store need, as an
// interface: ZkSession (dcs/zk_session.hpp) implements it over the
// single-threaded C client; the engine's unit tests implement it in memory.
//
// Thread affinity: not thread-safe. Only the thread that drives the session
// (the worker's loop, or pg_hactl's main thread) may call any method, and every
// callback runs inside process() on that thread.
#pragma once

#include "core/no_postgres.hpp"
#include "dcs/zk_acl.hpp"

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

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
class ZkClient {
  public:
    using GetCb = std::function<void(int rc, const std::string &data, const ZkStat &stat)>;
    using StatCb = std::function<void(int rc, const ZkStat &stat)>;
    using PathCb = std::function<void(int rc, const std::string &created_path)>;
    using VoidCb = std::function<void(int rc)>;
    using ChildrenCb = std::function<void(int rc, const std::vector<std::string> &children)>;
    // A watch fired, or the session state changed. `path` is empty for session events.
    using WatchCb = std::function<void(const std::string &path)>;

    virtual ~ZkClient() = default;

    // Credentials and ACL for the sessions open() starts from now on: each
    // authenticates before its first request (again after every reconnect),
    // and create() puts auth.acl on every znode. Default: none (open ACL).
    virtual void set_auth(const ZkAuth &auth) { (void)auth; }

    // Starts connecting (non-blocking). `resume` continues an earlier session.
    virtual bool open(const std::string &hosts, int session_timeout_ms, const ZkCredentials *resume,
                      std::string &error) = 0;
    virtual void close() = 0;
    // Process exit without ending the session (the server keeps it and its
    // ephemeral znodes until it times out, so a restarted process can resume it).
    virtual void abandon() = 0;
    virtual bool is_open() const = 0;
    virtual ZkInterest interest() = 0;
    virtual void process(bool readable, bool writable) = 0;
    virtual bool connected() const = 0;
    virtual bool expired() const = 0;  // the server expired the session (or refused to resume it)
    virtual int negotiated_timeout_ms() const = 0;
    virtual std::int64_t session_id() const = 0;
    virtual ZkCredentials credentials() const = 0;
    // Clock ms (pgha_monotonic_ms) at which the newest sync or write that the
    // server answered on the current session was queued. Those go through the
    // ZooKeeper leader (the only server that expires sessions), so the leader
    // heard from this session's server no earlier than this; a plain read or
    // ping may be answered by a follower cut off from the leader, and does
    // not count. 0 when nothing was confirmed yet.
    virtual std::int64_t last_confirmed_send_ms() const = 0;
    virtual void set_watcher(WatchCb cb) = 0;

    // Asynchronous operations. Return the submit code (ZOK when queued); on a
    // submit failure the callback is not called.
    virtual int get(const std::string &path, bool watch, GetCb cb) = 0;
    virtual int create(const std::string &path, const std::string &data, bool ephemeral, PathCb cb) = 0;
    virtual int set(const std::string &path, const std::string &data, int version, StatCb cb) = 0;
    virtual int remove(const std::string &path, int version, VoidCb cb) = 0;
    virtual int children(const std::string &path, bool watch, ChildrenCb cb) = 0;
    // Deletes the znode and creates it again, ephemeral with `data`, in one
    // transaction (a multi): its data watchers are told it was deleted, its
    // parent's children watchers that the list changed, and no reader finds
    // it missing in between. ZNONODE when it did not exist (nothing changed).
    virtual int replace_ephemeral(const std::string &path, const std::string &data, VoidCb cb) = 0;
    // ZooKeeper's sync: answered once the server caught up with the leader.
    virtual int sync(const std::string &path, VoidCb cb) = 0;
};

// The C client's text for a result code.
std::string zk_error_text(int rc);

}  // namespace pgha
