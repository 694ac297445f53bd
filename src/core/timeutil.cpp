#include "core/timeutil.hpp"

#include <cctype>
#include <cstdio>
#include <ctime>

namespace pgha {

namespace {
bool digits(const std::string &s, std::size_t pos, std::size_t n, int &out) {
    if (pos + n > s.size()) return false;
    int v = 0;
    for (std::size_t i = pos; i < pos + n; ++i) {
        if (!std::isdigit(static_cast<unsigned char>(s[i]))) return false;
        v = v * 10 + (s[i] - '0');
    }
    out = v;
    return true;
}
}  // namespace

bool parse_iso8601(const std::string &t, std::int64_t &epoch_s, std::string &error) {
    error = "\"" + t.substr(0, 64) + "\" is not an ISO 8601 timestamp with a time zone (e.g. 2026-11-24T23:10:00+00:00)";
    int Y, M, D, h, m, s = 0;
    if (t.size() < 16 || !digits(t, 0, 4, Y) || t[4] != '-' || !digits(t, 5, 2, M) || t[7] != '-' ||
        !digits(t, 8, 2, D) || (t[10] != 'T' && t[10] != 't' && t[10] != ' ') || !digits(t, 11, 2, h) ||
        t[13] != ':' || !digits(t, 14, 2, m))
        return false;
    std::size_t p = 16;
    if (p < t.size() && t[p] == ':') {
        if (!digits(t, p + 1, 2, s)) return false;
        p += 3;
        if (p < t.size() && (t[p] == '.' || t[p] == ',')) {
            ++p;
            std::size_t start = p;
            while (p < t.size() && std::isdigit(static_cast<unsigned char>(t[p]))) ++p;
            if (p == start) return false;
        }
    }
    if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || s > 60) return false;
    int offset = 0;
    if (p < t.size() && (t[p] == 'Z' || t[p] == 'z')) {
        ++p;
    } else if (p < t.size() && (t[p] == '+' || t[p] == '-')) {
        int oh, om = 0;
        if (!digits(t, p + 1, 2, oh)) return false;
        std::size_t q = p + 3;
        if (q < t.size() && t[q] == ':') ++q;
        if (q < t.size()) {
            if (!digits(t, q, 2, om)) return false;
            q += 2;
        }
        if (oh > 23 || om > 59) return false;
        offset = (oh * 3600 + om * 60) * (t[p] == '-' ? -1 : 1);
        p = q;
    } else {
        return false;  // no zone
    }
    if (p != t.size()) return false;
    std::tm tm{};
    tm.tm_year = Y - 1900;
    tm.tm_mon = M - 1;
    tm.tm_mday = D;
    tm.tm_hour = h;
    tm.tm_min = m;
    tm.tm_sec = s;
    std::time_t e = timegm(&tm);
    std::tm back{};
    gmtime_r(&e, &back);
    if (back.tm_mday != D || back.tm_mon != M - 1) return false;  // 2026-02-31
    epoch_s = static_cast<std::int64_t>(e) - offset;
    error.clear();
    return true;
}

std::string format_iso8601(std::int64_t epoch_s) {
    std::time_t t = static_cast<std::time_t>(epoch_s);
    std::tm tm{};
    if (!gmtime_r(&t, &tm)) return "";
    // Not strftime's %Y: glibc writes year 999 as "999"; ISO 8601 needs 4 digits.
    char buf[64];
    std::snprintf(buf, sizeof buf, "%04lld-%02d-%02dT%02d:%02d:%02d+00:00", static_cast<long long>(tm.tm_year) + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    return buf;
}

std::string format_iso8601_now() { return format_iso8601(static_cast<std::int64_t>(std::time(nullptr))); }

}  // namespace pgha
