#include "dcs/cluster_cache.hpp"

#include <zookeeper/zookeeper.h>

#include <algorithm>
#include <iterator>
#include <memory>

namespace pgha {

namespace {
const char *const kBaseList = "/";          // the scope's children
const char *const kMemberList = "members/";  // members/'s children
}  // namespace

struct ClusterCache::Pass {
    ClusterStore::ReadCb cb;
    int pending = 0;
    bool failed = false;
    std::string error;
    std::set<std::string> requested;  // keys and members/<name> read in this pass

    void fail(int rc, const std::string &what) {
        if (!failed) error = what + ": " + zk_error_text(rc);
        failed = true;
    }
};

void ClusterCache::changed(const std::string &path) {
    const std::string &base = store_.base();
    if (path.empty() || path.compare(0, base.size(), base) != 0) {
        all_ = true;  // a session event (or a path we never watched): read everything
        return;
    }
    if (path.size() == base.size()) {
        marked_.insert(kBaseList);
        return;
    }
    if (path[base.size()] != '/') {
        all_ = true;
        return;
    }
    const std::string rel = path.substr(base.size() + 1);
    if (rel == "members") marked_.insert(kMemberList);
    else if (rel.rfind("members/", 0) == 0 && rel.size() > 8 && rel.find('/', 8) == std::string::npos)
        marked_.insert(rel);
    else if (std::find(cluster_keys().begin(), cluster_keys().end(), rel) != cluster_keys().end())
        marked_.insert(rel);
    else
        all_ = true;
}

void ClusterCache::read(std::int64_t now_ms, bool leader_every_pass, bool watch_member_rows, ClusterStore::ReadCb cb) {
    if (watch_member_rows && !watch_rows_)  // a new leader: read every row again, this time with a watch
        for (const auto &m : members_) marked_.insert("members/" + m.first);
    watch_rows_ = watch_member_rows;
    auto p = std::make_shared<Pass>();
    p->cb = std::move(cb);
    p->pending = 1;  // held until every request of this call is queued
    reading_ = true;
    last_requests_ = 0;
    if (!zk_.connected()) {  // a pass that needs no request still needs the session's notices
        p->fail(ZCONNECTIONLOSS, "read " + store_.base());
    } else if (all_ || now_ms - full_at_ms_ >= kFullReadEveryMs) {
        all_ = false;
        full_at_ms_ = now_ms;
        marked_.clear();
        keys_.clear();
        members_.clear();
        members_listed_ = false;
        list_base(p);
    } else {
        std::set<std::string> todo;
        todo.swap(marked_);
        if (leader_every_pass) get_key(p, "leader");
        for (const auto &m : todo) {
            if (m == kBaseList) list_base(p);
            else if (m == kMemberList) list_members(p);
            else if (m.rfind("members/", 0) == 0) get_member(p, m.substr(8));
            else get_key(p, m);
        }
    }
    finish(p);
}

void ClusterCache::list_base(const std::shared_ptr<Pass> &p) {
    ++p->pending;
    ++last_requests_;
    const int rc = zk_.children(store_.base(), true, [this, p](int rc, const std::vector<std::string> &names) {
        if (rc == ZNONODE) {  // nothing written yet (and no watch set): read everything next time
            keys_.clear();
            members_.clear();
            members_listed_ = false;
            all_ = true;
        } else if (rc != ZOK) {
            p->fail(rc, "list " + store_.base());
        } else {
            const std::set<std::string> present(names.begin(), names.end());
            for (auto it = keys_.begin(); it != keys_.end();)
                it = present.count(it->first) ? std::next(it) : keys_.erase(it);
            for (const auto &k : cluster_keys())
                if (present.count(k) && !keys_.count(k)) get_key(p, k);
            if (!present.count("members")) {
                members_.clear();
                members_listed_ = false;
            } else if (!members_listed_) {
                list_members(p);
            }
        }
        finish(p);
    });
    if (rc != ZOK) {
        p->fail(rc, "list " + store_.base());
        finish(p);
    }
}

void ClusterCache::list_members(const std::shared_ptr<Pass> &p) {
    if (!p->requested.insert(kMemberList).second) return;
    ++p->pending;
    ++last_requests_;
    const int rc = zk_.children(store_.path("members"), true, [this, p](int rc, const std::vector<std::string> &names) {
        if (rc == ZNONODE) {
            members_.clear();
            members_listed_ = false;
        } else if (rc != ZOK) {
            p->fail(rc, "list members");
        } else {
            members_listed_ = true;
            const std::set<std::string> present(names.begin(), names.end());
            for (auto it = members_.begin(); it != members_.end();)
                it = present.count(it->first) ? std::next(it) : members_.erase(it);
            // Without data watches, a replaced row (a member's news) shows only
            // here, as a notice on the list: read every row again.
            for (const auto &name : names)
                if (!watch_rows_ || !members_.count(name)) get_member(p, name);
        }
        finish(p);
    });
    if (rc != ZOK) {
        p->fail(rc, "list members");
        finish(p);
    }
}

void ClusterCache::get_key(const std::shared_ptr<Pass> &p, const std::string &key) {
    get_entry(p, keys_, key, key, true);
}

void ClusterCache::get_member(const std::shared_ptr<Pass> &p, const std::string &name) {
    get_entry(p, members_, "members/" + name, name, watch_rows_);
}

// Reads <base>/`rel` into `into`[`name`]; a missing znode leaves it.
void ClusterCache::get_entry(const std::shared_ptr<Pass> &p, std::map<std::string, Entry> &into, const std::string &rel,
                             const std::string &name, bool watch) {
    if (!p->requested.insert(rel).second) return;
    ++p->pending;
    ++last_requests_;
    const int rc = zk_.get(store_.path(rel), watch,
                           [this, p, &into, rel, name](int rc, const std::string &data, const ZkStat &st) {
                               if (rc == ZOK) into[name] = Entry{data, st};
                               else if (rc == ZNONODE) into.erase(name);
                               else p->fail(rc, "read " + rel);
                               finish(p);
                           });
    if (rc != ZOK) {
        p->fail(rc, "read " + rel);
        finish(p);
    }
}

void ClusterCache::finish(const std::shared_ptr<Pass> &p) {
    if (--p->pending > 0) return;
    reading_ = false;
    if (p->failed) {
        all_ = true;  // what the failed requests would have re-armed is unknown: start over
        p->cb(false, ClusterView{}, p->error);
        return;
    }
    ClusterView v;
    std::map<std::string, std::string> raw;
    std::map<std::string, ZkStat> stats;
    for (const auto &[k, e] : keys_) {
        raw[k] = e.data;
        stats[k] = e.stat;
    }
    for (const auto &[name, e] : members_) add_member(v, name, e.data, e.stat);
    assemble_view(v, raw, stats);
    p->cb(true, v, "");
}

}  // namespace pgha
