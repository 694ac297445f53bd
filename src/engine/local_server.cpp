#include "engine/local_server.hpp"

#include <cstdio>
#include <fstream>
#include <iterator>
#include <sstream>

#include "core/conninfo.hpp"
#include "core/operator_rules.hpp"
#include "core/patroni_codec.hpp"
#include "core/server_conf.hpp"
#include "core/sql_literal.hpp"
#include "engine/local_conn.hpp"

namespace pgha {
namespace {

// Client backends other than ours and the protected ones (SQL callers
// waiting for a switchover's answer).
const char *kOtherClients =
    "FROM pg_catalog.pg_stat_activity WHERE backend_type = 'client backend' "
    "AND pid <> pg_catalog.pg_backend_pid() AND pid <> ALL($1::int[])";

std::string int_array(const std::vector<int> &v) {
    std::string a = "{";
    for (std::size_t i = 0; i < v.size(); ++i) a += (i ? "," : "") + std::to_string(v[i]);
    return a + "}";
}

}  // namespace

LocalServer::LocalServer(std::unique_ptr<SqlConn> conn, const EngineSettings &s, Outbox &out, Clock clock)
    : conn_(std::move(conn)), s_(s), out_(out), clock_(std::move(clock)) {}

// A WAL receiver that connects to a leader whose timeline forked before our
// position streams for a few milliseconds ("End of WAL reached on timeline
// 1") every retry: such blips are not streaming. Only a stream seen for at
// least kSteadyStreamMs counts for not_streaming_s() (the "cannot follow"
// rule and the stream retry window); what is published is the sample.
void LocalServer::observe(const LocalSample &sample) {
    sample_ = sample;
    const std::int64_t now = clock_();
    if (!sample_.walreceiver_streaming || role() != LocalRole::Standby) {
        stream_started_ms_ = 0;
        steady_streaming_ = false;
    } else {
        if (stream_started_ms_ == 0) stream_started_ms_ = now;
        steady_streaming_ = now - stream_started_ms_ >= kSteadyStreamMs;
    }
    if (role() != LocalRole::Standby || steady_streaming_ || streaming_seen_ms_ == 0) streaming_seen_ms_ = now;
}

LocalRole LocalServer::role() const {
    if (sample_.server_version == 0) return LocalRole::Stopped;
    if (!sample_.in_recovery) return LocalRole::Primary;
    if (sample_.standby_signal) return LocalRole::Standby;
    return LocalRole::Recovering;
}

bool LocalServer::take_role_change() {
    LocalRole r = role();
    if (r == last_role_) return false;
    last_role_ = r;
    return true;
}

bool LocalServer::take_published_change() {
    const LocalRole r = role();
    const auto key = std::make_tuple(r, sample_.hot_standby_active, sample_.walreceiver_streaming, sample_.timeline);
    const bool changed = key != published_key_;
    published_key_ = key;
    // A standby that accepts connections although the last probe failed:
    // probe again, once a second (not a primary's: one that refuses
    // connections, e.g. at max_connections, must not get more attempts).
    const std::int64_t now = clock_();
    const bool retry_probe = r == LocalRole::Standby && sample_.hot_standby_active && !probe_ok_ &&
                             now - probe_retry_ms_ >= 1000;
    if (retry_probe) probe_retry_ms_ = now;
    return changed || retry_probe;
}

void LocalServer::probe() {
    auto rows = conn_->query(
        "SELECT application_name, coalesce(host(client_addr), ''), state, sync_state, "
        "coalesce(sent_lsn::text, ''), coalesce(write_lsn::text, ''), coalesce(flush_lsn::text, ''), "
        "coalesce(replay_lsn::text, '') FROM pg_catalog.pg_stat_replication ORDER BY 1");
    probe_ok_ = rows.has_value();
    replication_.clear();
    if (!rows) return;
    auto pending = conn_->query("SELECT count(*) FROM pg_catalog.pg_settings WHERE pending_restart");
    pending_restart_ = pending && !pending->empty() && !(*pending)[0].empty() && (*pending)[0][0] != "0";
    for (const auto &r : *rows) {
        if (r.size() < 8) continue;
        WalSender ws;
        ws.application_name = r[0];
        ws.client_addr = r[1];
        ws.state = r[2];
        ws.sync_state = r[3];
        ws.sent_lsn = parse_lsn(r[4]).value_or(0);
        ws.write_lsn = parse_lsn(r[5]).value_or(0);
        ws.flush_lsn = parse_lsn(r[6]).value_or(0);
        ws.replay_lsn = parse_lsn(r[7]).value_or(0);
        replication_.push_back(ws);
    }
}

LocalState LocalServer::state() const {
    LocalState ls;
    LocalRole r = role();
    ls.in_recovery = sample_.in_recovery;
    ls.accepts_connections = probe_ok_;
    ls.state = r == LocalRole::Stopped ? PgState::Stopped : probe_ok_ ? PgState::Running : PgState::Starting;
    ls.system_identifier = sample_.system_identifier ? std::to_string(sample_.system_identifier) : "";
    ls.server_version = sample_.server_version;
    ls.timeline = sample_.timeline;
    ls.write_lsn = sample_.write_lsn;
    ls.receive_lsn = sample_.receive_lsn;
    ls.replay_lsn = sample_.replay_lsn;
    ls.replication_state =
        sample_.in_recovery ? (sample_.walreceiver_streaming ? "streaming" : "in archive recovery") : "";
    parse_conninfo_host_port(sample_.primary_conninfo, ls.upstream_host, ls.upstream_port);
    ls.replication = replication_;
    return ls;
}

int LocalServer::not_streaming_s() {
    const std::int64_t now = clock_();
    if (role() != LocalRole::Standby || steady_streaming_ || streaming_seen_ms_ == 0) streaming_seen_ms_ = now;
    return static_cast<int>((now - streaming_seen_ms_) / 1000);
}

int LocalServer::recovering_s() {
    const std::int64_t now = clock_();
    const LocalRole r = role();
    // A standby being promoted is in recovery without standby.signal until
    // its startup process ends: that is a promotion, not a crash recovery,
    // and primary_start_timeout must not count it (with 0 a new leader would
    // give its lock up while it promotes).
    if (r == LocalRole::Standby) promoting_ = true;
    else if (r != LocalRole::Recovering) promoting_ = false;
    if (r != LocalRole::Recovering || promoting_) {
        recovering_since_ms_.reset();
        return -1;
    }
    if (!recovering_since_ms_) recovering_since_ms_ = now;
    return static_cast<int>((now - *recovering_since_ms_) / 1000);
}

std::optional<int> LocalServer::start_timeout_s() {
    const std::string path = s_.data_dir + "/" + kStartTimeoutFile;
    if (!start_timeout_read_) {
        start_timeout_read_ = true;
        std::ifstream f(path);
        std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
        if (const int t = restart_marker_timeout(text); t > 0) {
            start_timeout_s_ = t;
            out_.log("this start's primary_start_timeout is the restart's timeout: " + std::to_string(t) + " s");
        }
    }
    const LocalRole r = role();
    if (start_timeout_s_ && r != LocalRole::Recovering && r != LocalRole::Stopped) {
        start_timeout_s_.reset();
        std::remove(path.c_str());
    }
    return start_timeout_s_;
}

void LocalServer::follow(const Member &leader, bool use_slots) {
    const std::int64_t now = clock_();
    if (now - last_follow_ms_ < 5000) return;
    last_follow_ms_ = now;
    std::string host;
    int port = 0;
    if (!parse_conn_url(leader.conn_url, host, port)) return;
    const std::string conninfo =
        replication_conninfo(s_.replication_user, s_.replication_password, host, port, s_.node_name);
    std::vector<std::pair<std::string, std::string>> params{{"primary_conninfo", conninfo}};
    if (use_slots) params.emplace_back("primary_slot_name", slot_name_for_member(s_.node_name));
    std::string error;
    if (!set_parameters(params, error)) {
        out_.log("cannot point replication at " + leader.name + ": " + error);
        return;
    }
    out_.log("replication now follows " + leader.name + " at " + host + ":" + std::to_string(port));
}

bool LocalServer::list_slots(std::vector<SlotRow> &out) {
    out.clear();
    auto r = conn_->query(
        "SELECT slot_name, slot_type, coalesce(database, ''), coalesce(plugin, ''), temporary::int, active::int, "
        "coalesce(restart_lsn::text, '') FROM pg_catalog.pg_replication_slots");
    if (!r) {
        out_.log("cannot list replication slots: " + conn_->error());
        return false;
    }
    for (const auto &row : *r) {
        if (row.size() < 7) continue;
        SlotRow s;
        s.name = row[0];
        s.type = row[1];
        s.database = row[2];
        s.plugin = row[3];
        s.temporary = row[4] == "1";
        s.active = row[5] == "1";
        s.restart_lsn = parse_lsn(row[6]).value_or(0);
        out.push_back(std::move(s));
    }
    return true;
}

void LocalServer::create_slots(const std::vector<std::string> &names) {
    if (names.empty()) return;
    std::string arr = "{";
    for (std::size_t i = 0; i < names.size(); ++i) arr += (i ? "," : "") + names[i];
    arr += "}";
    auto r = conn_->query(
        "SELECT s, pg_catalog.pg_create_physical_replication_slot(s, true) FROM unnest($1::text[]) s "
        "WHERE s NOT IN (SELECT slot_name FROM pg_catalog.pg_replication_slots)",
        {arr});
    if (!r) out_.log("cannot create replication slots: " + conn_->error());
    else
        for (const auto &row : *r)
            if (!row.empty()) out_.log("created physical replication slot " + row[0]);
}

void LocalServer::drop_slot(const std::string &name) {
    // Only while still inactive (a standby may have connected since the list).
    auto r = conn_->query(
        "SELECT pg_catalog.pg_drop_replication_slot(slot_name) FROM pg_catalog.pg_replication_slots "
        "WHERE slot_name = $1 AND NOT active AND slot_type = 'physical'",
        {name});
    if (!r) out_.log("cannot drop replication slot " + name + ": " + conn_->error());
    else if (!r->empty()) out_.log("dropped physical replication slot " + name + " (unused longer than member_slots_ttl)");
}

void LocalServer::advance_slot(const std::string &name, Lsn to) {
    // On a standby the server moves it no further than its replay position.
    auto r = conn_->query(
        "SELECT pg_catalog.pg_replication_slot_advance(slot_name, $2::pg_lsn) FROM pg_catalog.pg_replication_slots "
        "WHERE slot_name = $1 AND NOT active AND slot_type = 'physical' AND restart_lsn < $2::pg_lsn",
        {name, format_lsn(to)});
    if (!r) out_.log("cannot move replication slot " + name + " forward: " + conn_->error());
}

bool LocalServer::remove_other_parameters(const std::vector<std::string> &keep, std::vector<std::string> &removed,
                                          std::string &error) {
    if (!remove_other_server_conf_keys(s_.data_dir, keep, removed, error)) return false;
    return removed.empty() || reload(error);
}

bool LocalServer::set_parameters(const std::vector<std::pair<std::string, std::string>> &params,
                                 std::string &error) {
    // Persisted in pg_ha.auto.conf in the data directory (core/server_conf), not
    // with ALTER SYSTEM, which PostgreSQL 17+ can forbid (allow_alter_system).
    if (!update_server_conf(s_.data_dir, params, error)) return false;
    // Where each name is set last, as the server will read it: pg_ha.auto.conf
    // must win. postgresql.auto.conf is read after every include, so a
    // setting left there by an older pg_ha or pg_basebackup -R is reset.
    std::string names = "{";
    for (std::size_t i = 0; i < params.size(); ++i) names += (i ? "," : "") + params[i].first;
    names += "}";
    auto r = conn_->query(
        "SELECT DISTINCT ON (name) name, coalesce(sourcefile, '') FROM pg_catalog.pg_file_settings "
        "WHERE name = ANY(lower($1::text)::text[]) ORDER BY name, seqno DESC",
        {names});
    if (!r) {
        error = "reading pg_file_settings: " + conn_->error();
        return false;
    }
    auto ends_with = [](const std::string &s, const std::string &tail) {
        return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
    };
    const std::string ours = std::string("/") + kServerConfFile;
    if (r->empty() && !params.empty()) {
        error = "postgresql.conf does not include " + std::string(kServerConfFile) + " (add `" + kServerConfInclude +
                "` at its end; pg_hactl boot writes it)";
        return false;
    }
    for (const auto &row : *r) {
        if (row.size() < 2 || ends_with(row[1], ours)) continue;
        if (!ends_with(row[1], "/postgresql.auto.conf")) {
            error = row[0] + " is set in " + row[1] + " after " + kServerConfFile + ", which pg_ha writes; remove it there";
            return false;
        }
        if (!conn_->query("ALTER SYSTEM RESET " + sql_identifier(row[0]))) {
            error = "postgresql.auto.conf sets " + row[0] + ", which overrides " + kServerConfFile +
                    ", and ALTER SYSTEM RESET failed (" + conn_->error() +
                    "); remove the line (pg_hactl boot does so at the next start)";
            return false;
        }
        out_.log("removed " + row[0] + " from postgresql.auto.conf (pg_ha keeps it in " + kServerConfFile + ")");
    }
    return reload(error);
}

bool LocalServer::current_setting(const std::string &name, std::string &value) {
    auto r = conn_->query("SELECT pg_catalog.current_setting($1)", {name});
    if (!r || r->empty() || (*r)[0].empty()) return false;
    value = (*r)[0][0];
    return true;
}

bool LocalServer::local_parameter_names(std::set<std::string> &out, std::string &error) {
    auto r = conn_->query(
        "SELECT DISTINCT lower(f.name) FROM pg_catalog.pg_file_settings f, pg_catalog.pg_settings s "
        "WHERE s.name = 'pg_ha.scope' AND f.sourcefile = s.sourcefile AND f.name NOT LIKE 'pg\\_ha.%'");
    if (!r) {
        error = conn_->error();
        return false;
    }
    out.clear();
    for (const auto &row : *r)
        if (!row.empty()) out.insert(row[0]);
    return true;
}

bool LocalServer::reload(std::string &error) {
    if (conn_->query("SELECT pg_catalog.pg_reload_conf()")) return true;
    error = conn_->error();
    return false;
}

bool LocalServer::write_pg_hba(const std::vector<std::string> &lines, std::string &error) {
    std::string path;
    if (!current_setting("hba_file", path) || path.empty()) {
        error = "cannot read hba_file: " + conn_->error();
        return false;
    }
    std::string before;
    if (!read_text_file(path, before)) {
        error = "cannot read " + path;
        return false;
    }
    std::string text = "# written by pg_ha from the config key's postgresql.pg_hba; edits are overwritten\n";
    for (const auto &l : lines) text += l + "\n";
    if (text == before) return true;
    if (!write_file_atomic(path, text, 0600, error)) return false;
    // pg_hba_file_rules parses the file on disk as the postmaster would.
    auto r = conn_->query(
        "SELECT line_number, error FROM pg_catalog.pg_hba_file_rules WHERE error IS NOT NULL ORDER BY line_number "
        "LIMIT 1");
    std::string restore_error;
    if (!r) error = "cannot check the new " + path + ": " + conn_->error();
    else if (!r->empty()) error = "PostgreSQL refuses line " + (*r)[0][0] + " of the new pg_hba.conf: " + (*r)[0][1];
    else return reload(error);
    if (!write_file_atomic(path, before, 0600, restore_error))
        error += "; and putting the previous file back failed: " + restore_error;
    else error += "; the previous pg_hba.conf is kept";
    return false;
}

void LocalServer::terminate_clients(const std::vector<int> &except) {
    conn_->query(std::string("SELECT pg_catalog.pg_terminate_backend(pid) ") + kOtherClients, {int_array(except)});
}

bool LocalServer::backend_active(int pid) {
    auto r = conn_->query("SELECT 1 FROM pg_catalog.pg_stat_activity WHERE pid = $1 AND state = 'active'",
                          {std::to_string(pid)});
    return r && !r->empty();
}

int LocalServer::count_clients(const std::vector<int> &except) {
    auto r = conn_->query(std::string("SELECT count(*) ") + kOtherClients, {int_array(except)});
    if (!r || r->empty() || (*r)[0].empty()) return -1;
    return std::atoi((*r)[0][0].c_str());
}

bool LocalServer::wal_positions(const std::string &standby, Lsn &insert_lsn, Lsn &standby_flush, std::string &error) {
    // The current end of WAL every time, not a snapshot.
    auto r = conn_->query(
        "SELECT pg_catalog.pg_current_wal_insert_lsn()::text, coalesce((SELECT max(flush_lsn)::text FROM "
        "pg_catalog.pg_stat_replication WHERE application_name = $1), '')",
        {standby});
    if (!r || r->empty() || (*r)[0].size() < 2) {
        error = conn_->error();
        return false;
    }
    insert_lsn = parse_lsn((*r)[0][0]).value_or(0);
    standby_flush = parse_lsn((*r)[0][1]).value_or(0);
    return true;
}

Lsn LocalServer::switch_point(int timeline) const {
    // The last line of our timeline history file: "<parent tli>\t<switch lsn>\t<reason>".
    char hist[32];
    std::snprintf(hist, sizeof hist, "pg_wal/%08X.history", static_cast<unsigned>(timeline));
    std::ifstream in(s_.data_dir + "/" + hist);
    std::string line, last;
    while (std::getline(in, line))
        if (!line.empty() && line[0] != '#') last = line;
    std::istringstream fields(last);
    std::string tli, lsn;
    if (fields >> tli >> lsn)
        if (auto l = parse_lsn(lsn)) return *l;
    return 0;
}

bool LocalServer::checkpoint(SqlConn &conn, std::string &error) {
    if (conn.query("CHECKPOINT")) return true;
    error = conn.error();
    return false;
}

}  // namespace pgha
