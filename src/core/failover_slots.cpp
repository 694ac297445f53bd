#include "core/failover_slots.hpp"

#include <algorithm>

#include "core/patroni_codec.hpp"
#include "core/sync_rules.hpp"

namespace pgha {

const std::vector<std::string> &failover_slot_parameter_names() {
    static const std::vector<std::string> names{"hot_standby_feedback", "sync_replication_slots",
                                                "synchronized_standby_slots"};
    return names;
}

bool failover_slots_active(int server_version, const DynamicConfig &config, std::string *why) {
    std::string reason;
    if (server_version < 170000)
        reason = "PostgreSQL " + std::to_string(server_version / 10000) + " has no failover logical slots (17 or newer)";
    else if (!config.logical_slot_failover)
        reason = "logical_slot_failover is off in the config key";
    else if (!config.use_slots)
        reason = "use_slots is off (slot synchronization needs a physical slot on the primary)";
    if (why) *why = reason;
    return reason.empty();
}

ClusterParameters member_parameters(const DynamicConfig &config, const std::set<std::string> &local_names,
                                    bool allow_shell, int server_version, std::vector<std::string> &keep) {
    ClusterParameters cp = cluster_parameters(config.raw, local_names, allow_shell, server_version);
    keep.clear();
    const bool owned = failover_slots_active(server_version, config);
    if (owned) keep = failover_slot_parameter_names();
    for (auto it = cp.apply.begin(); it != cp.apply.end();) {
        const auto &names = failover_slot_parameter_names();
        if (!owned || std::find(names.begin(), names.end(), it->first) == names.end()) {
            keep.push_back(it->first);
            ++it;
            continue;
        }
        cp.skipped.push_back(it->first + ": set by pg_ha while failover logical slots are kept "
                                         "(logical_slot_failover), not applied");
        it = cp.apply.erase(it);
    }
    return cp;
}

FailoverSlotPlan plan_failover_slots(const FailoverSlotInputs &in) {
    FailoverSlotPlan p;
    if (!in.view) {
        p.inactive_why = "no view of the cluster";
        return p;
    }
    const ClusterView &c = *in.view;
    if (!failover_slots_active(in.server_version, c.config, &p.inactive_why)) return p;
    p.active = true;
    std::vector<std::string> slots;
    for (const auto &m : c.members) {
        if (m.name == in.me || m.state != "running" || m.role == "primary" || m.tags.nofailover) continue;
        if (!sync_ineligibility(c, m.name).empty()) continue;
        const std::string slot = slot_name_for_member(m.name);
        if (in.physical_slots.count(slot)) slots.push_back(slot);
    }
    std::sort(slots.begin(), slots.end());
    std::string list;
    for (const auto &s : slots) list += (list.empty() ? "" : ",") + s;
    p.params = {{"hot_standby_feedback", "on"}, {"sync_replication_slots", in.wal_level_logical ? "on" : "off"}, {"synchronized_standby_slots", list}};
    return p;
}

}  // namespace pgha
