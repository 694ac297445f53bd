// The engine test fixture shared by test_engine.cpp and
// test_engine_rejoin.cpp: an in-memory ZooKeeper, canned SQL answers,
// scripted peers and a manual clock (one copy per test file: an anonymous
// namespace).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>

#include <unistd.h>

#include "core/patroni_codec.hpp"
#include "core/timeutil.hpp"
#include "engine/engine.hpp"
#include "engine/engine_api_internal.hpp"
#include "fakes/fake_zk.hpp"

using namespace pgha;
using namespace pgha::test;

namespace {

const char *kBase = "/service/batman";

// Canned answers by statement; records what was run.
struct SqlScript {
    std::vector<std::string> ran;
    bool fail_all = false;
    bool throw_all = false;
    Lsn insert_lsn = 5000, standby_flush = 5000;
    bool pending_restart = false;  // pg_settings.pending_restart somewhere
    bool caller_active = false;    // pg_stat_activity: the SQL caller still runs its statement
    SqlRows slots;                 // pg_replication_slots rows (list_slots' columns)
    // Set: pg_file_settings says every parameter asked about is set last in
    // <conf_dir>/pg_ha.auto.conf (as with pg_hactl boot's include line).
    std::string conf_dir;
};

class FakeSql final : public SqlConn {
  public:
    explicit FakeSql(SqlScript &s) : s_(s) {}
    std::optional<SqlRows> query(const std::string &sql, const std::vector<std::string> &params) override {
        s_.ran.push_back(sql);
        if (s_.throw_all) throw std::runtime_error("scripted failure in " + sql.substr(0, 20));
        if (s_.fail_all) return std::nullopt;
        if (sql.find("pg_current_wal_insert_lsn") != std::string::npos)
            return SqlRows{{format_lsn(s_.insert_lsn), format_lsn(s_.standby_flush)}};
        if (sql.find("pending_restart") != std::string::npos) return SqlRows{{s_.pending_restart ? "1" : "0"}};
        if (sql.find("count(*)") != std::string::npos) return SqlRows{{"0"}};
        if (sql.find("state = 'active'") != std::string::npos)
            return s_.caller_active ? SqlRows{{"1"}} : SqlRows{};
        if (sql.find("slot_name, slot_type") != std::string::npos) return s_.slots;
        if (!s_.conf_dir.empty() && sql.find("DISTINCT ON (name)") != std::string::npos && !params.empty()) {
            SqlRows rows;  // params[0]: "{name,name}"
            std::string names = params[0].substr(1, params[0].size() - 2);
            for (std::size_t at = 0; at <= names.size();) {
                const std::size_t comma = std::min(names.find(',', at), names.size());
                rows.push_back({names.substr(at, comma - at), s_.conf_dir + "/pg_ha.auto.conf"});
                at = comma + 1;
            }
            return rows;
        }
        return SqlRows{};
    }
    const std::string &error() const override { return err_; }

  private:
    SqlScript &s_;
    std::string err_ = "scripted error";
};

std::string member_json(const std::string &name, const std::string &role, Lsn pos, int timeline = 1) {
    Member m;
    m.name = name;
    m.role = role;
    m.state = "running";
    m.conn_url = "postgres://10.0.0." + name.substr(3) + ":5432/postgres";
    m.api_url = "http://10.0.0." + name.substr(3) + ":8008/patroni";
    m.xlog_location = pos;
    m.timeline = timeline;
    if (role == "replica") m.replication_state = "streaming";
    return encode_member(m);
}

std::string replica_status(Lsn pos) {
    return "{\"state\":\"running\",\"role\":\"replica\",\"timeline\":1,\"xlog\":{\"received_location\":" +
           std::to_string(pos) + ",\"replayed_location\":" + std::to_string(pos) + "}}";
}

// A SQL switchover request as ha_switchover() queues it.
inline SqlRequest sql_switchover(std::uint64_t id, const std::string &args, int pid = 0) {
    SqlRequest req;
    req.id = id;
    req.json = "{\"kind\":\"switchover\",\"args\":" + args + "}";
    req.pid = pid;
    return req;
}

struct Node {
    EngineSettings s;
    SqlScript sql;
    FakeZk *zk = nullptr;
    std::unique_ptr<Engine> engine;
    LocalSample local;
    std::vector<std::string> logs;
    StepResult last;
    bool promoted = false;

    Node(FakeZkServer &server, ManualClock &clock, const std::string &name, bool primary, PeerHttp http,
         int margin_ms = 2000, const std::string &data_dir = "/nonexistent-pg-ha-test") {
        s.scope = "batman";
        s.ns = "/service";
        s.node_name = name;
        s.zookeeper_hosts = "zk:2181";
        s.connect_address = "10.0.0." + name.substr(3) + ":5432";
        s.api_connect_address = "10.0.0." + name.substr(3) + ":8008";
        s.data_dir = data_dir;
        s.watchdog_mode = kWatchdogOff;
        s.lease_safety_margin = margin_ms;
        EngineDeps deps;
        auto zk = std::make_unique<FakeZk>(server, clock, 10000);
        this->zk = zk.get();
        deps.zk = std::move(zk);
        deps.sql = [this] { return std::make_unique<FakeSql>(sql); };
        deps.http = std::move(http);
        deps.clock = clock.fn();
        deps.wall_clock = [&clock] { return clock.now + clock.wall_offset; };
        deps.serve_api = false;
        deps.inline_background = true;
        engine = std::make_unique<Engine>(s, std::move(deps));
        local.server_version = 150000;
        local.in_recovery = !primary;
        local.standby_signal = !primary;
        local.walreceiver_streaming = !primary;
        local.system_identifier = 7000;
        local.timeline = 1;
        local.write_lsn = local.receive_lsn = local.replay_lsn = 1000;
    }
    StepResult step(SqlRequest req = {}) {
        last = engine->step(local, req, true, true, false);
        for (auto &l : engine->logs()) logs.push_back(l);
        if (last.promote) {
            promoted = true;
            local.in_recovery = local.standby_signal = false;
            local.timeline = 2;
        }
        return last;
    }
    bool logged(const std::string &needle) const {
        return std::any_of(logs.begin(), logs.end(), [&](const std::string &l) { return l.find(needle) != std::string::npos; });
    }
};

class EngineTest : public ::testing::Test {
  protected:
    FakeZkServer server;
    ManualClock clock;
    std::vector<PeerReply> (*no_peers)(const std::vector<PeerRequest> &, int) = nullptr;

    void SetUp() override {
        server.put(std::string(kBase) + "/initialize", "7000");
        server.put(std::string(kBase) + "/config", "{\"ttl\":10,\"loop_wait\":2,\"retry_timeout\":2}");
        server.put(std::string(kBase) + "/members", "");
    }
    // Runs both steps and the clock until `done` or `n` rounds.
    template <typename Pred>
    bool run(std::vector<Node *> nodes, Pred done, int n = 200, int ms = 50) {
        for (int i = 0; i < n; ++i) {
            for (auto *node : nodes) node->step();
            if (done()) return true;
            clock.now += ms;
        }
        return false;
    }
    std::string path(const std::string &k) const { return std::string(kBase) + "/" + k; }
    // pg-2 holds the lock on a live session (555) and publishes itself as primary.
    void pg2_leads() {
        server.put(path("leader"), "pg-2", 555);
        server.put(path("members/pg-2"), member_json("pg-2", "primary", 5000), 555);
        server.live_sessions.insert(555);
    }
};

// A peer's 200 answer to `r` with `body`.
inline PeerReply answered(const PeerRequest &r, std::string body) {
    PeerReply rep;
    rep.name = r.name;
    rep.ok = true;
    rep.status = 200;
    rep.body = std::move(body);
    return rep;
}

inline PeerHttp peers_behind(Lsn pos) {
    return [pos](const std::vector<PeerRequest> &reqs, int) {
        std::vector<PeerReply> out;
        for (const auto &r : reqs) out.push_back(answered(r, replica_status(pos)));
        return out;
    };
}

}  // namespace
