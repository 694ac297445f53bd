#include "engine/sync_keeper.hpp"

#include <zookeeper/zookeeper.h>

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
        return;
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
    in.ssn_managed = parse_synchronous_standby_names(ssn, num, listed, any) && !any &&
                     format_synchronous_standby_names(listed) == ssn;
    in.grace_ms = static_cast<std::int64_t>(view.config.loop_wait) * 1000;
    // How long each listed standby has been unhealthy.
    std::map<std::string, std::int64_t> since;
    for (const auto &n : listed) {
        if (sync_candidate_problem(in, n).empty()) continue;
        auto it = unhealthy_since_.find(n);
        since[n] = it == unhealthy_since_.end() ? now : it->second;
        in.unhealthy_ms[n] = now - since[n];
    }
    unhealthy_since_ = since;

    const SyncPlan p = plan_sync(in);
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
