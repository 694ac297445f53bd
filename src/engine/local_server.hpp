// The local PostgreSQL server as the engine sees it: what shared memory said
// this loop (LocalSample), the libpq probe, and every SQL statement the
// engine runs (follow, slots, reload, the switchover's terminate / drain /
// WAL position queries). All SQL text of the engine lives here.
//
// Thread affinity: the worker's loop only (the background thread has its
// own connection for CHECKPOINT, see checkpoint_job()).
#pragma once

#include "core/no_postgres.hpp"

#include "core/slot_rules.hpp"

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "core/cluster.hpp"
#include "core/ha_state_machine.hpp"
#include "engine/deps.hpp"
#include "engine/engine_settings.hpp"
#include "engine/outbox.hpp"

namespace pgha {

// What the worker read from shared memory this iteration (engine_api.h's
// PgHaLocal, without the request slot).
struct LocalSample {
    bool in_recovery = false;
    bool standby_signal = false;
    bool hot_standby_active = false;
    std::uint64_t system_identifier = 0;
    int server_version = 0;  // 0: not running
    int timeline = 0;
    Lsn write_lsn = 0, receive_lsn = 0, replay_lsn = 0;
    bool walreceiver_streaming = false;
    std::string primary_conninfo;
    std::int64_t postmaster_start_time = 0;
    bool wal_level_logical = false;  // wal_level = logical (slot synchronization needs it)
};

class LocalServer {
  public:
    LocalServer(std::unique_ptr<SqlConn> conn, const EngineSettings &s, Outbox &out, Clock clock);

    void observe(const LocalSample &sample);
    const LocalSample &sample() const { return sample_; }
    LocalRole role() const;
    // The role differs from the one seen at the previous call (promotion
    // finished, recovery ended, ...).
    bool take_role_change();
    // What members/<me> shows of the server changed since the last call (the
    // role, hot standby accepting connections, the WAL receiver streaming,
    // the timeline), or a hot standby accepts connections while the last
    // probe said it did not (once a second): worth a decision now rather
    // than a loop later (a rejoined standby is published "running" and
    // "streaming" as soon as it is, and a switchover to it is accepted).
    bool take_published_change();
    // One round trip: proves the server accepts connections and reads the walsenders.
    void probe();
    bool probe_ok() const { return probe_ok_; }
    // A setting changed in the configuration needs a server restart.
    bool pending_restart() const { return pending_restart_; }
    LocalState state() const;
    // Seconds this standby's WAL receiver has not been streaming (0 when it does or we are not a standby).
    int not_streaming_s();
    // The backend `pid` is running a statement (false when it is idle, gone,
    // or the question fails).
    bool backend_active(int pid);
    // Seconds the server has been in crash recovery as this worker saw it
    // (-1: it is not; a promotion is not).
    int recovering_s();
    // The restart's "timeout" for this start (pg_ha.start_timeout, left by
    // pg_hactl boot from the pg_ha.restart marker); forgotten, and the file
    // removed, once the server is out of recovery or a standby.
    std::optional<int> start_timeout_s();

    // Point replication at `leader` (set_parameters), at most every 5 s.
    void follow(const Member &leader, bool use_slots);
    // The one way pg_ha changes server parameters (primary_conninfo,
    // primary_slot_name, synchronous_standby_names, the config key's
    // postgresql.parameters): persists every name = value and reloads the
    // configuration. False with `error` set when any of them failed.
    bool set_parameters(const std::vector<std::pair<std::string, std::string>> &params, std::string &error);
    // Removes the config key's parameters not in `keep` from pg_ha.auto.conf
    // and reloads (nothing to do: no reload). `removed`: their names.
    bool remove_other_parameters(const std::vector<std::string> &keep, std::vector<std::string> &removed,
                                 std::string &error);
    // Parameters the node's settings file (the file that sets pg_ha.scope)
    // sets: its local configuration, which wins over the config key's.
    bool local_parameter_names(std::set<std::string> &out, std::string &error);
    // Physical and logical slots (pg_replication_slots); false on error (logged).
    bool list_slots(std::vector<SlotRow> &out);
    // Each logs what it did or why it could not.
    void create_slots(const std::vector<std::string> &names);
    void drop_slot(const std::string &name);
    void advance_slot(const std::string &name, Lsn to);
    // The value this session runs with (after a reload it may lag a moment behind).
    bool current_setting(const std::string &name, std::string &value);
    bool reload(std::string &error);
    // Writes these lines as the server's hba_file and reloads. PostgreSQL
    // parses the new file first (pg_hba_file_rules): a line it refuses puts
    // the previous file back and nothing is reloaded (a bad pg_hba.conf would
    // keep the server from starting next time). False with `error` then.
    bool write_pg_hba(const std::vector<std::string> &lines, std::string &error);
    // Switchover steps.
    void terminate_clients(const std::vector<int> &except);
    int count_clients(const std::vector<int> &except);  // -1 on error
    bool wal_positions(const std::string &standby, Lsn &insert_lsn, Lsn &standby_flush, std::string &error);
    // The exact switch point of `timeline` from its history file (0 if unknown).
    Lsn switch_point(int timeline) const;

    // A background job: CHECKPOINT on a connection of its own.
    static bool checkpoint(SqlConn &conn, std::string &error);
    const std::string &error() const { return conn_->error(); }

  private:
    std::unique_ptr<SqlConn> conn_;
    const EngineSettings &s_;
    Outbox &out_;
    Clock clock_;
    LocalSample sample_;
    bool probe_ok_ = false;
    bool pending_restart_ = false;
    std::vector<WalSender> replication_;
    LocalRole last_role_ = LocalRole::Stopped;
    std::int64_t last_follow_ms_ = 0;
    std::int64_t streaming_seen_ms_ = 0;  // the last step with a steady stream (observe())
    std::int64_t stream_started_ms_ = 0;  // the WAL receiver streams since (0: it does not)
    bool steady_streaming_ = false;       // ... for at least kSteadyStreamMs
    static constexpr std::int64_t kSteadyStreamMs = 1000;
    std::optional<std::int64_t> recovering_since_ms_;  // first loop that saw Recovering
    bool promoting_ = false;
    std::tuple<LocalRole, bool, bool, int> published_key_{LocalRole::Stopped, false, false, 0};
    std::int64_t probe_retry_ms_ = 0;  // Recovering came after Standby: a promotion
    bool start_timeout_read_ = false;
    std::optional<int> start_timeout_s_;
};

}  // namespace pgha
