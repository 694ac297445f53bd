// The engine's reads of the cluster, kept current by watches (issue 14 item
// 4): ZooKeeper load of an idle cluster at or below Patroni's, instead of
// every member re-reading every znode every loop.
//
// The first pass reads everything and leaves a watch on every znode it read
// (the scope's children, members/'s children, each key, and, on the leader,
// each member row). A watch is ZooKeeper's one-time notice that the znode
// (or the list) changed:
// changed() marks it, and the next pass reads again only what was marked,
// plus, for a leader, `leader` every pass (issued after its renewal sync, so
// a leader never decides on an older leader znode than before), and takes
// the rest from the cache. A watch is set again by the read that follows its
// notice. An idle standby's pass sends nothing: its view is the cache, which
// the notices keep current (the link starts a pass only while the session is
// connected, so a standby cut off from ZooKeeper decides blind, as before).
//
// Member rows (issue 14 item 4, as Patroni): every member rewrites its row
// once per loop_wait while WAL moves. If every member watched every row,
// each write would be read by all the others: n(n-1) reads per loop, the
// quadratic load measured under pgbench. So only the leader, which follows
// the positions (lag, sync standbys, switchover candidates), watches rows.
// A member's news (state, role, timeline, tags: anything but positions)
// replaces its row in one transaction (ClusterStore::touch_member), which
// fires every member's watch on members/'s children; a standby then reads
// every row again (without a watch). A standby's copy of other members'
// positions is therefore as of their last news or the last full read,
// while every other field is current; whatever reads positions takes the
// newer of the row and the leader's status key (ClusterView::position_of),
// and the failover race asks the peers' APIs.
//
// Everything is read again (the cache dropped) after a session event (a
// reconnect, a new session: path "" in changed()), after a failed pass, and
// every kFullReadEveryMs as a safety net. ZooKeeper delivers a watch's notice
// before any answer that shows the change, so a pass never mixes a newer
// znode it read with an older one it took from the cache without a notice
// for it being on its way.
//
// Thread affinity: the thread that drives the ZkClient (callbacks run in
// its process()).
#pragma once

#include "core/no_postgres.hpp"

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "core/cluster.hpp"
#include "dcs/cluster_store.hpp"
#include "dcs/zk_client.hpp"

namespace pgha {

class ClusterCache {
  public:
    static constexpr std::int64_t kFullReadEveryMs = 300000;

    ClusterCache(ZkClient &zk, const ClusterStore &store) : zk_(zk), store_(store) {}
    ClusterCache(const ClusterCache &) = delete;
    ClusterCache &operator=(const ClusterCache &) = delete;

    // A watch's notice (the znode's full path), or "" for a session event.
    void changed(const std::string &path);
    // One pass; `cb` is called exactly once (inside ZkClient::process(), or
    // at once when a request cannot be queued or none is needed).
    // `leader_every_pass`: read the leader znode even without a notice (a
    // leader's renewal).
    // `watch_member_rows`: leave a data watch on every member row (the
    // leader, which follows the positions; turning it on reads every row
    // again). Without it, rows are read when members/'s children change
    // (a member's news replaces its row: ClusterStore::touch_member) and
    // at the full reads.
    void read(std::int64_t now_ms, bool leader_every_pass, bool watch_member_rows, ClusterStore::ReadCb cb);
    bool reading() const { return reading_; }
    // Requests the last pass sent (diagnostics and tests).
    int last_requests() const { return last_requests_; }

  private:
    struct Entry {
        std::string data;
        ZkStat stat;
    };
    struct Pass;
    void get_key(const std::shared_ptr<Pass> &p, const std::string &key);
    void get_member(const std::shared_ptr<Pass> &p, const std::string &name);
    void get_entry(const std::shared_ptr<Pass> &p, std::map<std::string, Entry> &into, const std::string &rel,
                   const std::string &name, bool watch);
    void list_base(const std::shared_ptr<Pass> &p);
    void list_members(const std::shared_ptr<Pass> &p);
    void finish(const std::shared_ptr<Pass> &p);

    ZkClient &zk_;
    const ClusterStore &store_;
    std::map<std::string, Entry> keys_;     // cluster_keys() present
    std::map<std::string, Entry> members_;  // members/<name>
    // Marked by notices: a key name, "members/<name>", kBaseList or kMemberList.
    std::set<std::string> marked_;
    bool all_ = true;  // read everything at the next pass
    bool members_listed_ = false;  // members/'s children were read (their watch is set)
    bool watch_rows_ = false;      // member rows are read with a data watch (a leader)
    bool reading_ = false;
    std::int64_t full_at_ms_ = 0;
    int last_requests_ = 0;
};

}  // namespace pgha
