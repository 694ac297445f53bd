#include "core/ha_state_machine.hpp"

#include <algorithm>

#include "core/patroni_codec.hpp"
#include "core/sync_rules.hpp"

namespace pgha {

const char *to_string(LocalRole r) {
    switch (r) {
        case LocalRole::Primary: return "primary";
        case LocalRole::Standby: return "standby";
        case LocalRole::Recovering: return "recovering";
        case LocalRole::Stopped: return "stopped";
    }
    return "unknown";
}

const char *to_string(PublishedRole r) {
    switch (r) {
        case PublishedRole::Primary: return "primary";
        case PublishedRole::Replica: return "replica";
        case PublishedRole::Uninitialized: return "uninitialized";
    }
    return "uninitialized";
}

const char *to_string(ActionKind k) {
    switch (k) {
        case ActionKind::WriteInitialize: return "write_initialize";
        case ActionKind::WriteDefaultConfig: return "write_default_config";
        case ActionKind::AcquireLeader: return "acquire_leader";
        case ActionKind::DeleteStaleLeader: return "delete_stale_leader";
        case ActionKind::RepairLeader: return "repair_leader";
        case ActionKind::Promote: return "promote";
        case ActionKind::RecordPromotion: return "record_promotion";
        case ActionKind::Demote: return "demote";
        case ActionKind::Follow: return "follow";
        case ActionKind::WriteStatus: return "write_status";
        case ActionKind::EnsureSlots: return "ensure_slots";
        case ActionKind::Handover: return "handover";
        case ActionKind::ClearFailover: return "clear_failover";
        case ActionKind::WriteFailsafe: return "write_failsafe";
        case ActionKind::DeleteFailsafe: return "delete_failsafe";
        case ActionKind::ReleaseLeader: return "release_leader";
    }
    return "unknown";
}

bool Decision::has(ActionKind k) const { return find(k) != nullptr; }

const Action *Decision::find(ActionKind k) const {
    for (const auto &a : actions)
        if (a.kind == k) return &a;
    return nullptr;
}

namespace {

Action act(ActionKind k) { return Action{k, {}, {}, 0}; }

// The newest timeline the cluster has promoted to, according to `history`
// (an entry for timeline N means N + 1 exists). 64 bits: N may be INT_MAX.
std::int64_t newest_history_timeline(const ClusterView &c) {
    std::int64_t tl = 0;
    for (const auto &e : c.history) tl = std::max(tl, static_cast<std::int64_t>(e.timeline) + 1);
    return tl;
}

// Position of a peer for the failover race: what its API said this loop
// when peers were checked (unreachable peers drop out), else its znode (or
// the newer position the leader published in the status key).
std::optional<Lsn> peer_position(const Observation &obs, const Member &m) {
    if (obs.peers_checked) {
        auto it = obs.peer_positions.find(m.name);
        if (it == obs.peer_positions.end()) return std::nullopt;
        return it->second;
    }
    return obs.cluster.position_of(m);
}

std::string mb(Lsn bytes) { return std::to_string(bytes) + " bytes"; }

// The `failover` key names another member that can take the free lock: leave
// it to that member. (A candidate that is gone or tagged nofailover cannot.)
bool lock_promised_to_other(const ClusterView &c, const std::string &me) {
    if (!c.failover || c.failover->candidate.empty() || c.failover->candidate == me) return false;
    const Member *cand = c.member(c.failover->candidate);
    return cand && cand->state == "running" && !cand->tags.nofailover;
}

// Transitions when we hold the leader znode on our own session.
void decide_as_leader(const Observation &obs, Decision &d) {
    const auto &cfg = obs.cluster.config;
    d.is_leader = true;
    switch (obs.role) {
        case LocalRole::Primary:
            // Steady state: renew (the cluster read itself renews the lease),
            // publish our position, keep slots for the members.
            d.role = PublishedRole::Primary;
            d.message = "no action: I am (" + obs.me + ") the leader with the lock";
            if (obs.local.write_lsn != obs.cluster.status_optime && (obs.status_due || !obs.cluster.status_optime)) {
                Action a = act(ActionKind::WriteStatus);
                a.lsn = obs.local.write_lsn;
                d.actions.push_back(a);
            }
            if (obs.cluster.history.empty() ||
                newest_history_timeline(obs.cluster) < obs.local.timeline) {
                // We run on a timeline `history` does not know yet: we were promoted.
                if (obs.local.timeline > 1) d.actions.push_back(act(ActionKind::RecordPromotion));
            }
            if (cfg.failsafe_mode) {
                if (!obs.cluster.failsafe || !obs.cluster.failsafe_valid ||
                    *obs.cluster.failsafe != failsafe_members(obs.cluster))
                    d.actions.push_back(act(ActionKind::WriteFailsafe));
            } else if (obs.cluster.failsafe) {
                d.actions.push_back(act(ActionKind::DeleteFailsafe));
            }
            if (obs.cluster.failover) {
                const FailoverRequest &f = *obs.cluster.failover;
                std::string target = f.candidate;
                if (target == obs.me) {
                    d.message = "switchover to " + obs.me + " done";
                    d.actions.push_back(act(ActionKind::ClearFailover));
                } else if (!f.leader.empty() && f.leader != obs.me) {
                    d.message = "ignoring the failover key: it names " + f.leader + " as the leader, not " + obs.me;
                    d.failover_refused = true;
                    d.actions.push_back(act(ActionKind::ClearFailover));
                } else if (!obs.failover_due) {
                    d.message = "switchover scheduled at " + f.scheduled_at;
                } else {
                    const std::string why = choose_switchover_target(obs.cluster, obs.me, f.candidate, target);
                    if (!why.empty()) {
                        d.message = "switchover not possible: " + why;
                        d.failover_refused = true;
                        d.actions.push_back(act(ActionKind::ClearFailover));
                    } else {
                        d.message = "switchover: handing the leader lock over to " + target;
                        Action a = act(ActionKind::Handover);
                        a.target = target;
                        d.actions.push_back(a);
                        return;
                    }
                }
            }
            if (cfg.use_slots) {  // (also with no other member: slots of departed ones expire)
                Action a = act(ActionKind::EnsureSlots);
                for (const auto &m : obs.cluster.members)
                    if (m.name != obs.me) a.names.push_back(slot_name_for_member(m.name));
                d.actions.push_back(a);
            }
            return;
        case LocalRole::Standby:
            d.role = PublishedRole::Replica;
            if (cfg.pause && !(obs.cluster.failover && obs.cluster.failover->candidate == obs.me)) {
                // (an operator's switchover/failover to us promotes even while paused)
                d.message = "paused: holding the leader lock as a standby, not promoting";
                return;
            }
            if (const FailoverRequest *f = obs.cluster.failover ? &*obs.cluster.failover : nullptr;
                f && !f->leader.empty() && f->leader != obs.me && obs.streaming &&
                obs.leader_for_ms < kHandoverStreamWaitMs) {
                // Handed the lock by a switchover: let the old leader's clean
                // shutdown end our stream first (bounded), see kHandoverStreamWaitMs.
                d.message = "holding the leader lock: waiting for " + f->leader +
                            "'s stream to end with its shutdown checkpoint before promoting";
                d.recheck_soon = true;
                return;
            }
            // We won the race (or were handed the lock): promote in place now.
            d.message = "promoting: I (" + obs.me + ") hold the leader lock";
            d.actions.push_back(act(ActionKind::Promote));
            return;
        case LocalRole::Recovering: {
            d.role = PublishedRole::Primary;
            // primary_start_timeout: a crashed primary recovering for longer
            // gives the lock up when someone can take over (Patroni's "failed
            // to start primary within ... Releasing the leader lock"). It is
            // not writable yet; once it is, it holds no lock and no lease.
            const std::string target =
                crash_failover_target(obs.cluster, obs.me, true, obs.recovering_s, obs.start_timeout_s);
            if (!target.empty()) {
                d.is_leader = false;
                d.message = "crash recovery has taken " + std::to_string(obs.recovering_s) + " s, " +
                            (obs.start_timeout_s ? "the restart's timeout is " + std::to_string(*obs.start_timeout_s)
                                                 : "primary_start_timeout is " + std::to_string(cfg.master_start_timeout)) +
                            " s: releasing the leader lock (" + target + " can take over)";
                d.actions.push_back(act(ActionKind::ReleaseLeader));
                return;
            }
            d.message = "crash recovery in progress, keeping the leader lock";
            return;
        }
        case LocalRole::Stopped:
            d.role = PublishedRole::Uninitialized;
            d.message = "PostgreSQL is not running, holding the leader lock";
            return;
    }
}

// Transitions when another member holds the leader znode.
void decide_with_other_leader(const Observation &obs, Decision &d) {
    const auto &c = obs.cluster;
    const std::string &leader = *c.leader;
    switch (obs.role) {
        case LocalRole::Primary:
        case LocalRole::Recovering:
            d.role = PublishedRole::Primary;
            // Paused, a primary is not demoted, except the one that handed the
            // lock over in an operator's switchover (the `failover` key names
            // it as the leader and the holder as the candidate): it stops
            // cleanly as in an unpaused switchover, and the new leader, which
            // waits for the end of its stream, promotes.
            if (c.config.pause &&
                !(c.failover && c.failover->leader == obs.me && c.failover->candidate == leader)) {
                d.message = "paused: " + leader + " holds the leader lock but this node runs as primary; not demoting";
                return;
            }
            // Two primaries must never both accept writes: fence and restart as a standby.
            d.message = "demoting: " + leader + " holds the leader lock";
            {
                Action a = act(ActionKind::Demote);
                a.target = leader;
                d.actions.push_back(a);
            }
            return;
        case LocalRole::Standby: {
            d.role = PublishedRole::Replica;
            const Member *lm = c.leader_member();
            if (!lm) {
                d.message = "following " + leader + " (its member data is not published yet)";
                return;
            }
            std::string host;
            int port = 0;
            if (!parse_conn_url(lm->conn_url, host, port)) {
                d.message = "cannot follow " + leader + ": unparsable conn_url '" + lm->conn_url + "'";
                return;
            }
            d.retry_stream = !obs.streaming && obs.not_streaming_s < kStreamRetryWindowS && lm->state == "running" &&
                             lm->role == "primary";
            if (obs.local.upstream_host != host || obs.local.upstream_port != port) {
                if (c.config.pause) {
                    d.message = "paused: not re-pointing replication to " + leader;
                    return;
                }
                Action a = act(ActionKind::Follow);
                a.target = leader;
                d.actions.push_back(a);
                d.message = "following new leader " + leader;
                return;
            }
            if (lm->timeline > obs.local.timeline && obs.local.timeline > 0 && !c.config.pause &&
                obs.not_streaming_s >= std::max(30, 3 * c.config.loop_wait_ms / 1000)) {
                // Typically "new timeline forked off before current recovery
                // point": only pg_rewind (in pg_hactl boot) gets us back.
                d.message = "cannot follow " + leader + ": not streaming for " + std::to_string(obs.not_streaming_s) +
                            " s and still on timeline " + std::to_string(obs.local.timeline) + " (the leader is on " +
                            std::to_string(lm->timeline) + "); restarting through pg_hactl boot to rewind";
                // Named: a clean (fast) stop, which pg_rewind accepts as it
                // is ("shut down in recovery"); the immediate one is for a
                // primary cut off from ZooKeeper.
                Action a = act(ActionKind::Demote);
                a.target = leader;
                d.actions.push_back(a);
                return;
            }
            d.message = "no action: I am (" + obs.me + ") a secondary and I am following a leader (" + leader + ")";
            return;
        }
        case LocalRole::Stopped:
            d.role = PublishedRole::Uninitialized;
            d.message = "PostgreSQL is not running; " + leader + " is the leader";
            return;
    }
}

// Transitions when nobody holds the leader znode.
void decide_without_leader(const Observation &obs, Decision &d) {
    const auto &c = obs.cluster;
    switch (obs.role) {
        case LocalRole::Primary: {
            d.role = PublishedRole::Primary;
            if (lock_promised_to_other(c, obs.me)) {
                d.message = "switchover to " + c.failover->candidate + " in progress: not taking the leader lock";
                return;
            }
            if (c.config.pause) {
                // Like Patroni: a running primary may take a free lock even while paused.
                d.message = "paused: acquiring the free leader lock as the running primary";
                d.actions.push_back(act(ActionKind::AcquireLeader));
                return;
            }
            if (!obs.cannot_lead.empty()) {
                d.message = "not taking the leader lock: " + obs.cannot_lead;
                return;
            }
            const std::int64_t newest = newest_history_timeline(c);
            if (newest > obs.local.timeline) {
                d.message = "not taking the leader lock: the cluster has promoted timeline " + std::to_string(newest) +
                            " and this node is on timeline " + std::to_string(obs.local.timeline);
                return;
            }
            d.message = "acquiring the free leader lock as the running primary";
            d.actions.push_back(act(ActionKind::AcquireLeader));
            return;
        }
        case LocalRole::Standby: {
            d.role = PublishedRole::Replica;
            if (c.failover && !c.failover->candidate.empty()) {
                if (c.failover->candidate == obs.me) {
                    // Named by a switchover or a manual failover: the old leader
                    // made sure we have its WAL (or the operator chose us).
                    if (obs.tags.nofailover) {
                        d.message = "named as failover candidate but tagged nofailover: not taking over";
                    } else if (!obs.running) {
                        d.message = "named as failover candidate but not running yet";
                    } else if (!obs.cannot_lead.empty()) {
                        d.message = "named as failover candidate but " + obs.cannot_lead;
                    } else if (const std::string why = sync_ineligibility(c, obs.me); !why.empty()) {
                        d.message = "named as failover candidate but " + why;
                    } else {
                        d.message = "taking the leader lock as the chosen candidate";
                        d.actions.push_back(act(ActionKind::AcquireLeader));
                    }
                    return;
                }
                if (lock_promised_to_other(c, obs.me)) {
                    d.message = "failover to " + c.failover->candidate + " in progress: not racing";
                    return;
                }
            }
            if (c.config.pause) {
                d.message = "paused: no leader, not taking over";
                return;
            }
            Member me;
            me.name = obs.me;
            me.tags = obs.tags;
            std::string why = failover_ineligibility(obs, me);
            if (why.empty() && !obs.cannot_lead.empty()) why = obs.cannot_lead;
            if (!why.empty()) {
                d.message = "not taking over: " + why;
                return;
            }
            d.message = "the leader lock is free and I am the healthiest member: acquiring it";
            d.actions.push_back(act(ActionKind::AcquireLeader));
            return;
        }
        case LocalRole::Recovering:
            d.role = PublishedRole::Primary;
            d.message = "crash recovery in progress; no leader";
            return;
        case LocalRole::Stopped:
            d.role = PublishedRole::Uninitialized;
            d.message = "PostgreSQL is not running; no leader";
            return;
    }
}

}  // namespace

std::map<std::string, std::string> failsafe_members(const ClusterView &view) {
    std::map<std::string, std::string> out;
    for (const auto &m : view.members)
        if (!m.api_url.empty()) out[m.name] = m.api_url;
    return out;
}

std::string failover_ineligibility(const Observation &obs, const Member &candidate) {
    const auto &c = obs.cluster;
    const bool is_me = candidate.name == obs.me;
    const Tags &tags = is_me ? obs.tags : candidate.tags;
    if (tags.nofailover) return candidate.name + " is tagged nofailover";
    // failsafe_mode (review F3): a leader that lost ZooKeeper may still run on
    // the promises of the members the `failsafe` key lists; a member it did
    // not list never promised anything, so it may not take over.
    if (c.config.failsafe_mode && c.failsafe) {
        if (!c.failsafe_valid)
            return "the failsafe key cannot be read (see the warnings); with failsafe_mode on nobody takes over "
                   "until it is fixed or removed";
        if (!c.failsafe->count(candidate.name))
            return candidate.name + " is not in the failsafe key's member list (failsafe_mode: the last leader "
                   "may still run on the promises of the members it listed)";
    }
    if (std::string why = sync_ineligibility(c, candidate.name); !why.empty()) return why;
    Lsn pos;
    if (is_me) {
        if (obs.role != LocalRole::Standby || !obs.running) return candidate.name + " is not a running standby";
        pos = obs.local.position();
    } else {
        if (candidate.state != "running") return candidate.name + " is not running (state " + candidate.state + ")";
        auto p = peer_position(obs, candidate);
        if (!p) return candidate.name + " did not answer on its REST API";
        pos = *p;
    }
    if (c.status_optime > pos && c.status_optime - pos > static_cast<Lsn>(c.config.maximum_lag_on_failover))
        return candidate.name + " lags " + mb(c.status_optime - pos) + " behind the last leader position, more than maximum_lag_on_failover (" +
               mb(static_cast<Lsn>(c.config.maximum_lag_on_failover)) + ")";
    if (is_me && obs.peers_checked)
        for (const auto &p : obs.primaries_alive)
            if (p != obs.me) return "member " + p + " still runs as a primary";
    // Quorum commit: enough voters not ahead of us to prove we hold every
    // acknowledged commit (checked on the answers of the peers' APIs only).
    if (is_me && obs.peers_checked)
        if (std::string why = quorum_vote_problem(c, candidate.name, pos, obs.vote_positions); !why.empty())
            return why;
    const std::int64_t newest = newest_history_timeline(c);
    if (is_me && obs.local.timeline > 0 && newest > 0 && obs.local.timeline < newest - 1)
        return candidate.name + " is on timeline " + std::to_string(obs.local.timeline) +
               ", older than the cluster's timeline " + std::to_string(newest);
    // Someone healthier? Only members that could win count.
    for (const auto &m : c.members) {
        if (m.name == candidate.name || m.tags.nofailover || m.state != "running" || m.role == "primary") continue;
        // With synchronous mode an asynchronous member that received more WAL
        // cannot win, so it does not hold the race up.
        if (!sync_ineligibility(c, m.name).empty()) continue;
        if (m.name == obs.me && !is_me) continue;
        auto p = m.name == obs.me ? std::optional<Lsn>(obs.local.position()) : peer_position(obs, m);
        if (!p) continue;
        if (*p > pos) return "member " + m.name + " is ahead (" + format_lsn(*p) + " > " + format_lsn(pos) + ")";
        if (*p == pos && m.name < candidate.name)
            return "member " + m.name + " is equally advanced (" + format_lsn(pos) + ") and wins the tie by name";
    }
    return "";
}

Decision decide(const Observation &obs) {
    Decision d;
    d.role = obs.role == LocalRole::Standby   ? PublishedRole::Replica
             : obs.role == LocalRole::Stopped ? PublishedRole::Uninitialized
                                              : PublishedRole::Primary;
    if (!obs.dcs_ok) {
        if (obs.role == LocalRole::Primary && obs.was_leader && !obs.lease_valid && !obs.cluster.config.pause &&
            obs.lease_grace) {
            d.message = "the leader lease ran out: commits are refused until ZooKeeper confirms the lock (after "
                        "retry_timeout without an answer this node fences and shuts down)";
            return d;
        }
        if (obs.role == LocalRole::Primary && obs.was_leader && !obs.lease_valid && !obs.cluster.config.pause) {
            // Another member may take over from now on: stop writing, shut down,
            // come back through pg_hactl boot as a standby of whoever leads.
            d.message = "the leader lease ran out and ZooKeeper cannot confirm the lock: fencing and shutting down";
            d.actions.push_back(act(ActionKind::Demote));
            return d;
        }
        d.message = obs.role == LocalRole::Primary
                        ? (obs.lease_valid ? "ZooKeeper is unreachable; writes continue until the leader lease runs out"
                                           : "ZooKeeper is unreachable and there is no valid leader lease: writes are refused")
                        : "ZooKeeper is unreachable; waiting";
        return d;
    }
    const ClusterView &c = obs.cluster;
    const bool primary_like = obs.role == LocalRole::Primary;

    // A cluster that was initialized elsewhere is not ours to lead.
    if (c.initialize && !c.initialize->empty() && !obs.local.system_identifier.empty() &&
        *c.initialize != obs.local.system_identifier) {
        d.message = "this data directory (system identifier " + obs.local.system_identifier +
                    ") does not belong to the cluster (system identifier " + *c.initialize + "); taking no action";
        return d;
    }
    if (!obs.name_conflict.empty()) {
        d.message = obs.name_conflict;
        return d;
    }
    if (!c.initialize && primary_like && obs.running && !obs.local.system_identifier.empty())
        d.actions.push_back(act(ActionKind::WriteInitialize));

    // "I lead" means the leader znode is owned by our session (only its
    // expiry or our own delete can free it), whatever its content says;
    // content someone rewrote is repaired, not obeyed.
    const bool owned = c.leader_owner != 0 && c.leader_owner == obs.session_id;
    if (owned && (!c.leader || *c.leader != obs.me)) {
        Observation o = obs;
        o.cluster.leader = obs.me;
        Decision repaired = decide(o);
        repaired.actions.insert(repaired.actions.begin(), act(ActionKind::RepairLeader));
        return repaired;
    }
    const bool leader_is_me = c.leader && *c.leader == obs.me;
    if (leader_is_me && c.leader_owner != obs.session_id) {
        // Left over from an earlier session of ours (crash-restart that could
        // not resume the session). That process is gone, so the lock is stale.
        d.message = "removing the leader lock left by an earlier session of this member";
        d.actions.push_back(act(ActionKind::DeleteStaleLeader));
        return d;
    }
    if (leader_is_me) {
        decide_as_leader(obs, d);
        if (!c.config_present) d.actions.insert(d.actions.begin(), act(ActionKind::WriteDefaultConfig));
    } else if (c.leader) {
        decide_with_other_leader(obs, d);
    } else if (obs.failsafe_leader && obs.failsafe_leader->name != obs.me) {
        // The leader lost ZooKeeper but proved over its API that it still runs
        // (failsafe_mode): follow it as if it held the lock.
        Observation o = obs;
        o.cluster.leader = obs.failsafe_leader->name;
        if (!o.cluster.member(obs.failsafe_leader->name)) o.cluster.members.push_back(*obs.failsafe_leader);
        decide_with_other_leader(o, d);
        d.message = "failsafe mode: " + d.message;
    } else {
        decide_without_leader(obs, d);
    }
    return d;
}

}  // namespace pgha
