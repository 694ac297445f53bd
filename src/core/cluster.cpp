#include "core/cluster.hpp"

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

bool parse_host_port(const std::string &text, std::string &host, int &port) {
    std::string h, p;
    if (!text.empty() && text[0] == '[') {
        auto close = text.find(']');
        if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') return false;
        h = text.substr(1, close - 1);
        p = text.substr(close + 2);
    } else {
        auto colon = text.rfind(':');
        if (colon == std::string::npos) return false;
        h = text.substr(0, colon);
        p = text.substr(colon + 1);
    }
    if (h.empty() || p.empty() || p.size() > 5) return false;
    for (char c : p)
        if (c < '0' || c > '9') return false;
    int v = std::stoi(p);
    if (v < 1 || v > 65535) return false;
    host = h;
    port = v;
    return true;
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

const Member *ClusterView::member(const std::string &name) const {
    for (const auto &m : members)
        if (m.name == name) return &m;
    return nullptr;
}

const Member *ClusterView::leader_member() const { return leader ? member(*leader) : nullptr; }

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
