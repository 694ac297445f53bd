// The C boundary (src/pg/engine_api.h) between the worker's PostgreSQL loop
// and the engine. Every entry point runs through guarded(): no C++ exception
// crosses into PostgreSQL code, the message always reaches the log, and a
// failed step fails closed (see fail_closed()).
#include "pg/engine_api.h"

#include <cstdio>
#include <cstring>
#include <exception>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/conninfo.hpp"
#include "core/monotonic.h"
#include "dcs/zk_session.hpp"
#include "engine/engine.hpp"
#include "engine/engine_api_internal.hpp"
#include "engine/local_conn.hpp"

namespace pgha {
namespace {

std::string s_or(const char *p) { return p ? std::string(p) : std::string(); }

std::string local_conninfo(const EngineSettings &s) {
    return build_conninfo({{"host", s.socket_dir},
                           {"port", std::to_string(s.port)},
                           {"dbname", "postgres"},
                           {"user", s.superuser},
                           {"password", s.superuser_password},
                           {"application_name", "pg_ha_worker"},
                           {"connect_timeout", "2"},
                           {"options", "-c statement_timeout=5000"}});
}

LocalSample sample_from_c(const PgHaLocal &l) {
    LocalSample s;
    s.in_recovery = l.in_recovery;
    s.standby_signal = l.standby_signal;
    s.hot_standby_active = l.hot_standby_active;
    s.system_identifier = l.system_identifier;
    s.server_version = l.server_version;
    s.timeline = l.timeline;
    s.write_lsn = l.write_lsn;
    s.receive_lsn = l.receive_lsn;
    s.replay_lsn = l.replay_lsn;
    s.walreceiver_streaming = l.walreceiver_streaming;
    s.primary_conninfo = s_or(l.primary_conninfo);
    s.postmaster_start_time = l.postmaster_start_time;
    s.wal_level_logical = l.wal_level_logical;
    return s;
}

}  // namespace
}  // namespace pgha

// What the boundary keeps across steps: the engine, the strings the outputs
// point into, and what the last good step said (for failing closed).
struct PgHaEngine {
    std::unique_ptr<pgha::Engine> impl;
    pgha::Clock clock;
    std::vector<std::string> logs;
    std::vector<const char *> log_ptrs;
    std::string reply_message;
    bool last_fence = false;
    bool last_shutdown = false;
    int last_stop_kill_after_s = 0;
    bool last_leader = false;
    std::int64_t last_deadline = 0;
    // After a failed step, no lease until a whole decision succeeded again.
    std::int64_t failures = 0;
    std::uint64_t decisions_at_failure = 0;
    bool leader_at_failure = false;
    std::int64_t deadline_at_failure = 0;
    bool forced_fence = false;
    std::int64_t next_failure_log = 0;
};

namespace {

// Runs fn; on any exception returns false with the message.
template <typename Fn>
bool guarded(Fn &&fn, std::string &error) noexcept {
    try {
        fn();
        return true;
    } catch (const std::exception &e) {
        error = e.what();
    } catch (...) {
        error = "unknown exception";
    }
    return false;
}

void set_logs(PgHaEngine *e, PgHaOutputs *out) {
    e->log_ptrs.clear();
    for (const auto &l : e->logs) e->log_ptrs.push_back(l.c_str());
    e->log_ptrs.push_back(nullptr);
    out->log_lines = e->log_ptrs.data();
}

// While steps fail, and afterwards until a whole decision succeeded again:
// no lease (no write commits) with enforcement on; a fence that was set
// stays; a leader whose last good lease ran out meanwhile fences and shuts
// down. The error is logged (at most every 10 s).
void hold_closed(PgHaEngine *e, PgHaOutputs *out) {
    const std::int64_t now = e->clock();
    out->lease_deadline_ms = 0;
    out->lease_enforced = true;
    out->promote = false;
    out->promoting = false;
    out->retry_stream = false;
    out->flush_wal = false;
    out->sync_strict_waiting = false;  // no lease: the lease refuses the commits
    if (e->leader_at_failure && now >= e->deadline_at_failure && !e->forced_fence) {
        e->forced_fence = true;
        e->logs.push_back("the leader could not complete a decision before its lease ran out: fencing and shutting "
                          "down to rejoin as a standby");
    }
    if (e->forced_fence) out->fence = out->shutdown = true;
}

void fail_closed(PgHaEngine *e, const std::string &what, PgHaOutputs *out) noexcept {
    try {
        const std::int64_t now = e->clock();
        e->logs.clear();
        if (e->failures++ == 0) {
            e->decisions_at_failure = e->impl->decisions();
            e->leader_at_failure = e->last_leader;
            e->deadline_at_failure = e->last_deadline;
        }
        if (now >= e->next_failure_log) {
            e->logs.push_back("pg_ha engine step failed: " + what + " (" + std::to_string(e->failures) +
                              " failed steps); no write commits until a step succeeds");
            e->next_failure_log = now + 10000;
        }
        out->fence = e->last_fence;
        out->shutdown = e->last_shutdown;
        out->shutdown_immediate = false;
        out->stop_kill_after_s = e->last_stop_kill_after_s;
        out->reply_id = 0;
        out->status_json = nullptr;
        hold_closed(e, out);
        set_logs(e, out);
    } catch (...) {
        static const char *const oom[] = {"pg_ha engine step failed (out of memory)", nullptr};
        out->lease_deadline_ms = 0;
        out->lease_enforced = true;
        out->sync_strict_waiting = false;
        out->fence = e->last_fence || e->forced_fence;
        out->log_lines = oom;
    }
}

}  // namespace

PgHaEngine *pgha_engine_wrap(std::unique_ptr<pgha::Engine> engine, pgha::Clock clock) {
    auto e = std::make_unique<PgHaEngine>();
    e->impl = std::move(engine);
    e->clock = std::move(clock);
    return e.release();
}

extern "C" {

PgHaEngine *pgha_engine_create(const char *const *names, const char *const *values, int n, char *errbuf,
                               int errbuf_len) {
    PgHaEngine *result = nullptr;
    std::string error;
    bool ok = guarded(
        [&] {
            std::map<std::string, std::string> kv;
            for (int i = 0; i < n; i++)
                if (names[i]) kv[names[i]] = values[i] ? values[i] : "";
            std::vector<std::string> errors;
            pgha::EngineSettings s(pgha::NodeSettings::from_map(kv, errors));
            for (const auto &e : errors) error += (error.empty() ? "" : "; ") + e;
            if (!error.empty()) return;
            error = s.validate();
            if (!error.empty()) return;
            pgha::EngineDeps deps;
            deps.zk = std::make_unique<pgha::ZkSession>();
            const std::string conninfo = pgha::local_conninfo(s);
            deps.sql = [conninfo] { return std::make_unique<pgha::LocalConn>(conninfo); };
            deps.http = [](const std::vector<pgha::PeerRequest> &r, int t) { return pgha::http_parallel(r, t); };
            deps.clock = [] { return static_cast<std::int64_t>(pgha_monotonic_ms()); };
            pgha::Clock clock = deps.clock;
            result = pgha_engine_wrap(std::make_unique<pgha::Engine>(s, std::move(deps)), clock);
        },
        error);
    if (!ok || !result) std::snprintf(errbuf, static_cast<std::size_t>(errbuf_len), "%s", error.c_str());
    return result;
}

void pgha_engine_wait_spec(PgHaEngine *engine, PgHaWaitSpec *spec) {
    std::string error;
    bool ok = guarded(
        [&] {
            long timeout = 1000;
            engine->impl->wait_interest(spec->zk_fd, spec->zk_read, spec->zk_write, spec->wake_fd, timeout);
            spec->timeout_ms = timeout;
        },
        error);
    if (!ok) {
        spec->zk_fd = -1;
        spec->zk_read = spec->zk_write = false;
        spec->wake_fd = -1;
        spec->timeout_ms = 100;
    }
}

void pgha_engine_step(PgHaEngine *engine, const PgHaLocal *local, bool zk_readable, bool zk_writable, bool woken,
                      PgHaOutputs *out) {
    std::memset(out, 0, sizeof *out);
    std::string error;
    bool ok = guarded(
        [&] {
            pgha::SqlRequest req;
            if (local->request_id != 0 && local->request_json) {
                req.id = local->request_id;
                req.json = local->request_json;
                req.pid = local->request_pid;
            }
            pgha::StepResult r = engine->impl->step(pgha::sample_from_c(*local), req, zk_readable, zk_writable, woken);
            engine->logs = engine->impl->logs();
            engine->reply_message = engine->impl->desk().reply_message();
            out->lease_deadline_ms = r.lease_deadline_ms;
            out->lease_enforced = r.lease_enforced;
            out->sync_strict_waiting = r.sync_strict_waiting;
            out->promote = r.promote;
            out->promoting = r.promoting;
            out->retry_stream = r.retry_stream;
            out->flush_wal = r.flush_wal;
            out->fence = r.fence;
            out->shutdown = r.shutdown;
            out->shutdown_immediate = r.shutdown_immediate;
            out->stop_kill_after_s = r.stop_kill_after_s;
            out->reply_id = engine->impl->desk().reply_id();
            out->reply_status = engine->impl->desk().reply_status();
            out->reply_message = engine->reply_message.c_str();
            out->status_json = engine->impl->status_json().c_str();
            set_logs(engine, out);
            if (engine->failures > 0) {
                if (engine->impl->decisions() > engine->decisions_at_failure) {
                    engine->logs.push_back("pg_ha engine steps succeed again after " +
                                           std::to_string(engine->failures) + " failures");
                    engine->failures = 0;
                    engine->next_failure_log = 0;
                } else {
                    hold_closed(engine, out);
                }
                set_logs(engine, out);
            }
            if (engine->forced_fence) out->fence = out->shutdown = true;
            engine->last_fence = out->fence;
            engine->last_shutdown = out->shutdown;
            engine->last_stop_kill_after_s = out->stop_kill_after_s;
            if (engine->failures == 0) {
                engine->last_leader = r.is_leader;
                engine->last_deadline = r.lease_deadline_ms;
            }
        },
        error);
    if (!ok) fail_closed(engine, error, out);
}

void pgha_engine_set_tags(PgHaEngine *engine, bool nofailover, bool noloadbalance, bool nosync, bool clonefrom) {
    std::string error;
    guarded(
        [&] {
            if (!engine || !engine->impl) return;
            pgha::Tags t;
            t.nofailover = nofailover;
            t.noloadbalance = noloadbalance;
            t.nosync = nosync;
            t.clonefrom = clonefrom;
            engine->impl->set_tags(t);
        },
        error);
}

void pgha_engine_destroy(PgHaEngine *engine, bool release) {
    std::string error;
    guarded(
        [&] {
            if (engine && engine->impl) engine->impl->shutdown(release);
        },
        error);
    guarded([&] { delete engine; }, error);
}

}  // extern "C"
