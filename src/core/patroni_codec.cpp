#include "core/patroni_codec.hpp"
#include "core/json_text.hpp"

#include <cctype>
#include <climits>
#include <cmath>

namespace pgha {

using nlohmann::json;

namespace {

std::optional<json> parse_json(const std::string &data, std::string &error) {
    json j = json::parse(data, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) {
        error = "not valid JSON: " + data.substr(0, 80);
        return std::nullopt;
    }
    return j;
}

std::string str_or(const json &j, const char *key, const std::string &dflt = "") {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return dflt;
    if (it->is_string()) return it->get<std::string>();
    return it->dump();
}

std::optional<std::int64_t> int_of(const json &j, const char *key) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return std::nullopt;
    if (it->is_number_unsigned()) {
        const std::uint64_t u = it->get<std::uint64_t>();
        if (u > static_cast<std::uint64_t>(INT64_MAX)) return std::nullopt;
        return static_cast<std::int64_t>(u);
    }
    if (it->is_number_integer()) return it->get<std::int64_t>();
    if (it->is_string()) {
        const auto s = it->get<std::string>();
        if (auto lsn = parse_lsn(s)) return static_cast<std::int64_t>(*lsn);
        try {
            std::size_t pos = 0;
            auto v = std::stoll(s, &pos);
            if (pos == s.size()) return v;
        } catch (const std::exception &) {
        }
    }
    return std::nullopt;
}

// A history entry's LSN: a non-negative integer below 2^64.
std::optional<Lsn> history_lsn(const json &v) {
    if (v.is_number_unsigned()) return v.get<std::uint64_t>();
    if (v.is_number_integer()) {
        const std::int64_t i = v.get<std::int64_t>();
        if (i < 0) return std::nullopt;
        return static_cast<Lsn>(i);
    }
    if (v.is_number_float()) {
        const double d = v.get<double>();
        // 2^64 itself is not representable as Lsn: strictly below.
        if (!std::isfinite(d) || d < 0 || d >= 18446744073709551616.0 || std::floor(d) != d) return std::nullopt;
        return static_cast<Lsn>(d);
    }
    return std::nullopt;
}

}  // namespace

std::string encode_member(const Member &m) {
    json j;
    j["conn_url"] = m.conn_url;
    j["api_url"] = m.api_url;
    j["state"] = m.state;
    j["role"] = m.role;
    j["version"] = m.version;
    if (m.state == "running" || m.state == "starting") {
        j["xlog_location"] = m.xlog_location;
        if (m.timeline > 0) j["timeline"] = m.timeline;
    }
    if (!m.replication_state.empty()) j["replication_state"] = m.replication_state;
    if (m.receive_lsn) j["receive_lsn"] = *m.receive_lsn;
    if (m.replay_lsn) j["replay_lsn"] = *m.replay_lsn;
    json tags = m.tags.to_json();
    if (!tags.empty()) j["tags"] = tags;
    if (m.pause) j["pause"] = true;
    if (m.pending_restart) j["pending_restart"] = true;
    if (m.scheduled_restart) j["scheduled_restart"] = m.scheduled_restart->to_json();
    return json_text(j);
}

bool differs_only_in_position(const Member &a, const Member &b) {
    Member x = a;
    x.xlog_location = b.xlog_location;
    x.receive_lsn = b.receive_lsn;
    x.replay_lsn = b.replay_lsn;
    return encode_member(x) == encode_member(b);
}

std::optional<Member> decode_member(const std::string &name, const std::string &data, std::string &error) {
    auto j = parse_json(data, error);
    if (!j) return std::nullopt;
    if (!j->is_object()) {
        error = "member " + name + ": expected a JSON object";
        return std::nullopt;
    }
    Member m;
    m.name = name;
    m.conn_url = str_or(*j, "conn_url");
    m.api_url = str_or(*j, "api_url");
    m.state = str_or(*j, "state");
    m.role = str_or(*j, "role");
    if (m.role == "master") m.role = "primary";  // Patroni < 3.1 writes "master"
    m.version = str_or(*j, "version");
    // Out-of-range numbers (negative positions, timelines beyond int) count
    // as not reported rather than being cast into nonsense.
    m.xlog_location = static_cast<Lsn>(std::max<std::int64_t>(0, int_of(*j, "xlog_location").value_or(0)));
    const std::int64_t tl = int_of(*j, "timeline").value_or(0);
    m.timeline = tl > 0 && tl <= INT_MAX ? static_cast<int>(tl) : 0;
    m.replication_state = str_or(*j, "replication_state");
    if (auto v = int_of(*j, "receive_lsn"); v && *v >= 0) m.receive_lsn = static_cast<Lsn>(*v);
    if (auto v = int_of(*j, "replay_lsn"); v && *v >= 0) m.replay_lsn = static_cast<Lsn>(*v);
    if (auto t = j->find("tags"); t != j->end()) m.tags = Tags::from_json(*t);
    if (auto p = j->find("pause"); p != j->end() && p->is_boolean()) m.pause = p->get<bool>();
    if (auto p = j->find("pending_restart"); p != j->end() && p->is_boolean()) m.pending_restart = p->get<bool>();
    if (auto p = j->find("scheduled_restart"); p != j->end()) m.scheduled_restart = ScheduledRestart::from_json(*p);
    return m;
}

std::string encode_sync(const SyncState &s) {
    if (s.empty()) return "{}";
    std::string standbys;
    for (const auto &n : s.sync_standby) standbys += (standbys.empty() ? "" : ",") + n;
    json j;
    j["leader"] = s.leader;
    j["sync_standby"] = standbys.empty() ? json(nullptr) : json(standbys);
    j["quorum"] = s.quorum;
    return json_text(j);
}

SyncState decode_sync(const std::string &data, std::string &error) {
    SyncState s;
    if (data.empty()) return s;
    auto j = parse_json(data, error);
    if (!j || !j->is_object()) {
        if (j) error = "sync: expected a JSON object";
        s.valid = false;
        return s;
    }
    s.leader = str_or(*j, "leader");
    if (auto q = j->find("quorum"); q != j->end() && !q->is_null()) {
        // Patroni writes an integer; anything else (or out of range) makes the key unusable.
        if (q->is_number_integer() && q->get<std::int64_t>() >= 0 && q->get<std::int64_t>() <= 1024) {
            s.quorum = static_cast<int>(q->get<std::int64_t>());
        } else {
            error = "sync: quorum must be an integer from 0 to 1024, got " + json_text(*q);
            s.valid = false;
        }
    }
    std::string list = str_or(*j, "sync_standby");
    if (list == "null") list.clear();
    std::size_t start = 0;
    while (start < list.size()) {
        auto comma = list.find(',', start);
        std::string item = list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        if (!item.empty()) s.sync_standby.push_back(item);
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
    return s;
}

std::string encode_failsafe(const std::map<std::string, std::string> &members) {
    json j = json::object();
    for (const auto &m : members) j[m.first] = m.second;
    return j.dump();
}

std::map<std::string, std::string> decode_failsafe(const std::string &data, std::string &error) {
    std::map<std::string, std::string> out;
    auto j = parse_json(data, error);
    if (!j) return out;
    if (!j->is_object()) {
        error = "failsafe: expected a JSON object of member name to api_url";
        return out;
    }
    for (auto it = j->begin(); it != j->end(); ++it) {
        if (!it.value().is_string() || it.key().empty()) {
            error = "failsafe: member \"" + it.key() + "\" must map to an api_url string";
            out.clear();
            return out;
        }
        out[it.key()] = it.value().get<std::string>();
    }
    return out;
}

std::string encode_failover(const FailoverRequest &f) {
    json j = json::object();
    if (!f.leader.empty()) j["leader"] = f.leader;
    if (!f.candidate.empty()) j["member"] = f.candidate;
    if (!f.scheduled_at.empty()) j["scheduled_at"] = f.scheduled_at;
    return json_text(j);
}

std::optional<FailoverRequest> decode_failover(const std::string &data, std::string &error) {
    if (data.empty()) return std::nullopt;
    auto j = parse_json(data, error);
    if (!j) return std::nullopt;
    if (!j->is_object()) {
        error = "failover: expected a JSON object";
        return std::nullopt;
    }
    if (j->empty()) return std::nullopt;
    FailoverRequest f;
    f.leader = str_or(*j, "leader");
    f.candidate = str_or(*j, "member");
    f.scheduled_at = str_or(*j, "scheduled_at");
    if (f.leader.empty() && f.candidate.empty()) {
        error = "failover: neither leader nor member given";
        return std::nullopt;
    }
    return f;
}

std::string encode_status(Lsn optime, const std::vector<std::string> &retain_slots,
                          const std::map<std::string, Lsn> &slots) {
    json j;
    j["optime"] = optime;
    j["slots"] = nullptr;
    for (const auto &[name, pos] : slots) j["slots"][name] = pos;
    if (!retain_slots.empty()) j["retain_slots"] = retain_slots;
    return json_text(j);
}

Lsn decode_status(const std::string &data, std::string &error, std::vector<std::string> *retain_slots,
                  std::map<std::string, Lsn> *slots) {
    if (retain_slots) retain_slots->clear();
    if (slots) slots->clear();
    if (data.empty()) return 0;
    auto j = parse_json(data, error);
    if (!j) return 0;
    if (j->is_number_unsigned()) return j->get<Lsn>();  // legacy optime/leader
    if (j->is_number_integer()) {
        error = "status: negative optime";
        return 0;
    }
    if (!j->is_object()) {
        error = "status: expected a JSON object";
        return 0;
    }
    const std::int64_t optime = int_of(*j, "optime").value_or(0);
    if (optime < 0) {
        error = "status: negative optime";
        return 0;
    }
    if (retain_slots) {
        if (auto r = j->find("retain_slots"); r != j->end() && !r->is_null()) {
            if (!r->is_array()) error = "status: retain_slots is not a list";
            else
                for (const auto &e : *r) {
                    if (e.is_string()) retain_slots->push_back(e.get<std::string>());
                    else error = "status: retain_slots holds a non-string " + e.dump();
                }
        }
    }
    if (slots) {
        if (auto r = j->find("slots"); r != j->end() && !r->is_null()) {
            if (!r->is_object()) error = "status: slots is not an object";
            else
                for (const auto &[name, pos] : r->items()) {
                    if (pos.is_number_unsigned()) (*slots)[name] = pos.get<Lsn>();
                    else error = "status: slot " + name + " has position " + pos.dump() + ", not a number of 0 or more";
                }
        }
    }
    return static_cast<Lsn>(optime);
}

std::string encode_history(const std::vector<HistoryEntry> &h) {
    json arr = json::array();
    for (const auto &e : h) {
        json row = json::array({e.timeline, e.lsn, e.reason, e.timestamp});
        if (!e.new_leader.empty()) row.push_back(e.new_leader);
        arr.push_back(row);
    }
    return json_text(arr);
}

std::vector<HistoryEntry> decode_history(const std::string &data, std::string &error) {
    std::vector<HistoryEntry> out;
    if (data.empty()) return out;
    auto j = parse_json(data, error);
    if (!j) return out;
    if (!j->is_array()) {
        error = "history: expected a JSON array";
        return out;
    }
    for (const auto &row : *j) {
        // [timeline, lsn, reason, timestamp?, new_leader?]: the timeline a
        // positive int, the LSN a non-negative integer (Patroni writes ints;
        // an integral float is accepted). Anything else is skipped, never cast.
        std::optional<Lsn> lsn;
        if (row.is_array() && row.size() >= 3) lsn = row[1].is_number() ? history_lsn(row[1]) : std::optional<Lsn>(0);
        if (!row.is_array() || row.size() < 3 || !row[0].is_number_integer() || !lsn) {
            error = "history: skipped a malformed entry";
            continue;
        }
        const bool tl_ok = row[0].is_number_unsigned()
                               ? row[0].get<std::uint64_t>() >= 1 && row[0].get<std::uint64_t>() <= INT_MAX
                               : row[0].get<std::int64_t>() >= 1 && row[0].get<std::int64_t>() <= INT_MAX;
        if (!tl_ok) {
            error = "history: skipped an entry with timeline " + row[0].dump() + " (expected 1.." + std::to_string(INT_MAX) + ")";
            continue;
        }
        HistoryEntry e;
        e.timeline = static_cast<int>(row[0].get<std::int64_t>());
        e.lsn = *lsn;
        if (row[2].is_string()) e.reason = row[2].get<std::string>();
        if (row.size() > 3 && row[3].is_string()) e.timestamp = row[3].get<std::string>();
        if (row.size() > 4 && row[4].is_string()) e.new_leader = row[4].get<std::string>();
        out.push_back(e);
    }
    return out;
}

std::string slot_name_for_member(const std::string &member_name) {
    std::string out;
    for (char c : member_name) {
        unsigned char u = static_cast<unsigned char>(c);
        if (std::isalnum(u)) out += static_cast<char>(std::tolower(u));
        else out += '_';
    }
    if (out.size() > 63) out.resize(63);
    return out;
}

}  // namespace pgha
