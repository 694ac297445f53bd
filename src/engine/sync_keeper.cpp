#include "engine/sync_keeper.hpp"

#include <zookeeper/zookeeper.h>

#include <algorithm>

#include "core/patroni_codec.hpp"

namespace pgha {

SyncKeeper::SyncKeeper(const std::string &me, ClusterLink &link, LocalServer &local, Outbox &out, Clock clock)
    : me_(me), link_(link), local_(local), out_(out), clock_(std::move(clock)) {}

void SyncKeeper::tick(bool leading, const LocalState &ls) {
    const ClusterView &view = link_.view();
    if (!leading || view.config.pause) {
        // Pause keeps whatever is configured; a standby has nothing to keep.
        waiting_.clear();
        unhealthy_since_.clear();
        healthy_since_.clear();
        was_leading_ = false;
        return;
    }
    if (!was_leading_) {
        // What was in force before is unknown: keys only get stronger until
        // the current synchronous_standby_names is confirmed.
        quorum_ = QuorumProgress{};
        quorum_.frozen = QuorumKey{view.sync.leader == me_ ? view.sync.sync_standby : std::vector<std::string>{},
                                   view.sync.quorum};
        std::sort(quorum_.frozen.voters.begin(), quorum_.frozen.voters.end());
        confirm_at_ms_ = clock_() + 1000;
        was_leading_ = true;
    }
    const std::int64_t now = clock_();
    // The next view shows a write's result (a lost answer is given up after 10 s).
    if (write_pending_ms_ != 0 && now - write_pending_ms_ < 10000) return;
    write_pending_ms_ = 0;
    std::string ssn;
    if (!local_.current_setting("synchronous_standby_names", ssn)) return;

    SyncInput in;
    in.me = me_;
    in.config = view.config;
    in.members = view.members;
    in.walsenders = ls.replication;
    in.primary_lsn = ls.write_lsn;
    in.key = view.sync;
    in.ssn = ssn;
    int num = 0;
    bool any = false;
    std::vector<std::string> listed;
    const bool parsed = parse_synchronous_standby_names(ssn, num, listed, any);
    in.ssn_managed = parsed && (format_synchronous_standby_names(listed) == ssn ||
                                format_quorum_ssn(quorum_ssn_of(ssn)) == ssn);
    if (confirm_at_ms_ != 0 && now >= confirm_at_ms_ && ls.write_lsn != 0) {
        // Every walsender has reloaded by now: commits past this point follow
        // the current synchronous_standby_names.
        quorum_.confirm_lsn = ls.write_lsn;
        confirm_at_ms_ = 0;
    }
    in.quorum = quorum_;
    in.grace_ms = view.config.loop_wait_ms;
    // How long each listed standby (quorum: and voter) has been unhealthy.
    std::map<std::string, std::int64_t> since;
    std::vector<std::string> watched = listed;
    if (view.sync.leader == me_) watched.insert(watched.end(), view.sync.sync_standby.begin(), view.sync.sync_standby.end());
    for (const auto &n : watched) {
        if (sync_candidate_problem(in, n).empty()) continue;
        auto it = unhealthy_since_.find(n);
        since[n] = it == unhealthy_since_.end() ? now : it->second;
        in.unhealthy_ms[n] = now - since[n];
    }
    unhealthy_since_ = since;
    std::map<std::string, std::int64_t> healthy;
    for (const auto &m : view.members) {
        if (m.name == me_ || !sync_candidate_problem(in, m.name).empty()) continue;
        auto it = healthy_since_.find(m.name);
        healthy[m.name] = it == healthy_since_.end() ? now : it->second;
        in.healthy_ms[m.name] = now - healthy[m.name];
    }
    healthy_since_ = healthy;

    const SyncPlan p = plan_sync(in);
    quorum_progress_after(quorum_, in, p);
    if (p.step == SyncStep::SetSsn) confirm_at_ms_ = now + 1000;
    waiting_ = p.strict_waiting ? p.message : "";
    const bool repeat = !p.message.empty() && (p.strict_waiting || p.degrade_pending) && now - last_log_ms_ >= 5000;
    if (!p.message.empty() && (p.message != last_message_ || repeat)) {
        out_.log(p.message);
        last_log_ms_ = now;
    }
    last_message_ = p.message;
    switch (p.step) {
        case SyncStep::None:
            break;
        case SyncStep::WriteKey:
            write_pending_ms_ = now;
            link_.write_sync(p.key, [this](int rc) {
                write_pending_ms_ = 0;
                if (rc != ZOK) out_.log("cannot write the sync key: " + zk_error_text(rc));
            });
            break;
        case SyncStep::SetSsn: {
            std::string error;
            if (!local_.set_parameters({{"synchronous_standby_names", p.ssn}}, error))
                out_.log("cannot set synchronous_standby_names: " + error);
            else
                link_.request_read();  // look again soon: the next step waits for this one
            break;
        }
    }
}

}  // namespace pgha
