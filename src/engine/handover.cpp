#include "engine/handover.hpp"

#include <zookeeper/zookeeper.h>

namespace pgha {

Handover::Handover(std::string self, ClusterLink &link, LocalServer &local, Leadership &leadership, Outbox &out, Background &bg,
                   SqlConn &bg_sql, Clock clock)
    : self_(std::move(self)), link_(link), local_(local), leadership_(leadership), out_(out), bg_(bg), bg_sql_(bg_sql), clock_(std::move(clock)) {}

void Handover::begin(const std::string &target) {
    if (active() || out_.fence) return;
    target_ = target;
    lsn_ = 0;
    phase_ = Phase::Checkpoint;
}

void Handover::advance(const std::vector<int> &protected_pids) {
    switch (phase_) {
        case Phase::Idle:
        case Phase::Checkpointing: return;
        case Phase::Checkpoint: return checkpoint();
        case Phase::Fence: return fence(protected_pids);
        case Phase::CatchUp: return catch_up(protected_pids);
        case Phase::Released: return released();
    }
}

void Handover::checkpoint() {
    phase_ = Phase::Checkpointing;
    SqlConn *sql = &bg_sql_;
    bg_.submit([this, sql]() -> Background::Continuation {
        std::string err;
        bool ok = LocalServer::checkpoint(*sql, err);
        return [this, ok, err] {
            if (phase_ != Phase::Checkpointing) return;
            out_.fence = true;  // applied by the worker after this step: no commits, no new sessions
            phase_ = Phase::Fence;
            out_.log("switchover to " + target_ + ": " + (ok ? "checkpoint done" : "checkpoint failed (" + err + ")") +
                     ", fencing writes");
        };
    });
}

void Handover::fence(const std::vector<int> &protected_pids) {
    local_.terminate_clients(protected_pids);
    const std::int64_t now = clock_();
    phase_ = Phase::CatchUp;
    deadline_ms_ = now + 10000;
    drain_until_ms_ = now + 2000;
}

void Handover::catch_up(const std::vector<int> &protected_pids) {
    const std::int64_t now = clock_();
    // Terminated backends write their abort records on the way out: let them
    // go first (bounded), so the candidate gets those too.
    if (now < drain_until_ms_) {
        if (local_.count_clients(protected_pids) != 0) return;
        drain_until_ms_ = 0;
    }
    Lsn got = 0;
    std::string err;
    if (!local_.wal_positions(target_, lsn_, got, err)) return abort("cannot read the WAL positions: " + err);
    if (got < lsn_) out_.flush_wal = true;
    if (got >= lsn_ && lsn_ != 0) {
        out_.log("switchover: " + target_ + " has all WAL up to " + format_lsn(lsn_) + "; releasing the leader lock");
        link_.remove("leader");
        leadership_.drop();
        // Once the target holds the lock this node shuts down cleanly (Demote):
        // the walsenders end their streams only after the standbys flushed
        // the shutdown checkpoint, and the target promotes after that (see
        // kHandoverStreamWaitMs), so nothing of ours lies past its fork point.
        phase_ = Phase::Released;
        deadline_ms_ = now + 15000;
        return;
    }
    if (now > deadline_ms_)
        abort(target_ + " did not receive WAL up to " + format_lsn(lsn_) + " within 10 s (it has " + format_lsn(got) + ")");
}

void Handover::released() {
    const ClusterView &v = link_.view();
    if (v.leader && *v.leader != self_) return;  // someone took it: Demote follows from decide()
    if (clock_() > deadline_ms_) {
        out_.log("switchover: " + target_ + " did not take the leader lock within 15 s");
        phase_ = Phase::Idle;
        out_.fence = false;
        link_.clear_failover();
    }
}

void Handover::abort(const std::string &why) {
    out_.log("switchover aborted: " + why + "; this node stays the primary");
    phase_ = Phase::Idle;
    out_.fence = false;
    link_.clear_failover();
}

}  // namespace pgha
