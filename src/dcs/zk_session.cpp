#include "dcs/zk_session.hpp"

#include "core/monotonic.h"

#include <poll.h>
#include <sys/time.h>
#include <zookeeper/zookeeper.h>

#include <chrono>
#include <cstring>

namespace pgha {

namespace {

// zk_perm bits -> the C client's ZOO_PERM_* (extern constants, not constexpr).
int to_zoo_perms(int perms) {
    int out = 0;
    if (perms & zk_perm::kRead) out |= ZOO_PERM_READ;
    if (perms & zk_perm::kWrite) out |= ZOO_PERM_WRITE;
    if (perms & zk_perm::kCreate) out |= ZOO_PERM_CREATE;
    if (perms & zk_perm::kDelete) out |= ZOO_PERM_DELETE;
    if (perms & zk_perm::kAdmin) out |= ZOO_PERM_ADMIN;
    return out;
}

// The ACL entries of every znode created (pointing into `auth`).
std::vector<struct ACL> acl_entries(const ZkAuth &auth) {
    std::vector<struct ACL> entries;
    for (const auto &e : auth.acl)
        entries.push_back(ACL{to_zoo_perms(e.perms), Id{const_cast<char *>(e.scheme.c_str()), const_cast<char *>(e.id.c_str())}});
    return entries;
}

// Digest authentication never fails on the server (any user:password is a
// valid identity); a failure would move the handle to ZOO_AUTH_FAILED_STATE,
// which expired() reports.
void auth_completion(int, const void *) {}

// One in-flight request: what to call back and when it was queued.
struct Pending {
    ZkSession *session;
    std::int64_t sent_ms;
    std::int64_t session_at_send;
    ZkSession::GetCb get_cb;
    ZkSession::StatCb stat_cb;
    ZkSession::PathCb path_cb;
    ZkSession::VoidCb void_cb;
    ZkSession::ChildrenCb children_cb;
    bool confirms = false;  // a sync or write: answered through the ZooKeeper leader
    // A multi's results and a created path: the C client fills them when the answer comes.
    std::vector<zoo_op_result_t> multi_results{};
    std::vector<char> created_path{};
};

ZkStat to_stat(const struct Stat *s) {
    ZkStat out;
    if (s) {
        out.version = s->version;
        out.ephemeral_owner = s->ephemeralOwner;
        out.mzxid = s->mzxid;
    }
    return out;
}

// Takes ownership of the Pending; returns false when the user callback must
// not run (the session is closing and its owner may be gone).
bool finish(Pending *p, int rc) {
    p->session->request_done();
    if (rc == ZCLOSING || p->session->closing()) return false;
    p->session->on_answer(rc, p->sent_ms, p->session_at_send, p->confirms);
    return true;
}

void data_completion(int rc, const char *value, int len, const struct Stat *stat, const void *data) {
    std::unique_ptr<Pending> p(static_cast<Pending *>(const_cast<void *>(data)));
    if (!finish(p.get(), rc)) return;
    std::string v = (rc == ZOK && value && len > 0) ? std::string(value, static_cast<std::size_t>(len)) : std::string();
    p->session->guard([&] { p->get_cb(rc, v, to_stat(stat)); });
}

void stat_completion(int rc, const struct Stat *stat, const void *data) {
    std::unique_ptr<Pending> p(static_cast<Pending *>(const_cast<void *>(data)));
    if (!finish(p.get(), rc)) return;
    p->session->guard([&] { p->stat_cb(rc, to_stat(rc == ZOK ? stat : nullptr)); });
}

void string_completion(int rc, const char *value, const void *data) {
    std::unique_ptr<Pending> p(static_cast<Pending *>(const_cast<void *>(data)));
    if (!finish(p.get(), rc)) return;
    p->session->guard([&] { p->path_cb(rc, value ? std::string(value) : std::string()); });
}

void void_completion(int rc, const void *data) {
    std::unique_ptr<Pending> p(static_cast<Pending *>(const_cast<void *>(data)));
    if (!finish(p.get(), rc)) return;
    p->session->guard([&] { p->void_cb(rc); });
}

void strings_completion(int rc, const struct String_vector *strings, const void *data) {
    std::unique_ptr<Pending> p(static_cast<Pending *>(const_cast<void *>(data)));
    if (!finish(p.get(), rc)) return;
    p->session->guard([&] {
        std::vector<std::string> out;
        if (rc == ZOK && strings)
            for (int i = 0; i < strings->count; ++i) out.emplace_back(strings->data[i]);
        p->children_cb(rc, out);
    });
}

void watcher_trampoline(zhandle_t *, int type, int state, const char *path, void *ctx) {
    auto *self = static_cast<ZkSession *>(ctx);
    if (self && !self->closing()) self->guard([&] { self->on_watch(type, state, path); });
}

// True when the server itself produced `rc` (the session was alive then).
bool server_answered(int rc) {
    switch (rc) {
        case ZCONNECTIONLOSS:
        case ZOPERATIONTIMEOUT:
        case ZSESSIONEXPIRED:
        case ZSESSIONMOVED:
        case ZCLOSING:
        case ZINVALIDSTATE:
        case ZMARSHALLINGERROR:
        case ZSYSTEMERROR:
        case ZRUNTIMEINCONSISTENCY:
        case ZDATAINCONSISTENCY:
        case ZAUTHFAILED:
            return false;
        default:
            return true;
    }
}

}  // namespace

ZkSession::ZkSession() = default;

ZkSession::~ZkSession() { close(); }

// The lease clock: answers' send times are compared with the deadline the
// backends check, so both use core/monotonic.h.
std::int64_t ZkSession::steady_ms() { return pgha_monotonic_ms(); }

std::string ZkSession::error_text(int rc) { return zerror(rc); }

std::string zk_error_text(int rc) { return zerror(rc); }

bool ZkSession::open(const std::string &hosts, int session_timeout_ms, const ZkCredentials *resume,
                     std::string &error) {
    close();
    static bool log_level_set = false;
    if (!log_level_set) {
        zoo_set_debug_level(ZOO_LOG_LEVEL_ERROR);
        log_level_set = true;
    }
    clientid_t cid;
    std::memset(&cid, 0, sizeof cid);
    const clientid_t *cid_ptr = nullptr;
    if (resume && resume->valid()) {
        cid.client_id = resume->session_id;
        std::memcpy(cid.passwd, resume->password.data(), sizeof cid.passwd);
        cid_ptr = &cid;
    }
    hosts_ = hosts;
    closing_ = false;
    last_confirmed_send_ms_ = 0;
    answered_session_ = 0;
    zh_ = zookeeper_init(hosts.c_str(), watcher_trampoline, session_timeout_ms, cid_ptr, this, 0);
    if (!zh_) {
        error = std::string("cannot start a ZooKeeper session with \"") + hosts + "\": " + std::strerror(errno);
        return false;
    }
    if (auth_.enabled()) {
        // Kept by the client and sent again, before anything else, on every
        // reconnect of this handle; a new handle (open() again) adds it again.
        const std::string cred = auth_.digest_credential();
        int rc = zoo_add_auth(zh_, "digest", cred.data(), static_cast<int>(cred.size()), auth_completion, nullptr);
        if (rc != ZOK) {
            close();
            error = "cannot add the ZooKeeper credentials of pg_ha.zookeeper_user: " + std::string(zerror(rc));
            return false;
        }
    }
    return true;
}

void ZkSession::abandon() {
    zh_ = nullptr;
    in_flight_ = 0;
    last_confirmed_send_ms_ = 0;
}

void ZkSession::close() {
    if (!zh_) return;
    closing_ = true;
    zookeeper_close(zh_);  // completes pending requests with ZCLOSING (callbacks suppressed)
    zh_ = nullptr;
    in_flight_ = 0;
    last_confirmed_send_ms_ = 0;
}

ZkInterest ZkSession::interest() {
    ZkInterest out;
    if (!zh_) return out;
    int fd = -1, events = 0;
    struct timeval tv = {1, 0};
    int rc = zookeeper_interest(zh_, &fd, &events, &tv);
    if (rc != ZOK && rc != ZCONNECTIONLOSS && rc != ZOPERATIONTIMEOUT) {
        out.timeout_ms = 100;
        return out;
    }
    out.fd = fd;
    out.read = (events & ZOOKEEPER_READ) != 0;
    out.write = (events & ZOOKEEPER_WRITE) != 0;
    long ms = tv.tv_sec * 1000L + tv.tv_usec / 1000L;
    out.timeout_ms = static_cast<int>(ms < 0 ? 0 : ms > 1000 ? 1000 : ms);
    return out;
}

void ZkSession::process(bool readable, bool writable) {
    if (!zh_) return;
    int events = (readable ? ZOOKEEPER_READ : 0) | (writable ? ZOOKEEPER_WRITE : 0);
    zookeeper_process(zh_, events);
    if (deferred_) {
        std::exception_ptr e = deferred_;
        deferred_ = nullptr;
        std::rethrow_exception(e);
    }
}

bool ZkSession::connected() const { return zh_ && zoo_state(zh_) == ZOO_CONNECTED_STATE; }

bool ZkSession::expired() const {
    if (!zh_) return false;
    int st = zoo_state(zh_);
    return st == ZOO_EXPIRED_SESSION_STATE || st == ZOO_AUTH_FAILED_STATE;
}

int ZkSession::negotiated_timeout_ms() const { return zh_ ? zoo_recv_timeout(zh_) : 0; }

std::int64_t ZkSession::session_id() const {
    if (!zh_) return 0;
    const clientid_t *c = zoo_client_id(zh_);
    return c ? c->client_id : 0;
}

ZkCredentials ZkSession::credentials() const {
    ZkCredentials out;
    if (!zh_) return out;
    const clientid_t *c = zoo_client_id(zh_);
    if (!c || c->client_id == 0) return out;
    out.session_id = c->client_id;
    out.password.assign(c->passwd, sizeof c->passwd);
    return out;
}

void ZkSession::on_answer(int rc, std::int64_t sent_ms, std::int64_t session_at_send, bool confirms) {
    if (!confirms || !server_answered(rc)) return;
    const std::int64_t sid = session_id();
    if (sid == 0 || session_at_send != sid) return;  // answered on another session: proves nothing now
    if (answered_session_ != sid) {
        answered_session_ = sid;
        last_confirmed_send_ms_ = 0;
    }
    if (sent_ms > last_confirmed_send_ms_) last_confirmed_send_ms_ = sent_ms;
}

void ZkSession::on_watch(int type, int state, const char *path) {
    if (type == ZOO_SESSION_EVENT && state == ZOO_EXPIRED_SESSION_STATE) last_confirmed_send_ms_ = 0;
    if (watcher_) watcher_(type == ZOO_SESSION_EVENT || !path ? std::string() : std::string(path));
}

#define PGHA_SUBMIT(call)                                  \
    do {                                                   \
        if (!zh_) return ZINVALIDSTATE;                    \
        int rc_ = (call);                                  \
        if (rc_ != ZOK) {                                  \
            delete p;                                      \
            return rc_;                                    \
        }                                                  \
        ++in_flight_;                                      \
        return ZOK;                                        \
    } while (0)

int ZkSession::get(const std::string &path, bool watch, GetCb cb) {
    auto *p = new Pending{this, steady_ms(), session_id(), std::move(cb), {}, {}, {}, {}};
    PGHA_SUBMIT(zoo_aget(zh_, path.c_str(), watch ? 1 : 0, data_completion, p));
}

int ZkSession::create(const std::string &path, const std::string &data, bool ephemeral, PathCb cb) {
    auto *p = new Pending{this, steady_ms(), session_id(), {}, {}, std::move(cb), {}, {}, true};
    // Our digest id ALL plus pg_ha.zookeeper_set_acls; open without credentials.
    std::vector<struct ACL> entries = acl_entries(auth_);
    struct ACL_vector acl = {static_cast<std::int32_t>(entries.size()), entries.data()};
    const struct ACL_vector *acl_ptr = entries.empty() ? &ZOO_OPEN_ACL_UNSAFE : &acl;  // copied by zoo_acreate
    PGHA_SUBMIT(zoo_acreate(zh_, path.c_str(), data.data(), static_cast<int>(data.size()), acl_ptr,
                            ephemeral ? ZOO_EPHEMERAL : ZOO_PERSISTENT, string_completion, p));
}

// One transaction: watchers of the znode see it deleted, watchers of the
// parent's children see one change, and no reader ever finds it missing.
int ZkSession::replace_ephemeral(const std::string &path, const std::string &data, VoidCb cb) {
    auto *p = new Pending{this, steady_ms(), session_id(), {}, {}, {}, std::move(cb), {}, true};
    p->multi_results.resize(2);
    p->created_path.resize(path.size() + 1);
    std::vector<struct ACL> entries = acl_entries(auth_);
    struct ACL_vector acl = {static_cast<std::int32_t>(entries.size()), entries.data()};
    const struct ACL_vector *acl_ptr = entries.empty() ? &ZOO_OPEN_ACL_UNSAFE : &acl;  // serialized by zoo_amulti
    zoo_op_t ops[2];
    zoo_delete_op_init(&ops[0], path.c_str(), -1);
    zoo_create_op_init(&ops[1], path.c_str(), data.data(), static_cast<int>(data.size()), acl_ptr, ZOO_EPHEMERAL,
                       p->created_path.data(), static_cast<int>(p->created_path.size()));
    PGHA_SUBMIT(zoo_amulti(zh_, 2, ops, p->multi_results.data(), void_completion, p));
}

int ZkSession::set(const std::string &path, const std::string &data, int version, StatCb cb) {
    auto *p = new Pending{this, steady_ms(), session_id(), {}, std::move(cb), {}, {}, {}, true};
    PGHA_SUBMIT(zoo_aset(zh_, path.c_str(), data.data(), static_cast<int>(data.size()), version, stat_completion, p));
}

int ZkSession::remove(const std::string &path, int version, VoidCb cb) {
    auto *p = new Pending{this, steady_ms(), session_id(), {}, {}, {}, std::move(cb), {}, true};
    PGHA_SUBMIT(zoo_adelete(zh_, path.c_str(), version, void_completion, p));
}

int ZkSession::children(const std::string &path, bool watch, ChildrenCb cb) {
    auto *p = new Pending{this, steady_ms(), session_id(), {}, {}, {}, {}, std::move(cb)};
    PGHA_SUBMIT(zoo_aget_children(zh_, path.c_str(), watch ? 1 : 0, strings_completion, p));
}

int ZkSession::sync(const std::string &path, VoidCb cb) {
    PathCb done = [cb](int rc, const std::string &) { cb(rc); };
    auto *p = new Pending{this, steady_ms(), session_id(), {}, {}, std::move(done), {}, {}, true};
    PGHA_SUBMIT(zoo_async(zh_, path.c_str(), string_completion, p));
}

#undef PGHA_SUBMIT

bool zk_run_until(ZkSession &zk, const std::function<bool()> &done, int timeout_ms) {
    const std::int64_t deadline = ZkSession::steady_ms() + timeout_ms;
    while (!done()) {
        std::int64_t left = deadline - ZkSession::steady_ms();
        if (left <= 0 || !zk.is_open()) break;
        ZkInterest in = zk.interest();
        struct pollfd pfd = {in.fd, 0, 0};
        if (in.read) pfd.events |= POLLIN;
        if (in.write) pfd.events |= POLLOUT;
        int wait = static_cast<int>(std::min<std::int64_t>(left, in.timeout_ms));
        int n = poll(in.fd >= 0 ? &pfd : nullptr, in.fd >= 0 ? 1 : 0, wait);
        bool r = n > 0 && (pfd.revents & (POLLIN | POLLHUP | POLLERR));
        bool w = n > 0 && (pfd.revents & POLLOUT);
        zk.process(r, w);
    }
    return done();
}

}  // namespace pgha
