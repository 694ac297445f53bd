#include "core/dynamic_config.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "core/node_settings.hpp"
#include "core/patroni_parameters.hpp"

namespace pgha {

using nlohmann::json;

namespace {

// Reads an integer setting; Patroni accepts numbers and numeric strings.
bool read_int(const json &j, const char *key, std::int64_t lo, std::int64_t hi, std::int64_t &out,
              std::vector<std::string> &errors) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return false;
    const auto out_of_range = [&] {
        errors.push_back(std::string(key) + ": " + it->dump() + " is out of range [" + std::to_string(lo) + ", " +
                         std::to_string(hi) + "]");
        return false;
    };
    std::int64_t v;
    if (it->is_number_unsigned()) {
        // Checked before the cast: a uint64 above INT64_MAX would wrap.
        const std::uint64_t u = it->get<std::uint64_t>();
        if (u > static_cast<std::uint64_t>(hi)) return out_of_range();
        v = static_cast<std::int64_t>(u);
    } else if (it->is_number_integer()) {
        v = it->get<std::int64_t>();
    } else if (it->is_number_float()) {
        // Range-checked before the cast (1e300 or NaN would be undefined
        // behaviour); a fraction is not an integer.
        const double d = it->get<double>();
        if (!std::isfinite(d) || std::floor(d) != d) {
            errors.push_back(std::string(key) + ": expected an integer, got " + it->dump());
            return false;
        }
        if (d < static_cast<double>(lo) || d > static_cast<double>(hi) || d >= 9223372036854775808.0)
            return out_of_range();
        v = static_cast<std::int64_t>(d);
    } else if (it->is_string()) {
        try {
            std::size_t pos = 0;
            const std::string s = it->get<std::string>();
            v = std::stoll(s, &pos);
            if (pos != s.size()) throw std::invalid_argument(s);
        } catch (const std::out_of_range &) {
            return out_of_range();
        } catch (const std::exception &) {
            errors.push_back(std::string(key) + ": expected an integer, got " + it->dump());
            return false;
        }
    } else {
        errors.push_back(std::string(key) + ": expected an integer, got " + it->dump());
        return false;
    }
    if (v < lo || v > hi) return out_of_range();
    out = v;
    return true;
}

bool read_bool(const json &j, const char *key, bool &out, std::vector<std::string> &errors) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return false;
    if (it->is_boolean()) {
        out = it->get<bool>();
        return true;
    }
    if (it->is_string()) {
        const std::string s = it->get<std::string>();
        if (s == "on" || s == "true" || s == "yes" || s == "1") { out = true; return true; }
        if (s == "off" || s == "false" || s == "no" || s == "0") { out = false; return true; }
    }
    errors.push_back(std::string(key) + ": expected a boolean, got " + it->dump());
    return false;
}

// ttl, loop_wait, retry_timeout: Patroni raises a value below its minimum to
// the minimum with a warning instead of refusing it.
void read_timing(const json &j, const char *key, int min, int &out, std::vector<std::string> &errors,
                 std::vector<std::string> &adjusted) {
    std::int64_t v = 0;
    if (!read_int(j, key, INT32_MIN, 3600, v, errors)) return;
    if (v < min) {
        adjusted.push_back(std::string(key) + "=" + std::to_string(v) + " can't be smaller than " +
                           std::to_string(min) + ", adjusting");
        v = min;
    }
    out = static_cast<int>(v);
}

}  // namespace

json DynamicConfig::to_json() const {
    json j = raw.is_object() ? raw : json::object();
    j["ttl"] = ttl;
    j["loop_wait"] = loop_wait;
    j["retry_timeout"] = retry_timeout;
    j["maximum_lag_on_failover"] = maximum_lag_on_failover;
    j["master_start_timeout"] = master_start_timeout;
    j["synchronous_mode"] = synchronous_mode_quorum ? json("quorum") : json(synchronous_mode);
    j["synchronous_mode_strict"] = synchronous_mode_strict;
    j["synchronous_node_count"] = synchronous_node_count;
    j["maximum_lag_on_syncnode"] = maximum_lag_on_syncnode;
    j["failsafe_mode"] = failsafe_mode;
    j["use_pg_rewind"] = use_pg_rewind;
    j["use_slots"] = use_slots;
    j["logical_slot_failover"] = logical_slot_failover;
    j["remove_data_directory_on_rewind_failure"] = remove_data_directory_on_rewind_failure;
    if (pause) j["pause"] = true; else j.erase("pause");
    return j;
}

DynamicConfig DynamicConfig::from_json(const json &j, std::vector<std::string> &errors) {
    DynamicConfig c;
    if (!j.is_object()) {
        errors.push_back("config must be a JSON object, got " + std::string(j.type_name()));
        return c;
    }
    c.raw = j;
    std::int64_t v;
    read_timing(j, "loop_wait", 1, c.loop_wait, errors, c.adjusted);
    read_timing(j, "retry_timeout", 1, c.retry_timeout, errors, c.adjusted);
    read_timing(j, "ttl", kMinTtl, c.ttl, errors, c.adjusted);
    c.adjust_timeouts();
    if (read_int(j, "maximum_lag_on_failover", 0, INT64_MAX, v, errors)) c.maximum_lag_on_failover = v;
    if (read_int(j, "master_start_timeout", 0, 86400, v, errors)) c.master_start_timeout = static_cast<int>(v);
    if (read_int(j, "primary_start_timeout", 0, 86400, v, errors)) c.master_start_timeout = static_cast<int>(v);
    if (read_int(j, "master_stop_timeout", 0, 86400, v, errors)) c.primary_stop_timeout = static_cast<int>(v);
    if (read_int(j, "primary_stop_timeout", 0, 86400, v, errors)) c.primary_stop_timeout = static_cast<int>(v);
    if (auto sm = j.find("synchronous_mode"); sm != j.end() && sm->is_string() && sm->get<std::string>() == "quorum") {
        c.synchronous_mode = true;
        c.synchronous_mode_quorum = true;
    } else {
        read_bool(j, "synchronous_mode", c.synchronous_mode, errors);
    }
    if (read_int(j, "synchronous_node_count", 1, 1024, v, errors)) c.synchronous_node_count = static_cast<int>(v);
    if (read_int(j, "maximum_lag_on_syncnode", -1, INT64_MAX, v, errors)) c.maximum_lag_on_syncnode = v;
    read_bool(j, "synchronous_mode_strict", c.synchronous_mode_strict, errors);
    read_bool(j, "pause", c.pause, errors);
    read_bool(j, "failsafe_mode", c.failsafe_mode, errors);
    read_bool(j, "remove_data_directory_on_rewind_failure", c.remove_data_directory_on_rewind_failure, errors);
    read_bool(j, "logical_slot_failover", c.logical_slot_failover, errors);
    if (auto t = j.find("member_slots_ttl"); t != j.end() && !t->is_null()) {
        int secs = 0;
        std::string why;
        if (t->is_string()) {
            if (!parse_pg_seconds(t->get<std::string>(), secs, why) || secs < 0)
                errors.push_back("member_slots_ttl: " + t->dump() + " is not a duration of 0 or more (" +
                                 (why.empty() ? "negative" : why) + "); e.g. 1800 or \"30min\"");
            else
                c.member_slots_ttl = secs;
        } else if (read_int(j, "member_slots_ttl", 0, 365 * 86400, v, errors)) {
            c.member_slots_ttl = static_cast<int>(v);
        }
    }
    if (auto is = j.find("ignore_slots"); is != j.end()) {
        std::string why;
        if (!parse_ignore_slots(*is, c.ignore_slots, why)) errors.push_back(why);
    }
    if (auto sl = j.find("slots"); sl != j.end() && !sl->is_null()) {
        std::string why;
        if (!permanent_physical_slots(*sl, c.permanent_slots, why)) errors.push_back(why);
    }
    // Patroni keeps these under postgresql: {use_pg_rewind, use_slots}; accept both places.
    read_bool(j, "use_pg_rewind", c.use_pg_rewind, errors);
    read_bool(j, "use_slots", c.use_slots, errors);
    if (auto pg = j.find("postgresql"); pg != j.end() && pg->is_object()) {
        read_bool(*pg, "use_pg_rewind", c.use_pg_rewind, errors);
        read_bool(*pg, "use_slots", c.use_slots, errors);
        read_bool(*pg, "remove_data_directory_on_rewind_failure", c.remove_data_directory_on_rewind_failure,
                  errors);
        if (auto hba = pg->find("pg_hba"); hba != pg->end() && !hba->is_null()) {
            std::vector<std::string> lines;
            std::string why;
            if (!parse_pg_hba_lines(*hba, lines, why)) errors.push_back(why);
        }
    }
    return c;
}

// Patroni's rule loop_wait + 2*retry_timeout <= ttl: loop_wait is lowered
// first, retry_timeout only when loop_wait is already at its minimum (1).
void DynamicConfig::adjust_timeouts() {
    if (loop_wait + 2 * retry_timeout <= ttl) return;
    const std::string rule = "Violated the rule \"loop_wait + 2*retry_timeout <= ttl\", where ttl=" + std::to_string(ttl);
    if (1 + 2 * retry_timeout > ttl) {
        const int retry = std::max(1, (ttl - 1) / 2);
        adjusted.push_back(rule + ". Adjusting loop_wait from " + std::to_string(loop_wait) +
                           " to 1 and retry_timeout from " + std::to_string(retry_timeout) + " to " +
                           std::to_string(retry));
        loop_wait = 1;
        retry_timeout = retry;
    } else {
        adjusted.push_back(rule + " and retry_timeout=" + std::to_string(retry_timeout) + ". Adjusting loop_wait from " +
                           std::to_string(loop_wait) + " to " + std::to_string(ttl - 2 * retry_timeout));
        loop_wait = ttl - 2 * retry_timeout;
    }
}

std::vector<std::string> DynamicConfig::validate() const {
    std::vector<std::string> errors;
    // (from_json raised ttl, loop_wait and retry_timeout to their minimums.)
    if (loop_wait + 2 * retry_timeout > ttl)
        errors.push_back("loop_wait + 2 * retry_timeout (" + std::to_string(loop_wait + 2 * retry_timeout) +
                         ") must not exceed ttl (" + std::to_string(ttl) + ")");
    if (maximum_lag_on_failover < 0) errors.push_back("maximum_lag_on_failover must not be negative");
    if (synchronous_mode_strict && !synchronous_mode)
        errors.push_back("synchronous_mode_strict requires synchronous_mode (it is off)");
    if (synchronous_node_count < 1) errors.push_back("synchronous_node_count must be at least 1");
    return errors;
}

std::vector<std::string> config_errors(const json &j) {
    std::vector<std::string> errors;
    DynamicConfig cfg = DynamicConfig::from_json(j, errors);
    if (j.is_object())
        for (auto &e : cfg.validate()) errors.push_back(e);
    return errors;
}

std::string config_errors_text(const std::vector<std::string> &errors) {
    std::string msg = "invalid configuration:";
    for (std::size_t i = 0; i < errors.size(); ++i) msg += (i ? "; " : " ") + errors[i];
    return msg;
}

ConfigPatchResult apply_config_patch(const json &current, const json &patch_in, bool replace) {
    ConfigPatchResult r;
    if (!patch_in.is_object()) {
        r.errors.push_back("the configuration must be a JSON object, got " + std::string(patch_in.type_name()));
        return r;
    }
    json patch = patch_in;
    if (patch.contains("__replace__")) {
        replace = true;
        patch.erase("__replace__");
    }
    json merged = replace ? patch : current;
    if (!merged.is_object()) merged = json::object();
    if (!replace) merged.merge_patch(patch);  // RFC 7386, as Patroni's PATCH /config: null deletes
    r.errors = config_errors(merged);
    if (r.errors.empty()) {
        std::vector<std::string> ignored;
        r.config = DynamicConfig::from_json(merged, ignored);
    }
    r.merged = std::move(merged);
    return r;
}

const std::vector<TimingProfile> &timing_profiles() {
    static const std::vector<TimingProfile> profiles = {
        {"default", 30, 10, 10, 2000, 2000,
         "Patroni's defaults: a lost primary host is replaced in about 25 s"},
        {"fast", 4, 1, 1, 500, 1000,
         "the tightest timing pg_ha is measured with: a lost primary host is replaced in about 3.6 s, and the "
         "leader keeps its lock through ZooKeeper answers up to 2 s late (bench/README.md)"},
    };
    return profiles;
}

const TimingProfile *find_timing_profile(const std::string &name) {
    for (const auto &p : timing_profiles())
        if (name == p.name) return &p;
    return nullptr;
}

std::string timing_profile_names() {
    std::string out;
    for (const auto &p : timing_profiles()) out += (out.empty() ? "" : ", ") + std::string(p.name);
    return out;
}

json timing_profile_patch(const TimingProfile &p) {
    return json{{"ttl", p.ttl}, {"loop_wait", p.loop_wait}, {"retry_timeout", p.retry_timeout}};
}

std::string lease_margin_problem(int margin_ms, int session_timeout_ms) {
    if (margin_ms < session_timeout_ms * 2 / 3) return "";
    return "pg_ha.lease_safety_margin (" + std::to_string(margin_ms) +
           " ms) leaves no usable lease with a ZooKeeper session timeout of " + std::to_string(session_timeout_ms) +
           " ms (it must stay below two thirds of it: raise ttl or lower the margin)";
}

}  // namespace pgha
