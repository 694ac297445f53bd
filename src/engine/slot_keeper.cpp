#include "engine/slot_keeper.hpp"

#include "core/patroni_codec.hpp"

namespace pgha {

SlotKeeper::SlotKeeper(const std::string &me, ClusterLink &link, LocalServer &local, Outbox &out, Clock clock)
    : me_(me), link_(link), local_(local), out_(out), clock_(std::move(clock)) {}

void SlotKeeper::tick(bool run, bool leading, Lsn write_lsn) {
    const ClusterView &view = link_.view();
    if (!run) listed_ = false;
    if (!leading) positions_.clear();
    if (!run || !view.config.use_slots) {
        if (!leading) retain_.clear();
        if (run) keep_failover_settings(view);  // inactive without use_slots
        return;
    }
    const std::int64_t now = clock_();
    SlotInputs in;
    in.leader = leading;
    in.now_ms = now;
    in.ttl_ms = static_cast<std::int64_t>(view.config.member_slots_ttl) * 1000;
    in.my_slot = slot_name_for_member(me_);
    std::string key = leading ? "L" : "S";
    if (leading) positions_.clear();
    for (const auto &m : view.members) {
        if (m.name == me_) continue;
        const std::string slot = slot_name_for_member(m.name);
        // The leader publishes what it sees in the rows (it watches them);
        // a standby's rows may be older than the status key that publishes.
        const Lsn pos = leading ? m.position() : view.position_of(m);
        if (leading && pos != 0) positions_[slot] = pos;
        in.member_slots[slot] = pos;
        key += "," + slot;
    }
    // Seen now, even between runs: a departed member's ttl counts from its last loop.
    for (const auto &m : in.member_slots) last_seen_[m.first] = now;
    if (key == last_key_ && now - last_run_ms_ < 5000) {
        keep_failover_settings(view);
        return;
    }
    if (!local_.list_slots(in.existing)) return;
    physical_.clear();
    for (const auto &row : in.existing)
        if (row.type == "physical") physical_.insert(row.name);
    listed_ = true;
    last_key_ = key;
    last_run_ms_ = now;
    in.retain_from_status = view.status_retain_slots;
    in.ignore = view.config.ignore_slots;
    in.permanent = view.config.permanent_slots;
    const SlotPlan p = plan_slots(in, last_seen_);
    local_.create_slots(p.create);
    for (const auto &a : p.advance) local_.advance_slot(a.first, a.second);
    for (const auto &d : p.drop) local_.drop_slot(d);
    retain_ = leading ? p.retain : std::vector<std::string>{};
    if (leading && p.retain != view.status_retain_slots)
        link_.set_or_create("status", encode_status(write_lsn, p.retain, positions_));
    keep_failover_settings(view);
}

// The settings of failover logical slots, written when they change (the list
// follows the members that may be promoted). Nothing is written before this
// node's slots were listed once, so the list never names a slot that is not here.
void SlotKeeper::keep_failover_settings(const ClusterView &view) {
    FailoverSlotInputs in;
    in.server_version = local_.sample().server_version;
    in.me = me_;
    in.view = &view;
    in.physical_slots = physical_;
    in.wal_level_logical = local_.sample().wal_level_logical;
    const FailoverSlotPlan p = plan_failover_slots(in);
    if (!p.active) {
        if (owned_) out_.log("failover logical slots: settings no longer kept by pg_ha (" + p.inactive_why + ")");
        owned_ = false;
        failover_applied_.clear();
        return;
    }
    if (!listed_ || p.params == failover_applied_) return;
    const std::int64_t now = clock_();
    if (failover_tried_ms_ >= 0 && now - failover_tried_ms_ < 5000) return;
    std::string error;
    if (!local_.set_parameters(p.params, error)) {
        failover_tried_ms_ = now;
        out_.log("failover logical slots: cannot set hot_standby_feedback, sync_replication_slots and "
                 "synchronized_standby_slots: " + error);
        return;
    }
    failover_tried_ms_ = -1;
    std::string line;
    for (const auto &kv : p.params) line += (line.empty() ? "" : ", ") + kv.first + " = '" + kv.second + "'";
    out_.log("failover logical slots: " + line);
    owned_ = true;
    failover_applied_ = p.params;
}

}  // namespace pgha
