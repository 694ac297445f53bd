#include "core/conninfo.hpp"

#include <cctype>
#include <cstdlib>

namespace pgha {

namespace {

bool is_space(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// libpq's conninfo_uri_decode: %XX escapes; a bad escape is an error.
bool uri_decode(const std::string &in, std::string &out, std::string &error) {
    out.clear();
    for (std::size_t i = 0; i < in.size(); ++i) {
        if (in[i] != '%') {
            out += in[i];
            continue;
        }
        const int hi = i + 1 < in.size() ? hex_value(in[i + 1]) : -1;
        const int lo = i + 2 < in.size() ? hex_value(in[i + 2]) : -1;
        if (hi < 0 || lo < 0) {
            error = "invalid percent-encoded token: \"" + in + "\"";
            return false;
        }
        const char c = static_cast<char>(hi * 16 + lo);
        if (c == '\0') {
            error = "forbidden value %00 in percent-encoded value: \"" + in + "\"";
            return false;
        }
        out += c;
        i += 2;
    }
    return true;
}

void set_value(ConninfoPairs &out, const std::string &key, const std::string &value) {
    for (auto &kv : out)
        if (kv.first == key) {
            kv.second = value;
            return;
        }
    out.emplace_back(key, value);
}

// postgresql://[user[:password]@][netloc][,...][/dbname][?param1=value1&...]
bool parse_uri(const std::string &uri, std::size_t prefix, ConninfoPairs &out, std::string &error) {
    std::string rest = uri.substr(prefix);
    std::string query;
    if (auto q = rest.find('?'); q != std::string::npos) {
        query = rest.substr(q + 1);
        rest.resize(q);
    }
    std::string db;
    bool has_db = false;
    if (auto slash = rest.find('/'); slash != std::string::npos) {
        db = rest.substr(slash + 1);
        has_db = true;
        rest.resize(slash);
    }
    if (auto at = rest.rfind('@'); at != std::string::npos) {
        const std::string userinfo = rest.substr(0, at);
        rest = rest.substr(at + 1);
        const auto colon = userinfo.find(':');
        std::string v;
        if (!uri_decode(userinfo.substr(0, colon), v, error)) return false;
        if (!v.empty()) set_value(out, "user", v);
        if (colon != std::string::npos) {
            if (!uri_decode(userinfo.substr(colon + 1), v, error)) return false;
            if (!v.empty()) set_value(out, "password", v);
        }
    }
    // Hosts: comma-separated host[:port], IPv6 in brackets. libpq joins them
    // with commas into one host and one port value.
    std::string hosts, ports;
    bool any_host = false, any_port = false;
    std::size_t start = 0;
    bool first = true;
    while (start <= rest.size()) {
        std::size_t end = start;
        std::string host, port;
        if (end < rest.size() && rest[end] == '[') {
            const auto close = rest.find(']', end);
            if (close == std::string::npos) {
                error = "end of string reached when looking for matching \"]\" in IPv6 host address in URI: \"" + uri + "\"";
                return false;
            }
            if (close == end + 1) {
                error = "IPv6 host address may not be empty in URI: \"" + uri + "\"";
                return false;
            }
            host = rest.substr(end + 1, close - end - 1);
            end = close + 1;
            if (end < rest.size() && rest[end] != ':' && rest[end] != ',') {
                error = "unexpected character \"" + std::string(1, rest[end]) + "\" at position " +
                        std::to_string(prefix + end + 1) + " in URI (expected \":\" or \"/\"): \"" + uri + "\"";
                return false;
            }
        } else {
            while (end < rest.size() && rest[end] != ':' && rest[end] != ',') ++end;
            if (!uri_decode(rest.substr(start, end - start), host, error)) return false;
        }
        if (end < rest.size() && rest[end] == ':') {
            const std::size_t p = end + 1;
            end = p;
            while (end < rest.size() && rest[end] != ',') ++end;
            if (!uri_decode(rest.substr(p, end - p), port, error)) return false;
        }
        any_host = any_host || !host.empty();
        any_port = any_port || !port.empty();
        hosts += (first ? "" : ",") + host;
        ports += (first ? "" : ",") + port;
        first = false;
        if (end >= rest.size()) break;
        start = end + 1;  // past ','
    }
    if (any_host) set_value(out, "host", hosts);
    if (any_port) set_value(out, "port", ports);
    if (has_db) {
        std::string v;
        if (!uri_decode(db, v, error)) return false;
        if (!v.empty()) set_value(out, "dbname", v);
    }
    std::size_t qs = 0;
    while (qs < query.size()) {
        std::size_t amp = query.find('&', qs);
        if (amp == std::string::npos) amp = query.size();
        const std::string item = query.substr(qs, amp - qs);
        const auto eq = item.find('=');
        if (eq == std::string::npos || item.find('=', eq + 1) != std::string::npos) {
            error = (eq == std::string::npos ? "missing key/value separator \"=\" in URI query parameter: \""
                                             : "extra key/value separator \"=\" in URI query parameter: \"") +
                    item + "\"";
            return false;
        }
        std::string k, v;
        if (!uri_decode(item.substr(0, eq), k, error) || !uri_decode(item.substr(eq + 1), v, error)) return false;
        if (k == "ssl" && v == "true") {
            k = "sslmode";
            v = "require";
        }
        set_value(out, k, v);
        qs = amp + 1;
    }
    return true;
}

}  // namespace

std::string conninfo_quote(const std::string &value) {
    std::string out = "'";
    for (char c : value) {
        if (c == '\\' || c == '\'') out += '\\';
        out += c;
    }
    return out + "'";
}

std::string build_conninfo(const ConninfoPairs &kv) {
    std::string out;
    for (const auto &[k, v] : kv) {
        if (v.empty()) continue;
        if (!out.empty()) out += ' ';
        out += k + "=" + conninfo_quote(v);
    }
    return out;
}

bool parse_conninfo(const std::string &s, ConninfoPairs &out, std::string &error) {
    out.clear();
    error.clear();
    for (const char *scheme : {"postgresql://", "postgres://"}) {
        const std::string p(scheme);
        if (s.compare(0, p.size(), p) == 0) return parse_uri(s, p.size(), out, error);
    }
    // libpq's conninfo_parse (fe-connect.c), step by step.
    std::size_t i = 0;
    const std::size_t n = s.size();
    while (i < n) {
        if (is_space(s[i])) {
            ++i;
            continue;
        }
        std::string key;
        while (i < n && s[i] != '=' && !is_space(s[i])) key += s[i++];
        while (i < n && is_space(s[i])) ++i;
        if (i >= n || s[i] != '=') {
            error = "missing \"=\" after \"" + key + "\" in connection info string";
            return false;
        }
        ++i;  // '='
        while (i < n && is_space(s[i])) ++i;
        std::string value;
        if (i < n && s[i] == '\'') {
            ++i;
            for (;;) {
                if (i >= n) {
                    error = "unterminated quoted string in connection info string";
                    return false;
                }
                if (s[i] == '\\') {
                    ++i;
                    if (i < n) value += s[i++];
                    continue;
                }
                if (s[i] == '\'') {
                    ++i;
                    break;
                }
                value += s[i++];
            }
        } else {
            while (i < n && !is_space(s[i])) {
                if (s[i] == '\\') {
                    ++i;
                    if (i < n) value += s[i++];
                } else {
                    value += s[i++];
                }
            }
        }
        set_value(out, key, value);
    }
    return true;
}

void parse_conninfo_host_port(const std::string &conninfo, std::string &host, int &port) {
    host.clear();
    port = 0;
    if (conninfo.empty()) return;
    ConninfoPairs kv;
    std::string error;
    if (!parse_conninfo(conninfo, kv, error)) return;
    std::string hostaddr, port_text;
    for (const auto &[k, v] : kv) {
        if (k == "host") host = v;
        else if (k == "hostaddr") hostaddr = v;
        else if (k == "port") port_text = v;
    }
    if (host.empty()) host = hostaddr;
    port = std::atoi(port_text.c_str());  // "5433,5434" -> 5433, as before
    if (port == 0) port = 5432;
}

std::string replication_conninfo(const std::string &user, const std::string &password, const std::string &host,
                                 int port, const std::string &member_name) {
    return build_conninfo({{"user", user},
                           {"password", password},
                           {"host", host},
                           {"port", std::to_string(port)},
                           {"dbname", "postgres"},
                           {"application_name", member_name},
                           {"sslmode", "prefer"},
                           {"connect_timeout", "5"}});
}

}  // namespace pgha
