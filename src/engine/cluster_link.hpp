// The engine's link to ZooKeeper: the session (and its file, so a restarted
// worker resumes it), the cluster reads and the cluster view they produce,
// the base znodes, and this member's znode. Owns all of that state; tells the
// Engine what happened through flags it polls (take_decision_due,
// take_session_expired), never by calling back.
//
// Thread affinity: the worker's loop only.
#pragma once

#include "core/no_postgres.hpp"

#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>

#include "core/cluster.hpp"
#include "dcs/cluster_cache.hpp"
#include "dcs/cluster_store.hpp"
#include "dcs/zk_client.hpp"
#include "engine/deps.hpp"
#include "engine/engine_settings.hpp"
#include "engine/outbox.hpp"

namespace pgha {

class ClusterLink {
  public:
    ClusterLink(ZkClient &zk, const EngineSettings &s, Outbox &out, Clock clock);
    ClusterLink(const ClusterLink &) = delete;
    ClusterLink &operator=(const ClusterLink &) = delete;

    // Connect or resume, process ZooKeeper I/O, create the base znodes and
    // start a read when one is due. `leading`: renew every third of the
    // session timeout instead of every loop_wait.
    void pump(bool readable, bool writable, bool leading);
    // A read finished (or, without ZooKeeper, a blind tick is due, or a part
    // asked for it) since the last call: the Engine decides again.
    bool take_decision_due();
    void request_decision() { decision_due_ = true; }
    // The session expired since the last call (the lock, if we held it, is gone).
    bool take_session_expired();
    // Decide now on what we know, without a fresh view (view_ok() false).
    void force_blind_decision();

    void request_read() { read_requested_ = true; }
    bool read_due() const { return clock_() >= next_read_ms_; }
    const ClusterView &view() const { return view_; }
    bool view_ok() const { return view_ok_; }
    bool dcs_ok() const { return view_ok_ && zk_.connected(); }
    bool connected() const { return zk_.connected(); }
    bool reading() const { return cache_.reading(); }
    std::uint64_t view_seq() const { return view_seq_; }
    std::int64_t dcs_last_seen() const { return dcs_last_seen_; }
    std::int64_t session_id() const { return zk_.session_id(); }
    // The lease's basis: when the newest answered request was sent, and the
    // session timeout the server negotiated. 0/0 without an open session.
    std::int64_t last_confirmed_send_ms() const;
    int negotiated_timeout_ms() const;
    // Review F8 item 8: another live session (not ours now, not one of ours
    // before a restart) owns members/<our name>, or the leader znode that
    // names us: another node runs under our name. "" when not; else why.
    std::string name_conflict() const;
    // Whether the leader znode in the view belongs to our current session.
    bool owns_leader_znode() const;

    // Writes (completion logged on failure; every write asks for a re-read).
    void create(const std::string &key, const std::string &data, bool ephemeral, std::function<void(int)> done);
    void remove(const std::string &key, std::function<void(int)> done = nullptr);
    void set_or_create(const std::string &key, const std::string &data, std::function<void(int)> done = nullptr);
    void clear_failover();
    // A validated, merged configuration, written against the version we read.
    void write_config(const std::string &merged_json, std::function<void(int status, const std::string &)> done);
    // The `sync` key, written against the version we read (created when absent).
    void write_sync(const SyncState &state, std::function<void(int)> done);
    // members/<name>; skipped when nothing changed.
    void touch_member(const Member &m);

    // Wait for ZooKeeper I/O and the next due read (ms).
    void wait_interest(int &fd, bool &read, bool &write, long &timeout_ms);
    // Clean exit. keep_session: leave the session (and the lock) to expire
    // or be resumed; else close it and forget the session file.
    void shutdown(bool close_session, bool keep_session);

  private:
    void ensure_session(std::int64_t now);
    void save_session();
    bool load_session(ZkCredentials &c, int &timeout_ms) const;
    void start_read(bool leading);
    int read_period_ms(bool leading) const;
    void on_read(bool ok, const ClusterView &v, const std::string &err);
    void reset_session(const std::string &why);

    ZkClient &zk_;
    const EngineSettings &s_;
    Outbox &out_;
    Clock clock_;
    ClusterStore store_;
    ClusterCache cache_{zk_, store_};  // the reads (watches; after store_)
    ClusterView view_;
    bool view_ok_ = false;
    bool decision_due_ = false;
    bool session_expired_ = false;
    bool leading_ = false;
    std::uint64_t view_seq_ = 0;
    std::int64_t dcs_last_seen_ = 0;
    bool read_requested_ = true;
    // A watch's notice came: a pass reads what it marked. For a leader that
    // pass is not a renewal (no sync, no leader read, the renewal schedule
    // kept): the renewals come every period whatever the notices.
    bool noticed_ = false;
    // A renewal's sync went out while a pass was still waiting for its
    // answers: the next pass reads the leader znode (as a renewal's does).
    bool leader_read_owed_ = false;
    std::int64_t next_read_ms_ = 0;
    std::int64_t read_started_ms_ = 0;
    std::int64_t retry_ms_ = 0;
    bool base_ensured_ = false, base_pending_ = false;
    std::int64_t saved_session_ = 0;
    std::set<std::int64_t> our_sessions_;  // every session this member had (the session file's included)
    int requested_timeout_ms_ = 30000;
    std::string last_member_json_;
    Member last_member_;                     // the row last written (last_member_json_ decoded)
    std::int64_t last_member_write_ms_ = 0;  // when: a change of positions only waits loop_wait after it
    std::int64_t last_member_session_ = 0;
    // The session whose member znode we last wrote successfully: a view read
    // before that write must not make us delete and re-create it (the leader
    // would see the member vanish and come back on every loop).
    std::int64_t member_written_session_ = 0;
    bool auth_announced_ = false;
};

}  // namespace pgha
