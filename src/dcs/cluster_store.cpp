#include "dcs/cluster_store.hpp"

#include <zookeeper/zookeeper.h>

#include <algorithm>
#include <set>

#include "core/patroni_codec.hpp"

namespace pgha {

namespace {

// Accumulates one read pass. Shared by all its completions; the last one to
// finish hands the view to the caller.
struct ReadPass {
    ClusterStore::ReadCb cb;
    ClusterView view;
    int pending = 0;
    bool failed = false;
    std::string error;
    std::map<std::string, std::string> raw;  // key -> data
    std::map<std::string, ZkStat> stats;
    bool *reading_flag = nullptr;

    void fail(int rc, const std::string &what) {
        if (!failed) error = what + ": " + zk_error_text(rc);
        failed = true;
    }
};

ZkStat stat_of(const std::map<std::string, ZkStat> &stats, const std::string &key) {
    auto it = stats.find(key);
    return it == stats.end() ? ZkStat{} : it->second;
}

}  // namespace

const std::vector<std::string> &cluster_keys() {
    static const std::vector<std::string> keys{"leader", "initialize", "config", "sync",
                                               "failover", "status", "history", "failsafe"};
    return keys;
}

void add_member(ClusterView &v, const std::string &name, const std::string &data, const ZkStat &st) {
    std::string err;
    auto m = decode_member(name, data, err);
    if (m && st.ephemeral_owner == 0) {
        // pg_ha and Patroni create members as ephemeral znodes: a persistent
        // one has no live session behind it and is never a clone, rewind or
        // failover source (issue 10 item 1).
        v.warnings.push_back("member znode \"" + name +
                             "\" is not ephemeral (no ZooKeeper session owns it): ignored; it was not written by a "
                             "running member");
    } else if (m) {
        m->session = st.ephemeral_owner;
        v.members.push_back(*m);
    } else {
        v.warnings.push_back(err);
    }
}

void assemble_view(ClusterView &v, const std::map<std::string, std::string> &raw,
                   const std::map<std::string, ZkStat> &stats) {
    auto take = [&](const char *key) -> const std::string * {
        auto it = raw.find(key);
        return it == raw.end() ? nullptr : &it->second;
    };
    std::string err;
    if (auto *s = take("leader")) {
        v.leader = *s;
        v.leader_owner = stat_of(stats, "leader").ephemeral_owner;
        if (s->empty()) v.leader.reset();
    }
    if (auto *s = take("initialize")) v.initialize = *s;
    if (auto *s = take("config")) {
        nlohmann::json j = nlohmann::json::parse(*s, nullptr, false);
        std::vector<std::string> errors;
        if (j.is_discarded()) {
            v.warnings.push_back("config: not valid JSON; using defaults");
        } else {
            v.config = DynamicConfig::from_json(j, errors);
            v.config_present = true;
            v.config_version = stat_of(stats, "config").version;
        }
        for (auto &e : errors) v.warnings.push_back("config: " + e);
    }
    if (auto *s = take("sync")) {
        err.clear();
        v.sync = decode_sync(*s, err);
        v.sync_version = stat_of(stats, "sync").version;
        if (!err.empty()) v.warnings.push_back(err);
    }
    if (auto *s = take("failover")) {
        err.clear();
        v.failover = decode_failover(*s, err);
        if (!err.empty()) v.warnings.push_back(err);
    }
    if (auto *s = take("status")) {
        err.clear();
        v.status_optime = decode_status(*s, err, &v.status_retain_slots, &v.status_slots);
        if (!err.empty()) v.warnings.push_back(err);
    }
    if (auto *s = take("failsafe")) {
        err.clear();
        v.failsafe = decode_failsafe(*s, err);
        if (!err.empty()) {
            v.failsafe_valid = false;
            v.warnings.push_back(err);
        }
    }
    if (auto *s = take("history")) {
        err.clear();
        v.history = decode_history(*s, err);
        if (!err.empty()) v.warnings.push_back(err);
    }
    std::sort(v.members.begin(), v.members.end(), [](const Member &a, const Member &b) { return a.name < b.name; });
}

namespace {

void finish_pass(const std::shared_ptr<ReadPass> &p) {
    if (--p->pending > 0) return;
    *p->reading_flag = false;
    if (p->failed) {
        p->cb(false, p->view, p->error);
        return;
    }
    assemble_view(p->view, p->raw, p->stats);
    p->cb(true, p->view, "");
}

}  // namespace

ClusterStore::ClusterStore(ZkClient &zk, const std::string &ns, const std::string &scope) : zk_(zk) {
    std::string n = ns.empty() ? "/service" : ns;
    if (n[0] != '/') n = "/" + n;
    while (n.size() > 1 && n.back() == '/') n.pop_back();
    base_ = (n == "/" ? "" : n) + "/" + scope;
}

void ClusterStore::read(bool watch, ReadCb cb) {
    auto p = std::make_shared<ReadPass>();
    p->cb = std::move(cb);
    p->reading_flag = &reading_;
    reading_ = true;
    p->pending = 1;
    auto submit_failed = [p](int rc, const std::string &what) {
        p->fail(rc, what);
        finish_pass(p);
    };
    int rc = zk_.children(base_, watch, [this, p, watch, submit_failed](int rc, const std::vector<std::string> &nodes) {
        if (rc == ZNONODE) {  // nothing written yet: an empty cluster
            finish_pass(p);
            return;
        }
        if (rc != ZOK) {
            p->fail(rc, "list " + base_);
            finish_pass(p);
            return;
        }
        std::set<std::string> present(nodes.begin(), nodes.end());
        for (const std::string &k : cluster_keys()) {
            if (!present.count(k)) continue;
            // watches where a change must wake us at once
            bool w = watch && (k == "leader" || k == "config" || k == "failover" || k == "sync");
            ++p->pending;
            int src = zk_.get(path(k), w, [p, k](int rc, const std::string &data, const ZkStat &st) {
                if (rc == ZOK) {
                    p->raw[k] = data;
                    p->stats[k] = st;
                } else if (rc != ZNONODE) {
                    p->fail(rc, "read " + k);
                }
                finish_pass(p);
            });
            if (src != ZOK) submit_failed(src, "read " + k);
        }
        if (present.count("members")) {
            ++p->pending;
            int src = zk_.children(path("members"), watch, [this, p](int rc, const std::vector<std::string> &names) {
                if (rc != ZOK && rc != ZNONODE) p->fail(rc, "list members");
                if (rc == ZOK) {
                    for (const auto &name : names) {
                        ++p->pending;
                        int src2 = zk_.get(path("members/" + name), false,
                                           [p, name](int rc, const std::string &data, const ZkStat &st) {
                                               if (rc == ZOK) {
                                                   add_member(p->view, name, data, st);
                                               } else if (rc != ZNONODE) {
                                                   p->fail(rc, "read member " + name);
                                               }
                                               finish_pass(p);
                                           });
                        if (src2 != ZOK) {
                            p->fail(src2, "read member " + name);
                            finish_pass(p);
                        }
                    }
                }
                finish_pass(p);
            });
            if (src != ZOK) submit_failed(src, "list members");
        }
        finish_pass(p);
    });
    if (rc != ZOK) {
        reading_ = false;
        p->cb(false, p->view, "list " + base_ + ": " + zk_error_text(rc));
    }
}

void ClusterStore::ensure_base(DoneCb cb) {
    // Create each level in order; "exists" is fine.
    std::vector<std::string> levels;
    for (std::size_t i = 1; i <= base_.size(); ++i)
        if (i == base_.size() || base_[i] == '/') levels.push_back(base_.substr(0, i));
    levels.push_back(base_ + "/members");
    auto remaining = std::make_shared<std::size_t>(levels.size());
    auto worst = std::make_shared<int>(ZOK);
    for (const auto &lv : levels) {
        int rc = zk_.create(lv, "", false, [remaining, worst, cb](int rc, const std::string &) {
            if (rc != ZOK && rc != ZNODEEXISTS) *worst = rc;
            if (--*remaining == 0) cb(*worst);
        });
        if (rc != ZOK) {
            *worst = rc;
            if (--*remaining == 0) cb(*worst);
        }
    }
}

void ClusterStore::create(const std::string &key, const std::string &data, bool ephemeral, DoneCb cb) {
    int rc = zk_.create(path(key), data, ephemeral, [cb](int rc, const std::string &) { cb(rc); });
    if (rc != ZOK) cb(rc);
}

void ClusterStore::set_or_create(const std::string &key, const std::string &data, DoneCb cb) {
    const std::string p = path(key);
    int rc = zk_.set(p, data, -1, [this, p, data, cb](int rc, const ZkStat &) {
        if (rc != ZNONODE) {
            cb(rc);
            return;
        }
        int rc2 = zk_.create(p, data, false, [cb](int rc, const std::string &) { cb(rc); });
        if (rc2 != ZOK) cb(rc2);
    });
    if (rc != ZOK) cb(rc);
}

void ClusterStore::set_versioned(const std::string &key, const std::string &data, int version, DoneCb cb) {
    int rc = zk_.set(path(key), data, version, [cb](int rc, const ZkStat &) { cb(rc); });
    if (rc != ZOK) cb(rc);
}

void ClusterStore::remove(const std::string &key, int version, DoneCb cb) {
    int rc = zk_.remove(path(key), version, [cb](int rc) { cb(rc); });
    if (rc != ZOK) cb(rc);
}

void ClusterStore::touch_member(const std::string &name, const std::string &data, std::int64_t current_owner,
                                bool notify, DoneCb cb) {
    const std::string p = path("members/" + name);
    if (current_owner != 0 && current_owner == zk_.session_id()) {
        auto recreate_if_gone = [this, p, data, cb](int rc) {
            if (rc != ZNONODE) {
                cb(rc);
                return;
            }
            // Gone after all (removed by someone): create it again.
            int rc2 = zk_.create(p, data, true, [cb](int rc, const std::string &) { cb(rc); });
            if (rc2 != ZOK) cb(rc2);
        };
        int rc = notify ? zk_.replace_ephemeral(p, data, recreate_if_gone)
                        : zk_.set(p, data, -1, [recreate_if_gone](int rc, const ZkStat &) { recreate_if_gone(rc); });
        if (rc != ZOK) cb(rc);
        return;
    }
    // Missing, or left by an earlier session of ours: replace it with one bound to this session.
    int rc = zk_.remove(p, -1, [this, p, data, cb](int) {
        int rc2 = zk_.create(p, data, true, [cb](int rc, const std::string &) { cb(rc); });
        if (rc2 != ZOK) cb(rc2);
    });
    if (rc != ZOK) cb(rc);
}

}  // namespace pgha
