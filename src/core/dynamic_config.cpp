#include "core/dynamic_config.hpp"

#include <algorithm>
#include <cmath>
#include <cctype>
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

// ttl, loop_wait, retry_timeout: seconds, as a number or a numeric string,
// with at most three decimals (milliseconds); Patroni raises a value below
// its minimum to the minimum with a warning instead of refusing it.
void read_timing(const json &j, const char *key, int min_ms, int &out_ms, std::vector<std::string> &errors,
                 std::vector<std::string> &adjusted) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return;
    double d = 0;
    bool number = false;
    if (it->is_number()) {
        d = it->get<double>();
        number = true;
    } else if (it->is_string()) {
        const std::string s = it->get<std::string>();
        try {
            std::size_t pos = 0;
            d = std::stod(s, &pos);
            number = pos == s.size() && !s.empty() && !std::isspace(static_cast<unsigned char>(s[0]));
        } catch (const std::exception &) {
            number = false;
        }
    }
    if (!number || !std::isfinite(d)) {
        errors.push_back(std::string(key) + ": expected a number of seconds, got " + it->dump());
        return;
    }
    if (d < -2147483.0 || d > 3600.0) {
        errors.push_back(std::string(key) + ": " + it->dump() + " is out of range [-2147483, 3600] seconds");
        return;
    }
    const double ms = d * 1000.0;
    const long long v = std::llround(ms);
    if (std::fabs(ms - static_cast<double>(v)) > 1e-6) {
        errors.push_back(std::string(key) + ": " + it->dump() + " has more than three decimals (milliseconds)");
        return;
    }
    int value = static_cast<int>(v);
    if (value < min_ms) {
        adjusted.push_back(std::string(key) + "=" + seconds_text(value) + " can't be smaller than " +
                           seconds_text(min_ms) + ", adjusting");
        value = min_ms;
    }
    out_ms = value;
}

}  // namespace

std::string seconds_text(int ms) {
    const bool neg = ms < 0;
    const long long a = neg ? -static_cast<long long>(ms) : ms;
    std::string out = (neg ? "-" : "") + std::to_string(a / 1000);
    if (long long frac = a % 1000) {
        std::string f = std::to_string(frac);
        f = std::string(3 - f.size(), '0') + f;
        while (!f.empty() && f.back() == '0') f.pop_back();
        out += "." + f;
    }
    return out;
}

json seconds_json(int ms) {
    if (ms % 1000 == 0) return json(ms / 1000);
    return json(std::stod(seconds_text(ms)));
}

json DynamicConfig::to_json() const {
    json j = raw.is_object() ? raw : json::object();
    j["ttl"] = seconds_json(ttl_ms);
    j["loop_wait"] = seconds_json(loop_wait_ms);
    j["retry_timeout"] = seconds_json(retry_timeout_ms);
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
    read_timing(j, "loop_wait", kMinLoopWaitMs, c.loop_wait_ms, errors, c.adjusted);
    read_timing(j, "retry_timeout", kMinRetryTimeoutMs, c.retry_timeout_ms, errors, c.adjusted);
    read_timing(j, "ttl", kMinTtlMs, c.ttl_ms, errors, c.adjusted);
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
// first, retry_timeout only when loop_wait is already at Patroni's minimum
// (1 s, or less when the operator chose less). A retry_timeout of a second or
// more stays whole seconds, as Patroni's.
void DynamicConfig::adjust_timeouts() {
    if (loop_wait_ms + 2 * retry_timeout_ms <= ttl_ms) return;
    const std::string rule = "Violated the rule \"loop_wait + 2*retry_timeout <= ttl\", where ttl=" + seconds_text(ttl_ms);
    const int least_loop = std::min(loop_wait_ms, 1000);
    if (least_loop + 2 * retry_timeout_ms > ttl_ms) {
        int retry = (ttl_ms - least_loop) / 2;
        if (retry >= 1000) retry -= retry % 1000;
        retry = std::max(kMinRetryTimeoutMs, retry);
        adjusted.push_back(rule + ". Adjusting loop_wait from " + seconds_text(loop_wait_ms) + " to " +
                           seconds_text(least_loop) + " and retry_timeout from " + seconds_text(retry_timeout_ms) +
                           " to " + seconds_text(retry));
        loop_wait_ms = least_loop;
        retry_timeout_ms = retry;
    } else {
        adjusted.push_back(rule + " and retry_timeout=" + seconds_text(retry_timeout_ms) +
                           ". Adjusting loop_wait from " + seconds_text(loop_wait_ms) + " to " +
                           seconds_text(ttl_ms - 2 * retry_timeout_ms));
        loop_wait_ms = ttl_ms - 2 * retry_timeout_ms;
    }
}

std::vector<std::string> DynamicConfig::validate() const {
    std::vector<std::string> errors;
    // (from_json raised ttl, loop_wait and retry_timeout to their minimums.)
    if (loop_wait_ms + 2 * retry_timeout_ms > ttl_ms)
        errors.push_back("loop_wait + 2 * retry_timeout (" + seconds_text(loop_wait_ms + 2 * retry_timeout_ms) +
                         ") must not exceed ttl (" + seconds_text(ttl_ms) + ")");
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
        {"default", 30000, 10000, 10000, 2000, 2000,
         "Patroni's defaults: a lost primary host is replaced in about 25 s"},
        {"fast", 4000, 1000, 1000, 500, 1000,
         "a lost primary host is replaced in about 3.6 s, and the leader keeps its lease through ZooKeeper "
         "answers up to 2 s late (bench/README.md)"},
        {"fastest", 1700, 100, 500, 100, 100,
         "the tightest timing pg_ha is measured with: a lost primary host is replaced in about 1.9 s, and the "
         "leader keeps its lease through ZooKeeper answers up to 1.5 s late (bench/README.md)"},
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
    return json{{"ttl", seconds_json(p.ttl_ms)},
                {"loop_wait", seconds_json(p.loop_wait_ms)},
                {"retry_timeout", seconds_json(p.retry_timeout_ms)}};
}

std::string lease_margin_problem(int margin_ms, int session_timeout_ms) {
    if (margin_ms < session_timeout_ms * 2 / 3) return "";
    return "pg_ha.lease_safety_margin (" + std::to_string(margin_ms) +
           " ms) leaves no usable lease with a ZooKeeper session timeout of " + std::to_string(session_timeout_ms) +
           " ms (it must stay below two thirds of it: raise ttl or lower the margin)";
}

}  // namespace pgha
