// Dynamic cluster configuration: the `config` znode, as in Patroni.
#pragma once
#include "core/no_postgres.hpp"

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/slot_rules.hpp"

namespace pgha {

struct DynamicConfig {
    // The three timings, in milliseconds. The config key holds seconds, as in
    // Patroni; pg_ha also takes decimals (1.5), to the millisecond.
    int ttl_ms = 30000;            // ZooKeeper session timeout = leader lease
    int loop_wait_ms = 10000;      // between HA loops when nothing happens
    int retry_timeout_ms = 10000;  // a DCS/PostgreSQL operation may be retried
    std::int64_t maximum_lag_on_failover = 1048576;  // bytes
    int master_start_timeout = 300;
    int primary_stop_timeout = 0;  // seconds a stopping primary may take in synchronous mode; 0: no limit
    bool synchronous_mode = false;         // "on", true or "quorum"
    bool synchronous_mode_quorum = false;  // "quorum": quorum commit (ANY k)
    bool synchronous_mode_strict = false;
    int synchronous_node_count = 1;        // standbys every commit waits for (>= 1)
    std::int64_t maximum_lag_on_syncnode = -1;  // bytes; a standby further behind is not picked; <= 0: no limit
    bool pause = false;
    bool failsafe_mode = false;
    bool use_pg_rewind = true;
    bool use_slots = true;
    bool remove_data_directory_on_rewind_failure = false;
    int member_slots_ttl = 1800;           // seconds a departed member's slot is kept (Patroni 4); 0: drop at once
    std::vector<IgnoreSlot> ignore_slots;  // slots pg_ha never drops
    std::set<std::string> permanent_slots; // the `slots` key's physical slots (created, kept)
    // PostgreSQL 17+: keep failover logical slots on the standbys
    // (core/failover_slots: sync_replication_slots, hot_standby_feedback,
    // synchronized_standby_slots).
    bool logical_slot_failover = true;
    nlohmann::json raw = nlohmann::json::object();  // the whole znode, unknown keys kept
    // What from_json adjusted as Patroni does (a timing below its minimum,
    // loop_wait + 2*retry_timeout > ttl), one warning each; `raw` keeps the
    // values as written.
    std::vector<std::string> adjusted;

    nlohmann::json to_json() const;

    // Parses a config znode. Unknown keys are kept in `raw`; known keys with a
    // wrong type or out of range produce errors and leave the default in place.
    static DynamicConfig from_json(const nlohmann::json &j, std::vector<std::string> &errors);

    // Lowers loop_wait, then retry_timeout, until loop_wait + 2*retry_timeout <= ttl (Patroni's
    // _validate_and_adjust_timeouts); from_json calls it.
    void adjust_timeouts();

    // Checks relations between values (ranges; the timing rule, which only a
    // ttl too small to adjust for still breaks).
    std::vector<std::string> validate() const;
};

// Smallest timings pg_ha accepts (ms; a smaller value is raised to it with a
// warning, as Patroni does with its own minimums). See README "Timing profiles".
constexpr int kMinTtlMs = 1000;
constexpr int kMinLoopWaitMs = 100;
constexpr int kMinRetryTimeoutMs = 100;

// A timing in seconds as the config key and messages show it: "30", "1.5".
std::string seconds_text(int ms);
// The same as a JSON number: an integer when whole (Patroni's form).
nlohmann::json seconds_json(int ms);

// Named timings for `pg_hactl edit-config --profile NAME` (README "Timing
// profiles"): ttl, loop_wait and retry_timeout written together, plus what
// the rest of the deployment needs for the figures to hold.
struct TimingProfile {
    const char *name;
    int ttl_ms, loop_wait_ms, retry_timeout_ms;
    // ZooKeeper tickTime (ms) at most: the servers expire sessions once per
    // tick and grant no session shorter than minSessionTimeout (2 ticks by default).
    int max_tick_time_ms;
    // pg_ha.lease_safety_margin (ms) the profile is measured with on every
    // node: lease = send time + ttl - margin, renewed every loop_wait, so it
    // rides out ZooKeeper answers up to ttl - margin - loop_wait late.
    int lease_safety_margin_ms;
    const char *summary;  // one line: what it gives, measured (bench/README.md)
};
const std::vector<TimingProfile> &timing_profiles();
const TimingProfile *find_timing_profile(const std::string &name);  // nullptr: no such profile
std::string timing_profile_names();                                 // "default, fast, fastest"
nlohmann::json timing_profile_patch(const TimingProfile &p);        // {"ttl", "loop_wait", "retry_timeout"}

// Why a node with this pg_ha.lease_safety_margin cannot lead with this
// ZooKeeper session timeout ("" = it can): the lease must outlast the next
// renewal, every third of the timeout. Used by the worker (the node's status
// says why it does not lead) and by pg_hactl edit-config.
std::string lease_margin_problem(int margin_ms, int session_timeout_ms);

// Every error of a configuration: types and ranges (from_json), then the
// relations between values (validate). Empty = valid.
std::vector<std::string> config_errors(const nlohmann::json &j);

// "invalid configuration: <e1>; <e2>" (one line; REST 400 body, SQL error,
// pg_hactl message).
std::string config_errors_text(const std::vector<std::string> &errors);

// An operator's change to the `config` znode, merged and validated in one
// step (PATCH/PUT /config, ha_set_config(), pg_hactl edit-config/pause/resume).
struct ConfigPatchResult {
    nlohmann::json merged = nlohmann::json::object();  // the new znode content
    DynamicConfig config;             // parsed from `merged` (defaults when invalid)
    std::vector<std::string> errors;  // empty: `merged` may be written
    bool ok() const { return errors.empty(); }
};

// `current` is the znode's JSON (a non-object counts as {}). replace=false:
// RFC 7386 merge patch, null removes a key (Patroni's PATCH /config).
// replace=true, or a "__replace__" member in `patch` (removed): `patch` is
// the whole new configuration (Patroni's PUT /config). A patch that is not
// an object is an error.
ConfigPatchResult apply_config_patch(const nlohmann::json &current, const nlohmann::json &patch, bool replace);

}  // namespace pgha
