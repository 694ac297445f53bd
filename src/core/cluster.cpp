#include "core/cluster.hpp"

#include "core/patroni_codec.hpp"

#include <algorithm>

namespace pgha {

using nlohmann::json;

namespace {
bool tag_true(const json &j, const char *key) {
    auto it = j.find(key);
    if (it == j.end()) return false;
    if (it->is_boolean()) return it->get<bool>();
    if (it->is_string()) {
        const auto s = it->get<std::string>();
        return s == "true" || s == "on" || s == "yes" || s == "1";
    }
    return false;
}
}  // namespace

json Tags::to_json() const {
    json j = json::object();
    // Patroni writes only tags that are set; readers treat missing as false.
    if (nofailover) j["nofailover"] = true;
    if (noloadbalance) j["noloadbalance"] = true;
    if (nosync) j["nosync"] = true;
    if (clonefrom) j["clonefrom"] = true;
    return j;
}

Tags Tags::from_json(const json &j) {
    Tags t;
    if (!j.is_object()) return t;
    t.nofailover = tag_true(j, "nofailover");
    t.noloadbalance = tag_true(j, "noloadbalance");
    t.nosync = tag_true(j, "nosync");
    t.clonefrom = tag_true(j, "clonefrom");
    return t;
}

json ScheduledRestart::to_json() const {
    // Patroni's keys: the schedule and the restart request's conditions
    json j = json{{"schedule", schedule}};
    if (!role.empty()) j["role"] = role;
    if (!postgres_version.empty()) j["postgres_version"] = postgres_version;
    if (restart_pending) j["restart_pending"] = true;
    return j;
}

std::optional<ScheduledRestart> ScheduledRestart::from_json(const json &j) {
    if (!j.is_object()) return std::nullopt;
    auto str = [&j](const char *k) {
        auto it = j.find(k);
        return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
    };
    ScheduledRestart r;
    r.schedule = str("schedule");
    if (r.schedule.empty()) return std::nullopt;
    r.role = str("role");
    r.postgres_version = str("postgres_version");
    auto p = j.find("restart_pending");
    r.restart_pending = p != j.end() && p->is_boolean() && p->get<bool>();
    return r;
}

bool parse_host_port(const std::string &text, HostPortForm form, std::string &host, int &port, std::string &why) {
    std::string h, p;
    if (!text.empty() && text[0] == '[') {
        auto close = text.find(']');
        if (close == std::string::npos) {
            why = "missing ']'";
            return false;
        }
        if (close + 1 >= text.size() || text[close + 1] != ':') {
            why = "missing port after ']'";
            return false;
        }
        h = text.substr(1, close - 1);
        p = text.substr(close + 2);
        if (h.empty()) {
            why = "empty IPv6 address";
            return false;
        }
    } else {
        auto colon = text.rfind(':');
        if (colon == std::string::npos) {
            why = "missing port";
            return false;
        }
        h = text.substr(0, colon);
        p = text.substr(colon + 1);
    }
    if (p.empty() || p.size() > 5) {
        why = "bad port";
        return false;
    }
    for (char c : p)
        if (c < '0' || c > '9') {
            why = "bad port";
            return false;
        }
    const int v = std::stoi(p);  // at most 5 digits: cannot overflow
    const bool listen = form == HostPortForm::Listen;
    if (v > 65535 || (!listen && v < 1)) {
        why = "port out of range";
        return false;
    }
    for (char c : h)
        if (c == ' ' || c == '/' || c == '[' || c == ']') {
            why = "bad host";
            return false;
        }
    if (listen && h == "*") h.clear();
    if (!listen && h.empty()) {
        why = "missing host";
        return false;
    }
    host = h;
    port = v;
    return true;
}

bool parse_host_port(const std::string &text, std::string &host, int &port) {
    std::string why;
    return parse_host_port(text, HostPortForm::Address, host, port, why);
}

bool parse_conn_url(const std::string &url, std::string &host, int &port) {
    std::string rest;
    for (const char *scheme : {"postgres://", "postgresql://", "http://", "https://"}) {
        if (url.rfind(scheme, 0) == 0) {
            rest = url.substr(std::char_traits<char>::length(scheme));
            break;
        }
    }
    if (rest.empty()) return false;
    auto at = rest.find('@');
    if (at != std::string::npos) rest = rest.substr(at + 1);
    auto slash = rest.find('/');
    if (slash != std::string::npos) rest = rest.substr(0, slash);
    return parse_host_port(rest, host, port);
}

std::string Member::host() const {
    std::string h;
    int p = 0;
    return parse_conn_url(conn_url, h, p) ? h : std::string();
}

int Member::port() const {
    std::string h;
    int p = 0;
    return parse_conn_url(conn_url, h, p) ? p : 0;
}

Lsn Member::position() const {
    Lsn best = xlog_location;
    if (receive_lsn) best = std::max(best, *receive_lsn);
    if (replay_lsn) best = std::max(best, *replay_lsn);
    return best;
}

std::string Member::api_endpoint(const std::string &path) const {
    auto scheme = api_url.find("://");
    if (scheme == std::string::npos) return "";
    auto slash = api_url.find('/', scheme + 3);
    return (slash == std::string::npos ? api_url : api_url.substr(0, slash)) + path;
}

const Member *ClusterView::member(const std::string &name) const {
    for (const auto &m : members)
        if (m.name == name) return &m;
    return nullptr;
}

const Member *ClusterView::leader_member() const { return leader ? member(*leader) : nullptr; }

Lsn ClusterView::position_of(const Member &m) const {
    Lsn pos = m.position();
    if (leader && *leader == m.name) return std::max(pos, status_optime);
    if (auto it = status_slots.find(slot_name_for_member(m.name)); it != status_slots.end()) pos = std::max(pos, it->second);
    return pos;
}

const Member *ClusterView::clone_member(const std::string &self) const {
    const Member *best = nullptr;
    for (const Member &m : members)
        if (m.tags.clonefrom && m.state == "running" && m.name != self && !m.conn_url.empty() &&
            (!best || m.name < best->name))
            best = &m;
    return best ? best : leader_member();
}

const char *to_string(PgState s) {
    switch (s) {
        case PgState::Stopped: return "stopped";
        case PgState::Starting: return "starting";
        case PgState::Running: return "running";
        case PgState::Crashed: return "crashed";
    }
    return "unknown";
}

}  // namespace pgha
