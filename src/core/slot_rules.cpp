#include "core/slot_rules.hpp"

#include <algorithm>

namespace pgha {

using nlohmann::json;

bool parse_ignore_slots(const json &j, std::vector<IgnoreSlot> &out, std::string &error) {
    out.clear();
    if (j.is_null()) return true;
    if (!j.is_array()) {
        error = "ignore_slots: expected a list of {name, type, database, plugin} objects, got " + j.dump();
        return false;
    }
    for (const auto &e : j) {
        if (!e.is_object() || e.empty()) {
            error = "ignore_slots: each entry must be a non-empty object, got " + e.dump();
            return false;
        }
        IgnoreSlot s;
        for (auto it = e.begin(); it != e.end(); ++it) {
            std::string *field = it.key() == "name"       ? &s.name
                                 : it.key() == "type"     ? &s.type
                                 : it.key() == "database" ? &s.database
                                 : it.key() == "plugin"   ? &s.plugin
                                                          : nullptr;
            if (!field) {
                error = "ignore_slots: unknown field \"" + it.key() + "\" (name, type, database, plugin)";
                return false;
            }
            if (!it.value().is_string() || it.value().get<std::string>().empty()) {
                error = "ignore_slots: \"" + it.key() + "\" must be a non-empty string, got " + it.value().dump();
                return false;
            }
            *field = it.value().get<std::string>();
        }
        if (!s.type.empty() && s.type != "physical" && s.type != "logical") {
            error = "ignore_slots: type must be \"physical\" or \"logical\", got \"" + s.type + "\"";
            return false;
        }
        out.push_back(s);
    }
    return true;
}

bool slot_ignored(const SlotRow &slot, const std::vector<IgnoreSlot> &ignore) {
    for (const auto &i : ignore) {
        if (!i.name.empty() && i.name != slot.name) continue;
        if (!i.type.empty() && i.type != slot.type) continue;
        if (!i.database.empty() && i.database != slot.database) continue;
        if (!i.plugin.empty() && i.plugin != slot.plugin) continue;
        return true;
    }
    return false;
}

bool valid_slot_name(const std::string &name) {
    if (name.empty() || name.size() > 63) return false;
    for (char ch : name)
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_')) return false;
    return true;
}

bool permanent_physical_slots(const json &slots, std::set<std::string> &out, std::string &error) {
    out.clear();
    error.clear();
    if (!slots.is_object()) {
        error = "slots: expected an object {name: {type: physical|logical, ...}}, got " +
                slots.dump(-1, ' ', false, json::error_handler_t::replace);
        return false;
    }
    for (auto it = slots.begin(); it != slots.end(); ++it) {
        if (!valid_slot_name(it.key())) {  // no slot can have it: the other entries still count
            if (error.empty())
                error = "slots: " + json(it.key()).dump(-1, ' ', false, json::error_handler_t::replace) +
                        " is not a replication slot name (1 to 63 of a-z, 0-9 and _); entry ignored";
            continue;
        }
        const json &v = it.value();
        // Patroni: a value without "type" (0, null, {}) is a physical slot.
        const bool logical = v.is_object() && v.contains("type") && v["type"] == "logical";
        if (!logical) out.insert(it.key());
    }
    return error.empty();
}

SlotPlan plan_slots(const SlotInputs &in, std::map<std::string, std::int64_t> &last_seen) {
    SlotPlan p;
    const std::int64_t now = in.now_ms;
    for (const auto &m : in.member_slots) last_seen[m.first] = now;
    for (const auto &r : in.retain_from_status) last_seen.emplace(r, now);
    std::set<std::string> present;
    for (const auto &s : in.existing) {
        present.insert(s.name);
        if (s.type == "physical" && !s.temporary) last_seen.emplace(s.name, now);  // first seen unknown
    }
    const auto expired = [&](const std::string &name) {
        auto it = last_seen.find(name);
        return it != last_seen.end() && now - it->second >= in.ttl_ms && !in.member_slots.count(name);
    };
    for (auto it = last_seen.begin(); it != last_seen.end();) {
        if (!present.count(it->first) && expired(it->first)) it = last_seen.erase(it);
        else ++it;
    }
    for (const auto &s : in.existing) {
        if (s.type != "physical" || s.temporary) continue;
        auto m = in.member_slots.find(s.name);
        if (m != in.member_slots.end()) {
            if (!in.leader && s.restart_lsn != 0 && m->second > s.restart_lsn) p.advance.emplace_back(s.name, m->second);
            continue;
        }
        if (s.active || in.permanent.count(s.name) || slot_ignored(s, in.ignore)) continue;
        if (expired(s.name)) p.drop.push_back(s.name);
    }
    for (const auto &m : in.member_slots)
        if (!present.count(m.first) && m.first != in.my_slot) p.create.push_back(m.first);
    for (const auto &name : in.permanent) {
        if (in.member_slots.count(name) || name == in.my_slot || !valid_slot_name(name)) continue;
        if (!present.count(name)) {
            p.create.push_back(name);
            continue;
        }
        if (in.leader) continue;  // the consumer moves it on the leader
        for (const auto &s : in.existing)
            if (s.name == name && s.type == "physical" && !s.temporary && !s.active && s.restart_lsn != 0)
                p.advance.emplace_back(name, ~Lsn{0});  // the server caps it at replay
    }
    if (in.leader) {
        for (const auto &kv : last_seen)
            if (!expired(kv.first) && std::find(p.drop.begin(), p.drop.end(), kv.first) == p.drop.end())
                p.retain.push_back(kv.first);
    }
    return p;
}

}  // namespace pgha
