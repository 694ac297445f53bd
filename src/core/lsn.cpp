#include "core/lsn.hpp"

#include <cctype>
#include <cstdio>

namespace pgha {

std::string format_lsn(Lsn lsn) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%X/%X", static_cast<unsigned>(lsn >> 32),
                  static_cast<unsigned>(lsn & 0xffffffffu));
    return buf;
}

static std::optional<std::uint64_t> parse_hex32(const std::string &s) {
    if (s.empty() || s.size() > 8) return std::nullopt;
    std::uint64_t v = 0;
    for (char c : s) {
        int d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return std::nullopt;
        v = v * 16 + static_cast<std::uint64_t>(d);
    }
    return v;
}

std::optional<Lsn> parse_lsn(const std::string &text) {
    auto slash = text.find('/');
    if (slash == std::string::npos) return std::nullopt;
    auto hi = parse_hex32(text.substr(0, slash));
    auto lo = parse_hex32(text.substr(slash + 1));
    if (!hi || !lo) return std::nullopt;
    return (*hi << 32) | *lo;
}

std::optional<std::int64_t> parse_size_bytes(const std::string &text) {
    std::size_t i = 0;
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    std::size_t start = i;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
    if (i == start || i - start > 18) return std::nullopt;
    std::int64_t value = std::stoll(text.substr(start, i - start));
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    std::string unit = text.substr(i);
    while (!unit.empty() && std::isspace(static_cast<unsigned char>(unit.back()))) unit.pop_back();
    std::int64_t mult;
    if (unit.empty() || unit == "B") mult = 1;
    else if (unit == "kB" || unit == "KB") mult = 1024;
    else if (unit == "MB") mult = 1024LL * 1024;
    else if (unit == "GB") mult = 1024LL * 1024 * 1024;
    else if (unit == "TB") mult = 1024LL * 1024 * 1024 * 1024;
    else return std::nullopt;
    if (value > INT64_MAX / mult) return std::nullopt;
    return value * mult;
}

}  // namespace pgha
