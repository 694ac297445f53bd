#include "engine/cluster_link.hpp"

#include <zookeeper/zookeeper.h>

#include <algorithm>
#include <cstdio>
#include <ctime>

#include "core/patroni_codec.hpp"
#include "dcs/session_file.hpp"

namespace pgha {
ClusterLink::ClusterLink(ZkClient &zk, const EngineSettings &s, Outbox &out, Clock clock)
    : zk_(zk), s_(s), out_(out), clock_(std::move(clock)), store_(zk, s.ns, s.scope) {
    zk_.set_watcher([this](const std::string &path) {
        cache_.changed(path);
        noticed_ = true;
    });
    // EngineSettings::validate() refused bad values before the engine was built.
    ZkAuth auth;
    std::string err;
    if (make_zk_auth(s.zookeeper_user, s.zookeeper_password, s.zookeeper_set_acls, auth, err)) zk_.set_auth(auth);
}

bool ClusterLink::load_session(ZkCredentials &c, int &timeout_ms) const {
    return read_session_file(s_.session_file(), s_.node_name, c, timeout_ms);
}

void ClusterLink::save_session() {
    ZkCredentials c = zk_.credentials();
    if (!c.valid() || c.session_id == saved_session_) return;
    our_sessions_.insert(c.session_id);
    if (write_session_file(s_.session_file(), s_.node_name, c, requested_timeout_ms_)) saved_session_ = c.session_id;
}

std::string ClusterLink::name_conflict() const {
    // A session that published our own connect address under our name is an
    // earlier process of this node whose session file is gone (pg_rewind and
    // clones replace it), not another node: it expires within ttl.
    const Member *mine = view_.member(s_.node_name);
    auto ours_by_address = [this, mine](std::int64_t owner) {
        return mine && mine->session == owner && !mine->conn_url.empty() && mine->conn_url == s_.member_conn_url();
    };
    auto foreign = [this, &ours_by_address](std::int64_t owner) {
        return owner != 0 && owner != zk_.session_id() && !our_sessions_.count(owner) && !ours_by_address(owner);
    };
    std::int64_t owner = 0;
    std::string what;
    if (const Member *m = view_.member(s_.node_name); m && foreign(m->session)) {
        owner = m->session;
        what = "members/" + s_.node_name;
    } else if (view_.leader && *view_.leader == s_.node_name && foreign(view_.leader_owner)) {
        owner = view_.leader_owner;
        what = "the leader znode naming " + s_.node_name;
    }
    if (owner == 0) return "";
    return "another node runs as member \"" + s_.node_name + "\" (ZooKeeper session 0x" + session_id_hex(owner) + " owns " +
           what + "): this node takes no action under the same name; give it another pg_ha.name or stop the other "
           "node (after a restart of this node, its old session expires within ttl)";
}

void ClusterLink::reset_session(const std::string &why) {
    if (!why.empty()) out_.log(why);
    std::remove(s_.session_file().c_str());
    zk_.close();
    cache_.changed("");  // the watches went with the session
    base_ensured_ = base_pending_ = false;
    view_ok_ = false;
    saved_session_ = 0;
}

void ClusterLink::ensure_session(std::int64_t now) {
    if (zk_.is_open() && zk_.expired()) {
        reset_session("ZooKeeper session expired; starting a new session");
        session_expired_ = true;
    }
    if (zk_.is_open() || now < retry_ms_) return;
    ZkCredentials creds;
    // A resumed session asks for the timeout it was created with (a leader
    // restarted under a ttl other than the default keeps its lock).
    int timeout = requested_timeout_ms_;
    bool resume = load_session(creds, timeout);
    if (resume) our_sessions_.insert(creds.session_id);
    if (resume) requested_timeout_ms_ = timeout;
    else if (view_.config_present) requested_timeout_ms_ = view_.config.ttl_ms;
    if (!auth_announced_) {
        auth_announced_ = true;
        if (s_.zookeeper_user.empty())
            out_.log("WARNING: ZooKeeper is unauthenticated (pg_ha.zookeeper_user is not set): the znodes pg_ha "
                     "creates are open to anyone who reaches ZooKeeper, who can then demote the primary or make "
                     "members clone from a server of their choice");
        else
            out_.log("authenticating to ZooKeeper as digest user \"" + s_.zookeeper_user +
                     "\"; new znodes are restricted to it" +
                     (s_.zookeeper_set_acls.empty() ? std::string() : " and pg_ha.zookeeper_set_acls"));
    }
    std::string err;
    if (!zk_.open(s_.zookeeper_hosts, requested_timeout_ms_, resume ? &creds : nullptr, err)) {
        out_.log(err + " (check pg_ha.zookeeper_hosts); retrying in 5 s");
        retry_ms_ = now + 5000;
        return;
    }
    if (resume) out_.log("resuming ZooKeeper session 0x" + session_id_hex(creds.session_id));
    cache_.changed("");
    read_requested_ = true;
}

void ClusterLink::pump(bool readable, bool writable, bool leading) {
    const std::int64_t now = clock_();
    leading_ = leading;
    ensure_session(now);
    if (zk_.is_open()) zk_.process(readable, writable);
    if (zk_.connected()) {
        save_session();
        if (!base_ensured_ && !base_pending_) {
            base_pending_ = true;
            store_.ensure_base([this](int rc) {
                base_pending_ = false;
                base_ensured_ = rc == ZOK;
                if (rc != ZOK) out_.log("cannot create the cluster's znodes: " + zk_error_text(rc));
            });
        }
        if (!cache_.reading() && (read_requested_ || noticed_ || now >= next_read_ms_)) {
            start_read(leading);
        } else if (leading && cache_.reading() && now >= next_read_ms_) {
            // A leader renews on schedule even while a pass still waits for
            // its answers. Otherwise renewals come every period + round trip,
            // and once a round trip (a slow network, a loaded ZooKeeper)
            // reaches ttl - margin - period the lease (send time + ttl -
            // margin) runs out between two answers that each came in time.
            // The sync's answer counts as a write's does (README "Timing and
            // safety"): only while the view shows our session owns the lock,
            // and the next pass reads the leader znode again.
            next_read_ms_ = now + read_period_ms(true);
            leader_read_owed_ = true;
            zk_.sync(store_.base(), [](int) {});
        }
    } else if (now >= next_read_ms_) {
        // No ZooKeeper: still observe, decide (the lease runs out on its own) and publish.
        force_blind_decision();
    }
}

void ClusterLink::force_blind_decision() {
    next_read_ms_ = clock_() + 1000;
    view_ok_ = false;
    decision_due_ = true;
}

bool ClusterLink::take_decision_due() {
    bool f = decision_due_;
    decision_due_ = false;
    return f;
}

bool ClusterLink::take_session_expired() {
    bool e = session_expired_;
    session_expired_ = false;
    return e;
}

int ClusterLink::read_period_ms(bool leading) const {
    int period = view_.config_present ? view_.config.loop_wait_ms : 10000;
    // A leader renews its lease more often than loop_wait: every third of the session timeout.
    if (leading && zk_.negotiated_timeout_ms() > 0) period = std::min(period, zk_.negotiated_timeout_ms() / 3);
    return period;
}

void ClusterLink::start_read(bool leading) {
    const std::int64_t now = clock_();
    // A leader renews on schedule and after its own writes; a pass only a
    // notice asked for reads what changed and leaves the schedule alone.
    const bool renewal = !leading || read_requested_ || now >= next_read_ms_;
    read_requested_ = noticed_ = false;
    read_started_ms_ = now;
    if (renewal) next_read_ms_ = now + read_period_ms(leading);
    // A leader's renewal starts with a sync: only answers that went through
    // the ZooKeeper leader extend the lease (a follower cut off from it keeps
    // answering reads until syncLimit x tickTime).
    if (leading && renewal) zk_.sync(store_.base(), [](int) {});
    const bool read_leader = leading && (renewal || leader_read_owed_);
    leader_read_owed_ = false;
    cache_.read(read_started_ms_, read_leader, leading, [this](bool ok, const ClusterView &v, const std::string &err) { on_read(ok, v, err); });
}

void ClusterLink::on_read(bool ok, const ClusterView &v, const std::string &err) {
    decision_due_ = true;
    if (!ok) {
        out_.log("reading the cluster from ZooKeeper failed: " + err);
        view_ok_ = false;
        return;
    }
    for (const auto &w : v.warnings)
        if (std::find(view_.warnings.begin(), view_.warnings.end(), w) == view_.warnings.end())
            out_.log("ignoring bad data in ZooKeeper: " + w);
    if (v.config.adjusted != view_.config.adjusted)
        for (const auto &a : v.config.adjusted) out_.log("WARNING: config key: " + a);
    view_ = v;
    view_ok_ = true;
    ++view_seq_;
    // The first read of a worker scheduled the next one before it knew
    // loop_wait (10 s): a restarted leader (or one in crash recovery, whose
    // primary_start_timeout counts) must not wait that long for its second loop.
    next_read_ms_ = std::min(next_read_ms_, read_started_ms_ + read_period_ms(leading_));
    dcs_last_seen_ = std::time(nullptr);
    if (view_.config_present && view_.config.ttl_ms != requested_timeout_ms_ && !leading_) {
        // A session's timeout is fixed when it is created: start a new one
        // (a leader keeps its session; the new ttl applies to its next).
        requested_timeout_ms_ = view_.config.ttl_ms;
        reset_session("ttl is " + seconds_text(view_.config.ttl_ms) +
                      " s: reconnecting to ZooKeeper with that session timeout");
        decision_due_ = false;
    }
}

std::int64_t ClusterLink::last_confirmed_send_ms() const {
    return zk_.is_open() && !zk_.expired() ? zk_.last_confirmed_send_ms() : 0;
}

int ClusterLink::negotiated_timeout_ms() const {
    return zk_.is_open() && !zk_.expired() ? zk_.negotiated_timeout_ms() : 0;
}

bool ClusterLink::owns_leader_znode() const {
    return view_.leader_owner != 0 && view_.leader_owner == zk_.session_id();
}

void ClusterLink::create(const std::string &key, const std::string &data, bool ephemeral,
                         std::function<void(int)> done) {
    store_.create(key, data, ephemeral, [this, done](int rc) {
        read_requested_ = true;
        if (done) done(rc);
    });
}

void ClusterLink::remove(const std::string &key, std::function<void(int)> done) {
    store_.remove(key, -1, [this, key, done](int rc) {
        read_requested_ = true;
        if (rc != ZOK && rc != ZNONODE) out_.log("cannot delete the " + key + " key: " + zk_error_text(rc));
        if (done) done(rc);
    });
}

void ClusterLink::set_or_create(const std::string &key, const std::string &data, std::function<void(int)> done) {
    store_.set_or_create(key, data, [this, key, done](int rc) {
        if (rc != ZOK) out_.log("cannot write the " + key + " key: " + zk_error_text(rc));
        if (done) done(rc);
    });
}

void ClusterLink::clear_failover() { remove("failover"); }

void ClusterLink::write_config(const std::string &merged, std::function<void(int, const std::string &)> done) {
    auto finish = [this, done, merged](int rc) {
        if (rc == ZOK) {
            read_requested_ = true;
            done(200, merged);
        } else if (rc == ZBADVERSION || rc == ZNODEEXISTS) {
            done(409, "the configuration changed meanwhile; read it again and retry");
        } else {
            done(503, "cannot write the configuration: " + zk_error_text(rc));
        }
    };
    if (view_.config_present) store_.set_versioned("config", merged, static_cast<int>(view_.config_version), finish);
    else store_.create("config", merged, false, finish);
}

void ClusterLink::write_sync(const SyncState &state, std::function<void(int)> done) {
    auto finish = [this, done](int rc) {
        read_requested_ = true;
        done(rc);
    };
    const std::string data = encode_sync(state);
    if (view_.sync_version >= 0) store_.set_versioned("sync", data, static_cast<int>(view_.sync_version), finish);
    else store_.create("sync", data, false, finish);
}

void ClusterLink::touch_member(const Member &m) {
    std::string json = encode_member(m);
    const Member *cur = view_.member(m.name);
    std::int64_t owner = cur ? cur->session : 0;
    const std::int64_t session = zk_.session_id();
    if (owner == 0 && session != 0 && member_written_session_ == session) owner = session;  // a stale view
    const bool written = owner == session && last_member_session_ == owner && !last_member_json_.empty();
    if (written && json == last_member_json_) return;
    const std::int64_t now = clock_();
    // Positions change all the time: published once per loop_wait with a
    // plain set, read by the leader only. Anything else is news for every
    // member, published at once (issue 14 items 2 and 4).
    const bool positions_only = written && differs_only_in_position(m, last_member_);
    if (positions_only && now - last_member_write_ms_ < view_.config.loop_wait_ms) return;
    last_member_json_ = json;
    last_member_ = m;
    last_member_write_ms_ = now;
    last_member_session_ = session;
    store_.touch_member(m.name, json, owner, !positions_only, [this, session](int rc) {
        if (rc != ZOK) {
            last_member_json_.clear();
            if (member_written_session_ == session) member_written_session_ = 0;
            out_.log("cannot publish member data: " + zk_error_text(rc));
        } else {
            member_written_session_ = session;
        }
    });
}

void ClusterLink::wait_interest(int &fd, bool &read, bool &write, long &timeout_ms) {
    const std::int64_t now = clock_();
    fd = -1;
    read = write = false;
    long timeout = 1000;
    if (zk_.is_open()) {
        ZkInterest in = zk_.interest();
        fd = in.fd;
        read = in.read;
        write = in.write;
        timeout = in.timeout_ms;
    }
    timeout = next_read_ms_ > now ? std::min<long>(timeout, static_cast<long>(next_read_ms_ - now)) : 0;
    if ((read_requested_ || noticed_) && zk_.connected() && !cache_.reading()) timeout = 0;
    // No session and none failing to open: open one now (after the first
    // read found a ttl other than the session's, the loop slept up to a
    // second here, and a restarted standby was published that much later).
    if (!zk_.is_open() && now >= retry_ms_) timeout = 0;
    timeout_ms = timeout;
}

void ClusterLink::shutdown(bool close_session, bool keep_session) {
    if (!zk_.is_open() || !close_session) return;
    if (keep_session) {
        zk_.abandon();
    } else {
        std::remove(s_.session_file().c_str());
        zk_.close();
    }
}

}  // namespace pgha
