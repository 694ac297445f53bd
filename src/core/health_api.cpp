// Patroni's whole GET/HEAD/OPTIONS surface as one pure, noexcept answerer
// (health checks, /patroni, /cluster, /history, /config, /metrics, access
// checks). Longer than most files on purpose: it mirrors Patroni's api.py
// route by route, and splitting it would scatter the status-code rules that
// HAProxy depends on across files.
#include "core/health_api.hpp"
#include "core/json_text.hpp"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <limits>
#include <set>
#include <string_view>

#include "core/cluster_report.hpp"
#include "core/patroni_codec.hpp"

namespace pgha {

using nlohmann::json;

namespace {

constexpr const char *kJson = "application/json";

// JSON text that never throws: invalid UTF-8 (e.g. an application_name from a
// SQL_ASCII database) is replaced instead of aborting the reply.

HttpReply json_reply(int status, const json &j) { return HttpReply{status, kJson, json_text(j)}; }

HttpReply error_reply(int status, const std::string &message) {
    return json_reply(status, json{{"error", message}});
}

HttpReply status_only(int status) { return HttpReply{status, std::string(), std::string()}; }

// Python's parse_qs drops parameters with a blank value; the first value of a
// repeated key counts.
const std::string *query_value(const HttpRequestView &req, const std::string &key) {
    auto it = req.query.find(key);  // multimap::find returns the first inserted of equal keys
    for (; it != req.query.end() && it->first == key; ++it)
        if (!it->second.empty()) return &it->second;
    return nullptr;
}

bool contains(const std::string &s, const char *needle) { return s.find(needle) != std::string::npos; }

// Does leader - location exceed max_lag? Exact for the whole uint64/int64 range
// (Patroni computes with unbounded Python ints; max_lag may be negative).
bool lag_exceeds(Lsn leader, Lsn location, std::int64_t max_lag) {
    if (leader > location) {
        const std::uint64_t diff = leader - location;
        return max_lag < 0 || diff > static_cast<std::uint64_t>(max_lag);
    }
    // diff = -(location - leader) <= 0
    if (max_lag >= 0) return false;
    const std::uint64_t behind = location - leader;
    const std::uint64_t limit = static_cast<std::uint64_t>(-(max_lag + 1)) + 1;  // |max_lag|
    return behind < limit;
}

// Patroni (3.x+): the leader position used for lag checks is the larger of the
// /status optime and the wal receiver's latest_end_lsn. pg_ha: the snapshot has
// no latest_end_lsn; the received position is a lower bound of it, so a stale
// /status optime still cannot hide a replica whose replay is stuck.
Lsn leader_position_for_lag(const NodeSnapshot &s) {
    Lsn pos = s.leader_position();
    if (s.local.in_recovery) pos = std::max(pos, s.local.receive_lsn);
    return pos;
}

Lsn received_location(const LocalState &l) { return l.receive_lsn ? l.receive_lsn : l.replay_lsn; }

bool is_running(const NodeSnapshot &s) { return s.state == "running"; }

bool cluster_unlocked(const NodeSnapshot &s) { return !s.dcs_ok || !s.cluster.leader.has_value(); }

// Patroni's patroni.tags: configured tags; the special boolean tags appear
// only when set. Non-string values compare as str(value).lower().
std::map<std::string, std::string> tag_strings(const Tags &t) {
    std::map<std::string, std::string> out;
    const json j = t.to_json();
    for (auto it = j.begin(); it != j.end(); ++it) {
        if (it->is_string()) out[it.key()] = it->get<std::string>();
        else if (it->is_boolean()) out[it.key()] = it->get<bool>() ? "true" : "false";
        else {
            std::string v = json_text(*it);
            std::transform(v.begin(), v.end(), v.begin(), [](unsigned char c) { return std::tolower(c); });
            out[it.key()] = v;
        }
    }
    return out;
}

// First path segment: Patroni routes "GET /x/..." to do_GET_x when it exists.
std::string_view first_segment(const std::string &path) {
    std::string_view p(path);
    while (!p.empty() && p.front() == '/') p.remove_prefix(1);
    auto slash = p.find('/');
    return slash == std::string_view::npos ? p : p.substr(0, slash);
}

std::string escape_label(const std::string &v) {
    std::string out;
    out.reserve(v.size());
    for (char c : v) {
        if (c == '\\') out += "\\\\";
        else if (c == '"') out += "\\\"";
        else if (c == '\n') out += "\\n";
        else out += c;
    }
    return out;
}

json starting_json() { return json{{"state", "starting"}, {"role", "uninitialized"}}; }

}  // namespace

std::optional<std::int64_t> parse_lag_bytes(const std::string &text) {
    // Patroni: parse_int(value, 'B') = strtol (base 16/8/10) or strtod, then an
    // optional unit converted to bytes and rounded half-to-even.
    std::size_t b = 0, e = text.size();
    while (b < e && std::isspace(static_cast<unsigned char>(text[b]))) ++b;
    while (e > b && std::isspace(static_cast<unsigned char>(text[e - 1]))) --e;
    const std::string v = text.substr(b, e - b);
    if (v.empty()) return std::nullopt;

    std::size_t i = 0;
    bool negative = false;
    if (v[i] == '+' || v[i] == '-') negative = v[i++] == '-';

    long double value = 0;
    std::size_t end = std::string::npos;  // end of the number
    auto digits = [&](std::size_t from, int base) {
        std::size_t k = from;
        long double acc = 0;
        for (; k < v.size(); ++k) {
            int d;
            const char c = v[k];
            if (c >= '0' && c <= '9') d = c - '0';
            else if (base == 16 && c >= 'a' && c <= 'f') d = c - 'a' + 10;
            else if (base == 16 && c >= 'A' && c <= 'F') d = c - 'A' + 10;
            else break;
            if (d >= base) break;
            acc = acc * base + d;
        }
        value = acc;
        return k;
    };
    if (v.compare(i, 2, "0x") == 0 && i + 2 < v.size() &&
        std::isxdigit(static_cast<unsigned char>(v[i + 2]))) {
        end = digits(i + 2, 16);
    } else if (i < v.size() && v[i] == '0') {
        end = digits(i, 8);
    } else if (i < v.size() && v[i] >= '1' && v[i] <= '9') {
        end = digits(i, 10);
    }
    // strtod when the integer is followed by '.', 'e' or 'E', or there is no integer but a '.'
    const bool try_double = (end == std::string::npos && i < v.size() && v[i] == '.') ||
                            (end != std::string::npos && end < v.size() &&
                             (v[end] == '.' || v[end] == 'e' || v[end] == 'E'));
    if (try_double) {
        // [0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?
        std::size_t k = i, int_start = i;
        while (k < v.size() && std::isdigit(static_cast<unsigned char>(v[k]))) ++k;
        std::size_t mantissa_end = k;
        if (k < v.size() && v[k] == '.' && k + 1 < v.size() && std::isdigit(static_cast<unsigned char>(v[k + 1]))) {
            ++k;
            while (k < v.size() && std::isdigit(static_cast<unsigned char>(v[k]))) ++k;
            mantissa_end = k;
        }
        if (mantissa_end == int_start) return std::nullopt;
        std::size_t exp_end = mantissa_end;
        if (exp_end < v.size() && (v[exp_end] == 'e' || v[exp_end] == 'E')) {
            std::size_t m = exp_end + 1;
            if (m < v.size() && (v[m] == '+' || v[m] == '-')) ++m;
            if (m < v.size() && std::isdigit(static_cast<unsigned char>(v[m]))) {
                while (m < v.size() && std::isdigit(static_cast<unsigned char>(v[m]))) ++m;
                exp_end = m;
            }
        }
        try {
            value = std::stold(v.substr(i, exp_end - i));
        } catch (...) {
            return std::nullopt;
        }
        end = exp_end;
    }
    if (end == std::string::npos) return std::nullopt;
    if (negative) value = -value;

    std::string unit = v.substr(end);
    while (!unit.empty() && std::isspace(static_cast<unsigned char>(unit.front()))) unit.erase(0, 1);
    long double bytes;
    if (unit.empty() || unit == "B") {
        bytes = value;
    } else {
        long double mult, lower;  // lower: the next smaller unit, for Patroni's rounding
        if (unit == "kB") mult = 1024.0L, lower = 1;
        else if (unit == "MB") mult = 1024.0L * 1024, lower = 1024.0L;
        else if (unit == "GB") mult = 1024.0L * 1024 * 1024, lower = 1024.0L * 1024;
        else if (unit == "TB") mult = 1024.0L * 1024 * 1024 * 1024, lower = 1024.0L * 1024 * 1024;
        else return std::nullopt;
        bytes = std::nearbyint(value * mult / lower) * lower;
    }
    if (!std::isfinite(static_cast<double>(bytes))) return std::nullopt;
    bytes = std::nearbyint(bytes);
    if (bytes >= static_cast<long double>(std::numeric_limits<std::int64_t>::max()))
        return std::numeric_limits<std::int64_t>::max();
    if (bytes <= static_cast<long double>(std::numeric_limits<std::int64_t>::min()))
        return std::numeric_limits<std::int64_t>::min();
    return static_cast<std::int64_t>(bytes);
}

std::string format_postmaster_start_time(std::int64_t epoch_s) {
    std::time_t t = static_cast<std::time_t>(epoch_s);
    std::tm tm{};
    if (!gmtime_r(&t, &tm)) return std::string();
    char buf[64];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02d %02d:%02d:%02d+00:00", tm.tm_year + 1900, tm.tm_mon + 1,
                  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    return buf;
}

std::string api_role(const NodeSnapshot &s) {
    if (is_running(s)) {
        // Patroni: 'replica' if pg_is_in_recovery() else primary; in a standby
        // cluster the standby leader reports its own role.
        if (!s.local.in_recovery) return "primary";
        return s.role == "standby_leader" ? "standby_leader" : "replica";
    }
    return s.role.empty() ? "uninitialized" : s.role;
}

namespace {
bool listed_in_sync_key(const NodeSnapshot &s) {
    if (!s.dcs_ok || !s.cluster.config.synchronous_mode) return false;
    if (api_role(s) != "replica") return false;
    const auto &list = s.cluster.sync.sync_standby;
    return std::find(list.begin(), list.end(), s.name) != list.end();
}
}  // namespace

bool is_sync_standby(const NodeSnapshot &s) { return !s.cluster.config.synchronous_mode_quorum && listed_in_sync_key(s); }

bool is_quorum_standby(const NodeSnapshot &s) { return s.cluster.config.synchronous_mode_quorum && listed_in_sync_key(s); }

json patroni_status_json(const NodeSnapshot &s) {
    json r = json::object();
    const std::string role = api_role(s);
    if (is_running(s)) {
        r["state"] = s.state;
        if (s.postmaster_start_time > 0)
            r["postmaster_start_time"] = format_postmaster_start_time(s.postmaster_start_time);
        r["role"] = role;
        r["server_version"] = s.local.server_version;
        if (s.local.in_recovery) {
            r["xlog"] = json{{"received_location", received_location(s.local)},
                             {"replayed_location", s.local.replay_lsn},
                             {"replayed_timestamp", nullptr},
                             {"paused", false}};
            if (!s.local.replication_state.empty()) r["replication_state"] = s.local.replication_state;
        } else {
            r["xlog"] = json{{"location", s.local.write_lsn}};
        }
        if (is_sync_standby(s)) r["sync_standby"] = true;
        if (is_quorum_standby(s)) r["quorum_standby"] = true;
        r["timeline"] = s.local.timeline;
        if (!s.local.replication.empty()) {
            json rep = json::array();
            for (const auto &w : s.local.replication) {
                json o = json::object();
                o["application_name"] = w.application_name;
                if (w.client_addr.empty()) o["client_addr"] = nullptr;  // unix socket
                else o["client_addr"] = w.client_addr;
                o["state"] = w.state;
                o["sync_state"] = w.sync_state;
                rep.push_back(std::move(o));
            }
            r["replication"] = std::move(rep);
        }
    } else {
        r["state"] = s.state.empty() ? "unknown" : s.state;
        r["role"] = role;
    }
    if (cluster_unlocked(s)) r["cluster_unlocked"] = true;
    r["dcs_last_seen"] = s.dcs_last_seen;
    // _write_status_response
    json tags = s.tags.to_json();
    if (!tags.empty()) r["tags"] = std::move(tags);
    if (!s.local.system_identifier.empty()) r["database_system_identifier"] = s.local.system_identifier;
    if (s.pending_restart || s.local.pending_restart) r["pending_restart"] = true;
    if (s.scheduled_restart) r["scheduled_restart"] = s.scheduled_restart->to_json();
    r["patroni"] = json{{"version", s.version}, {"scope", s.scope}, {"name", s.name}};
    if (s.watchdog_failed) r["watchdog_failed"] = true;
    if (s.paused()) r["pause"] = true;
    // pg_ha: the state machine's last decision, in words.
    if (!s.message.empty()) r["message"] = s.message;
    // pg_ha: strict synchronous mode holds commits back, and why.
    if (!s.sync_waiting.empty()) r["synchronous_mode_waiting"] = s.sync_waiting;
    return r;
}

int health_check_status(const NodeSnapshot &s, const HttpRequestView &req, std::int64_t now_steady_ms) {
    const std::string path = req.path == "/" ? "/primary" : req.path;
    const std::string role = api_role(s);
    const bool running = is_running(s);

    // `lag`: unparsable or absent means no limit (Patroni: parse_int() -> None -> sys.maxsize).
    bool lagging = false;
    if (const std::string *lag = query_value(req, "lag")) {
        if (auto max_lag = parse_lag_bytes(*lag)) {
            const Lsn leader = leader_position_for_lag(s);
            const Lsn replayed = role == "replica" ? s.local.replay_lsn : 0;
            lagging = leader != 0 && lag_exceeds(leader, replayed, *max_lag);
        }
    }
    bool replication_state_ok = true;
    if (const std::string *want = query_value(req, "replication_state"))
        replication_state_ok = s.local.in_recovery && running && s.local.replication_state == *want;

    const bool standby_cluster_leader = s.role == "standby_leader";
    int replica_sc =
        (!s.tags.noloadbalance && !lagging && role == "replica" && running && replication_state_ok) ? 200 : 503;
    int leader_sc, standby_leader_sc;
    if (!s.dcs_ok && s.paused()) {
        // DCS unreachable in maintenance mode: Patroni trusts the local role.
        leader_sc = (role == "primary" || role == "standby_leader") ? 200 : 503;
        standby_leader_sc = role == "standby_leader" ? 200 : 503;
    } else if (s.is_leader) {
        leader_sc = 200;
        if (standby_cluster_leader) {
            replica_sc = 503;
            standby_leader_sc = (role == "replica" || role == "standby_leader") ? 200 : 503;
        } else {
            standby_leader_sc = 503;
        }
    } else {
        leader_sc = standby_leader_sc = 503;
    }
    // pg_ha: /primary answers 200 only when the server really accepts writes
    // (leader znode on our session, lease valid, local probe connected, not in
    // recovery), not merely when the leader key is ours (Patroni #2756); and
    // only until the lease the worker saw runs out, however old the snapshot.
    const bool writes = s.accepts_writes && now_steady_ms < s.lease_until_steady_ms;
    const int primary_sc = writes && !standby_cluster_leader ? 200 : 503;

    int sc = 503;
    bool ignore_tags = false;
    if (contains(path, "standby_leader") || contains(path, "standby-leader")) {
        sc = standby_leader_sc;
        ignore_tags = true;
    } else if (contains(path, "leader")) {
        sc = leader_sc;
        ignore_tags = true;
    } else if (contains(path, "master") || contains(path, "primary") || contains(path, "read-write")) {
        sc = primary_sc;
        ignore_tags = true;
    } else if (contains(path, "replica")) {
        sc = replica_sc;
    } else if (contains(path, "read-only") && !contains(path, "sync") && !contains(path, "quorum")) {
        sc = (primary_sc == 200 || standby_leader_sc == 200) ? 200 : replica_sc;
    } else if (contains(path, "health")) {
        sc = running ? 200 : 503;
    } else if (s.dcs_ok) {
        const bool sync = is_sync_standby(s);
        const bool quorum = is_quorum_standby(s);
        if ((path == "/sync" || path == "/synchronous") && sync) {
            sc = replica_sc;
        } else if (path == "/quorum" && quorum) {
            sc = replica_sc;
        } else if ((path == "/async" || path == "/asynchronous") && !sync && !quorum) {
            sc = replica_sc;
        } else if (path == "/read-only-quorum") {
            if (primary_sc == 200 || standby_leader_sc == 200) sc = 200;
            else if (quorum) sc = replica_sc;
        } else if (path == "/read-only-sync" || path == "/read-only-synchronous") {
            if (primary_sc == 200 || standby_leader_sc == 200) sc = 200;
            else if (sync) sc = replica_sc;
        }
    }

    if (!ignore_tags && sc == 200) {
        std::map<std::string, std::string> tags;
        bool tags_built = false;
        std::set<std::string> seen;
        for (const auto &[key, value] : req.query) {
            if (key.compare(0, 4, "tag_") != 0 || value.empty() || !seen.insert(key).second) continue;
            if (!tags_built) {
                tags = tag_strings(s.tags);
                tags_built = true;
            }
            auto it = tags.find(key.substr(4));
            if (it == tags.end() || it->second != value) {
                sc = 503;
                break;
            }
        }
    }
    return sc;
}

int liveness_status(const NodeSnapshot *s, std::int64_t now_steady_ms) {
    if (!s) return 503;
    if (s->paused()) return 200;
    const bool primary = api_role(*s) == "primary" && is_running(*s);
    const std::int64_t ttl_ms = std::max(s->cluster.config.ttl_ms, 1000);
    const std::int64_t threshold = ttl_ms * (primary ? 1 : 2);
    return s->loop_steady_ms + threshold > now_steady_ms ? 200 : 503;
}

int readiness_status(const NodeSnapshot *s, const HttpRequestView &req) {
    if (!s) return 503;
    if (s->is_leader) return 200;
    if (!is_running(*s)) return 503;
    if (!s->local.in_recovery || s->local.replication_state != "streaming") return 503;
    if (!s->dcs_ok && s->local.receive_lsn == 0) return 503;  // Patroni: 'DCS is not accessible'
    const Lsn leader = leader_position_for_lag(*s);
    const std::string *mode = query_value(req, "mode");
    const Lsn location = (mode && *mode == "write") ? received_location(s->local) : s->local.replay_lsn;
    std::int64_t max_lag = s->cluster.config.maximum_lag_on_failover;
    if (const std::string *lag = query_value(req, "lag"))
        if (auto parsed = parse_lag_bytes(*lag)) max_lag = *parsed;
    return lag_exceeds(leader, location, max_lag) ? 503 : 200;
}

json cluster_json(const NodeSnapshot &snap) {
    const ClusterView &c = snap.cluster;
    json members = json::array();
    for (const MemberRow &row : cluster_report(c)) {
        json o = json::object();
        o["name"] = row.name;
        o["role"] = to_string(row.role);
        o["state"] = row.state;
        o["api_url"] = row.api_url;
        if (!row.host.empty()) {
            o["host"] = row.host;
            if (row.port) o["port"] = row.port;
        }
        if (row.timeline > 0) o["timeline"] = row.timeline;
        json tags = row.tags.to_json();
        if (!tags.empty()) o["tags"] = std::move(tags);
        if (row.pending_restart) o["pending_restart"] = true;
        if (row.scheduled_restart) o["scheduled_restart"] = row.scheduled_restart->to_json();
        // Patroni: no lag for the leader; "unknown" when a member reported no position.
        if (!row.is_leader) o["lag"] = row.lag_json();
        members.push_back(std::move(o));
    }
    json r = json::object();
    r["members"] = std::move(members);
    r["scope"] = snap.scope;
    if (c.config.pause) r["pause"] = true;
    if (c.failover && !c.failover->scheduled_at.empty()) {
        json sw = json{{"at", c.failover->scheduled_at}};
        if (!c.failover->leader.empty()) sw["from"] = c.failover->leader;
        if (!c.failover->candidate.empty()) sw["to"] = c.failover->candidate;
        r["scheduled_switchover"] = std::move(sw);
    }
    return r;
}

std::string metrics_text(const NodeSnapshot &s) {
    const std::string labels = "{scope=\"" + escape_label(s.scope) + "\",name=\"" + escape_label(s.name) + "\"}";
    const std::string role = api_role(s);
    const bool running = is_running(s);
    const bool replica_xlog = running && s.local.in_recovery;
    const bool primary_xlog = running && !s.local.in_recovery;
    std::string out;
    out.reserve(4096);
    auto metric = [&](const char *name, const char *type, const char *help, const std::string &value) {
        out += "# HELP ";
        out += name;
        out += ' ';
        out += help;
        out += "\n# TYPE ";
        out += name;
        out += ' ';
        out += type;
        out += '\n';
        out += name;
        out += labels;
        out += ' ';
        out += value;
        out += '\n';
    };
    auto num = [](auto v) { return std::to_string(v); };

    // Patroni: semver without periods, each part zero-padded to 2 digits (2.0.2 -> 020002).
    std::string padded;
    {
        std::size_t start = 0;
        while (start <= s.version.size()) {
            auto dot = s.version.find('.', start);
            std::string part = s.version.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
            if (part.size() < 2) part.insert(0, 2 - part.size(), '0');
            padded += part;
            if (dot == std::string::npos) break;
            start = dot + 1;
        }
    }
    metric("patroni_version", "gauge", "Patroni semver without periods.", padded);
    metric("patroni_postgres_running", "gauge", "Value is 1 if Postgres is running, 0 otherwise.", num(int(running)));
    metric("patroni_postmaster_start_time", "gauge", "Epoch seconds since Postgres started.",
           num(running ? s.postmaster_start_time : 0));
    metric("patroni_master", "gauge", "Value is 1 if this node is the leader, 0 otherwise.",
           num(int(role == "primary")));
    metric("patroni_primary", "gauge", "Value is 1 if this node is the leader, 0 otherwise.",
           num(int(role == "primary")));
    metric("patroni_xlog_location", "counter",
           "Current location of the Postgres transaction log, 0 if this node is not the leader.",
           num(primary_xlog ? s.local.write_lsn : 0));
    metric("patroni_standby_leader", "gauge", "Value is 1 if this node is the standby_leader, 0 otherwise.",
           num(int(role == "standby_leader")));
    metric("patroni_replica", "gauge", "Value is 1 if this node is a replica, 0 otherwise.",
           num(int(role == "replica")));
    metric("patroni_sync_standby", "gauge", "Value is 1 if this node is a sync standby replica, 0 otherwise.",
           num(int(is_sync_standby(s))));
    metric("patroni_quorum_standby", "gauge", "Value is 1 if this node is a quorum standby, 0 otherwise.",
           num(int(is_quorum_standby(s))));
    metric("patroni_xlog_received_location", "counter",
           "Current location of the received Postgres transaction log, 0 if this node is not a replica.",
           num(replica_xlog ? received_location(s.local) : 0));
    metric("patroni_xlog_replayed_location", "counter",
           "Current location of the replayed Postgres transaction log, 0 if this node is not a replica.",
           num(replica_xlog ? s.local.replay_lsn : 0));
    metric("patroni_xlog_replayed_timestamp", "gauge",
           "Current timestamp of the replayed Postgres transaction log, 0 if null.", "0");
    metric("patroni_xlog_paused", "gauge", "Value is 1 if the Postgres xlog is paused, 0 otherwise.", "0");
    if (running && s.local.server_version >= 90600) {
        metric("patroni_postgres_streaming", "gauge", "Value is 1 if Postgres is streaming, 0 otherwise.",
               num(int(replica_xlog && s.local.replication_state == "streaming")));
        metric("patroni_postgres_in_archive_recovery", "gauge",
               "Value is 1 if Postgres is replicating from archive, 0 otherwise.",
               num(int(replica_xlog && s.local.replication_state == "in archive recovery")));
    }
    metric("patroni_postgres_server_version", "gauge", "Version of Postgres (if running), 0 otherwise.",
           num(running ? s.local.server_version : 0));
    metric("patroni_cluster_unlocked", "gauge", "Value is 1 if the cluster is unlocked, 0 if locked.",
           num(int(cluster_unlocked(s))));
    metric("patroni_failsafe_mode_is_active", "gauge", "Value is 1 if failsafe mode is active, 0 if inactive.",
           num(int(s.failsafe_active)));
    metric("patroni_postgres_timeline", "counter", "Postgres timeline of this node (if running), 0 otherwise.",
           num(running ? s.local.timeline : 0));
    metric("patroni_dcs_last_seen", "gauge", "Epoch timestamp when DCS was last contacted successfully by Patroni.",
           num(s.dcs_last_seen));
    metric("patroni_pending_restart", "gauge", "Value is 1 if the node needs a restart, 0 otherwise.",
           num(int(s.pending_restart || s.local.pending_restart)));
    metric("patroni_is_paused", "gauge", "Value is 1 if auto failover is disabled, 0 otherwise.", num(int(s.paused())));
    // pg_ha additions (not in Patroni).
    metric("pgha_accepts_writes", "gauge",
           "Value is 1 if this node holds a valid leader lease and accepts writes, 0 otherwise.",
           num(int(s.accepts_writes)));
    metric("pgha_dcs_ok", "gauge", "Value is 1 if the last HA loop read the cluster on a live DCS session.",
           num(int(s.dcs_ok)));
    return out;
}

std::string status_body_text(const NodeSnapshot &snap) { return json_text(patroni_status_json(snap)); }

HttpReply handle_request(const NodeSnapshot *snap, const HttpRequestView &req, std::int64_t now_steady_ms,
                         const ManagementHook &mgmt, const std::string *status_body) noexcept {
    try {
        const auto status_reply = [&](int status) {
            return HttpReply{status, kJson, status_body ? *status_body : status_body_text(*snap)};
        };
        const std::string &m = req.method;
        const bool get = m == "GET";
        const bool head_like = m == "HEAD" || m == "OPTIONS";
        if (!get && !head_like) {
            if (mgmt) {
                if (auto reply = mgmt(snap, req)) return *reply;
            }
            // Python's BaseHTTPRequestHandler: no do_<METHOD> -> 501.
            return error_reply(501, "Unsupported method ('" + m + "')");
        }

        const std::string_view seg = first_segment(req.path);

        // Probes with their own handler in Patroni (status code only, no body).
        // pg_ha: HEAD/OPTIONS on these answer the same status as GET; Patroni
        // routes them to the generic check, which always says 503.
        if (seg == "liveness") return status_only(liveness_status(snap, now_steady_ms));
        if (seg == "readiness") return status_only(readiness_status(snap, req));

        const bool json_endpoint = seg == "patroni" || seg == "cluster" || seg == "history" || seg == "config" ||
                                   seg == "metrics" || seg == "failsafe";
        if (!snap) {
            // The worker has not finished its first HA loop yet.
            if (head_like) return status_only(503);
            return json_reply(503, starting_json());
        }

        if (json_endpoint) {
            // pg_ha: HEAD/OPTIONS answer the status GET would give, without a body.
            if (seg == "patroni") {
                if (head_like) return status_only(200);
                return status_reply(200);
            }
            if (seg == "cluster") {
                if (head_like) return status_only(200);
                return json_reply(200, cluster_json(*snap));
            }
            if (seg == "history") {
                if (head_like) return status_only(200);
                return HttpReply{200, kJson, encode_history(snap->cluster.history)};
            }
            if (seg == "config") {
                if (!snap->cluster.config_present) {
                    if (head_like) return status_only(502);
                    return error_reply(502, "no configuration in the DCS");
                }
                if (head_like) return status_only(200);
                return json_reply(200, snap->cluster.config.to_json());
            }
            if (seg == "metrics") {
                if (head_like) return status_only(200);
                return HttpReply{200, "text/plain", metrics_text(*snap)};
            }
            // failsafe: with failsafe_mode on, the members a leader without
            // ZooKeeper asks for promises ({name: api_url}), as Patroni's
            // GET /failsafe; 502 when failsafe_mode is off.
            if (!snap->cluster.config.failsafe_mode) {
                if (head_like) return status_only(502);
                return error_reply(502, "failsafe mode is not enabled");
            }
            if (head_like) return status_only(200);
            // The `failsafe` key as the leader wrote it; before it exists, the members.
            nlohmann::json members = nlohmann::json::object();
            if (snap->cluster.failsafe && snap->cluster.failsafe_valid)
                for (const auto &m : *snap->cluster.failsafe) members[m.first] = m.second;
            else
                for (const auto &m : snap->cluster.members) members[m.name] = m.api_url;
            return json_reply(200, members);
        }

        // Patroni's generic do_GET: every other path, unknown ones included
        // (they answer 503 with the status body unless a substring matches).
        const int sc = health_check_status(*snap, req, now_steady_ms);
        if (head_like) return status_only(sc);
        return status_reply(sc);
    } catch (...) {
        // Nothing above should throw (std::bad_alloc aside); never let it out.
    }
    try {
        return error_reply(500, "internal error");
    } catch (...) {
        return HttpReply{500, std::string(), std::string()};
    }
}

// ---- access control ---------------------------------------------------------

bool is_safe_method(const std::string &method) noexcept {
    return method == "GET" || method == "HEAD" || method == "OPTIONS";
}

bool constant_time_equals(std::string_view supplied, std::string_view expected) noexcept {
    // One pass over the supplied bytes, each compared with some expected byte;
    // no early exit, no branch on the contents.
    volatile unsigned char diff = supplied.size() == expected.size() ? 0 : 1;
    const std::size_t n = expected.size();
    for (std::size_t i = 0; i < supplied.size(); ++i) {
        const unsigned char e = n ? static_cast<unsigned char>(expected[i % n]) : 0;
        diff = static_cast<unsigned char>(diff | (static_cast<unsigned char>(supplied[i]) ^ e));
    }
    return diff == 0;
}

std::optional<std::string> decode_base64(std::string_view text) noexcept {
    try {
        auto value = [](char c) -> int {
            if (c >= 'A' && c <= 'Z') return c - 'A';
            if (c >= 'a' && c <= 'z') return c - 'a' + 26;
            if (c >= '0' && c <= '9') return c - '0' + 52;
            if (c == '+') return 62;
            if (c == '/') return 63;
            return -1;
        };
        std::size_t len = text.size();
        std::size_t pad = 0;
        while (pad < 2 && len > 0 && text[len - 1] == '=') {
            --len;
            ++pad;
        }
        if (pad && (len + pad) % 4 != 0) return std::nullopt;  // padding must complete a quantum
        if (len % 4 == 1) return std::nullopt;                   // 6 bits cannot end a byte
        std::string out;
        out.reserve(len / 4 * 3 + 2);
        std::uint32_t acc = 0;
        int bits = 0;
        for (std::size_t i = 0; i < len; ++i) {
            const int v = value(text[i]);
            if (v < 0) return std::nullopt;
            acc = (acc << 6) | static_cast<std::uint32_t>(v);
            bits += 6;
            if (bits >= 8) {
                bits -= 8;
                out.push_back(static_cast<char>((acc >> bits) & 0xFF));
            }
        }
        if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) return std::nullopt;  // non-canonical tail
        return out;
    } catch (...) {
        return std::nullopt;
    }
}

bool basic_auth_matches(std::string_view authorization, const std::string &username,
                        const std::string &password) noexcept {
    try {
        // A token for any sane credentials is far shorter; do not decode
        // megabytes for a client that sends garbage.
        constexpr std::size_t kMaxHeader = 4096;
        if (authorization.size() > kMaxHeader || authorization.size() < 6) return false;
        static constexpr std::string_view kScheme = "basic";
        for (std::size_t i = 0; i < kScheme.size(); ++i)
            if (std::tolower(static_cast<unsigned char>(authorization[i])) != kScheme[i]) return false;
        std::string_view token = authorization.substr(kScheme.size());
        if (token.empty() || (token.front() != ' ' && token.front() != '\t')) return false;
        while (!token.empty() && (token.front() == ' ' || token.front() == '\t')) token.remove_prefix(1);
        while (!token.empty() && (token.back() == ' ' || token.back() == '\t')) token.remove_suffix(1);
        const std::optional<std::string> decoded = decode_base64(token);
        if (!decoded || decoded->find(':') == std::string::npos) return false;
        // Compare "user:password" as a whole: same answer as splitting on the
        // first colon for any username without a colon, one constant-time pass.
        const std::string expected = username + ":" + password;
        return constant_time_equals(*decoded, expected);
    } catch (...) {
        return false;
    }
}

std::optional<IpNetwork> parse_ip_network(std::string_view text) noexcept {
    try {
        IpNetwork n;
        std::string addr(text);
        int max_bits = 0;
        std::string prefix;
        const auto slash = addr.find('/');
        if (slash != std::string::npos) {
            prefix = addr.substr(slash + 1);
            addr.resize(slash);
            if (prefix.empty() || prefix.size() > 3 ||
                !std::all_of(prefix.begin(), prefix.end(), [](char c) { return c >= '0' && c <= '9'; }))
                return std::nullopt;
        }
        if (addr.find(':') != std::string::npos) {
            if (inet_pton(AF_INET6, addr.c_str(), n.addr) != 1) return std::nullopt;
            n.family = AF_INET6;
            max_bits = 128;
        } else {
            if (inet_pton(AF_INET, addr.c_str(), n.addr) != 1) return std::nullopt;
            n.family = AF_INET;
            max_bits = 32;
        }
        n.prefix = prefix.empty() ? max_bits : std::stoi(prefix);
        if (n.prefix < 0 || n.prefix > max_bits) return std::nullopt;
        return n;
    } catch (...) {
        return std::nullopt;
    }
}

bool parse_allowlist(const std::string &text, std::vector<IpNetwork> &out, std::string &error) {
    out.clear();
    std::string item;
    auto flush = [&]() {
        if (item.empty()) return true;
        auto n = parse_ip_network(item);
        if (!n) {
            error = "\"" + item + "\" is not an IP address or network (e.g. 10.0.0.0/8, 192.0.2.7, ::1)";
            return false;
        }
        out.push_back(*n);
        item.clear();
        return true;
    };
    for (char c : text) {
        if (c == ',' || std::isspace(static_cast<unsigned char>(c))) {
            if (!flush()) return false;
        } else {
            item += c;
        }
    }
    return flush();
}

bool ip_in_network(const std::string &ip, const IpNetwork &net) noexcept {
    unsigned char a[16] = {};
    int family;
    if (ip.find(':') != std::string::npos) {
        if (inet_pton(AF_INET6, ip.c_str(), a) != 1) return false;
        static const unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (std::equal(kMapped, kMapped + 12, a)) {  // ::ffff:a.b.c.d from a dual-stack socket
            std::copy(a + 12, a + 16, a);
            family = AF_INET;
        } else {
            family = AF_INET6;
        }
    } else {
        if (inet_pton(AF_INET, ip.c_str(), a) != 1) return false;
        family = AF_INET;
    }
    if (family != net.family) return false;
    const int full = net.prefix / 8, rest = net.prefix % 8;
    if (!std::equal(a, a + full, net.addr)) return false;
    if (rest == 0) return true;
    const unsigned char mask = static_cast<unsigned char>(0xff << (8 - rest));
    return (a[full] & mask) == (net.addr[full] & mask);
}

std::vector<std::string> member_api_hosts(const NodeSnapshot &snap) {
    std::vector<std::string> out;
    for (const Member &m : snap.cluster.members) {
        const auto scheme = m.api_url.find("://");
        if (scheme == std::string::npos) continue;
        std::string hostport = m.api_url.substr(scheme + 3);
        hostport = hostport.substr(0, hostport.find('/'));
        std::string host;
        int port = 0;
        if (parse_host_port(hostport, host, port) && !host.empty() &&
            std::find(out.begin(), out.end(), host) == out.end())
            out.push_back(host);
    }
    return out;
}

std::optional<HttpReply> check_access(const ApiAccessPolicy &policy, const std::string &method,
                                      const std::string *authorization, bool client_cert_verified,
                                      const std::string &remote_addr,
                                      const std::vector<std::string> &member_addrs) noexcept {
    try {
        const bool safe = is_safe_method(method);
        if (safe && !policy.auth_for_reads) return std::nullopt;
        // Patroni: the allowlist first (unsafe methods only), then the client
        // certificate, then the credentials.
        if (!safe && (!policy.allowlist.empty() || policy.allowlist_include_members)) {
            bool allowed = false;
            for (const IpNetwork &n : policy.allowlist) allowed = allowed || ip_in_network(remote_addr, n);
            if (policy.allowlist_include_members)
                for (const std::string &m : member_addrs)
                    if (auto n = parse_ip_network(m)) allowed = allowed || ip_in_network(remote_addr, *n);
            if (!allowed) return HttpReply{403, "text/html", "Access is denied"};
        }
        if (!safe && policy.client_cert_required && !client_cert_verified)
            return HttpReply{403, "text/html", "client certificate required"};
        if (policy.username.empty()) {
            // pg_ha: closed by default (a verified certificate or the explicit opt-out opens it).
            if (safe || policy.client_cert_required || policy.allow_unauthenticated) return std::nullopt;
            return HttpReply{401, "text/html", kApiClosedMessage};
        }
        if (!authorization) return HttpReply{401, "text/html", "no auth header received"};
        if (!basic_auth_matches(*authorization, policy.username, policy.password))
            return HttpReply{401, "text/html", "not authenticated"};
        return std::nullopt;
    } catch (...) {
        return HttpReply{500, std::string(), std::string()};  // deny on bad_alloc
    }
}

std::optional<HttpReply> check_access(const ApiAccessPolicy &policy, const std::string &method,
                                      const std::string *authorization, bool client_cert_verified) noexcept {
    static const std::string kUnknown;
    return check_access(policy, method, authorization, client_cert_verified, kUnknown);
}

}  // namespace pgha
