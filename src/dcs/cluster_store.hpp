// Patroni's ZooKeeper layout on top of ZkSession: /<namespace>/<scope>/{leader,
// members/<name>, config, initialize, sync, failover, history, status}.
// Reads the whole cluster in one asynchronous pass; writes single keys.
#pragma once
#include "core/no_postgres.hpp"

#include <functional>
#include <map>
#include <vector>
#include <memory>
#include <string>

#include "core/cluster.hpp"
#include "dcs/zk_client.hpp"

namespace pgha {

// The keys under /<namespace>/<scope>/ besides members/: leader, initialize,
// config, sync, failover, status, history, failsafe.
const std::vector<std::string> &cluster_keys();
// members/<name> (its data and stat) into the view: decoded, or a warning
// for data that is not a member or a znode no session owns.
void add_member(ClusterView &v, const std::string &name, const std::string &data, const ZkStat &st);
// The other keys (raw data and stats by key name) into the view; members
// sorted by name. One reading of Patroni's layout for every reader.
void assemble_view(ClusterView &v, const std::map<std::string, std::string> &raw,
                   const std::map<std::string, ZkStat> &stats);

class ClusterStore {
  public:
    using ReadCb = std::function<void(bool ok, const ClusterView &view, const std::string &error)>;
    using DoneCb = std::function<void(int rc)>;

    ClusterStore(ZkClient &zk, const std::string &ns, const std::string &scope);

    const std::string &base() const { return base_; }
    std::string path(const std::string &key) const { return base_ + "/" + key; }

    // Reads everything; `watch` leaves watches on leader/members/config/failover/sync.
    // Calls `cb` exactly once (inside ZkSession::process()).
    void read(bool watch, ReadCb cb);
    bool reading() const { return reading_; }

    // Creates /<ns>, /<ns>/<scope> and members/ if missing (rc ZOK when all exist).
    void ensure_base(DoneCb cb);
    // Creates (ephemeral or persistent) or, for persistent keys, overwrites.
    void create(const std::string &key, const std::string &data, bool ephemeral, DoneCb cb);
    void set_or_create(const std::string &key, const std::string &data, DoneCb cb);
    void set_versioned(const std::string &key, const std::string &data, int version, DoneCb cb);
    void remove(const std::string &key, int version, DoneCb cb);
    // members/<name>: set when it exists on our session, else recreate (ephemeral).
    // `notify`: the change matters to every member (state, role, timeline,
    // tags, anything but the positions), so the znode is replaced (deleted
    // and created in one transaction) and every member's watch on members/'s
    // children fires, as Patroni's touch_member does. A plain set reaches
    // only the members that watch the znode's data (the leader).
    void touch_member(const std::string &name, const std::string &data, std::int64_t current_owner, bool notify,
                      DoneCb cb);

  private:
    ZkClient &zk_;
    std::string base_;
    bool reading_ = false;
};

}  // namespace pgha
