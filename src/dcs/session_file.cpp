#include "dcs/session_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

namespace pgha {
namespace {

std::string hex(const std::string &bytes) {
    static const char *d = "0123456789abcdef";
    std::string out;
    for (unsigned char c : bytes) {
        out += d[c >> 4];
        out += d[c & 15];
    }
    return out;
}

bool unhex(const std::string &h, std::string &out) {
    out.clear();
    if (h.size() % 2) return false;
    const auto digit = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    for (std::size_t i = 0; i < h.size(); i += 2) {
        const int hi = digit(h[i]), lo = digit(h[i + 1]);
        if (hi < 0 || lo < 0) return false;
        out += static_cast<char>(hi * 16 + lo);
    }
    return true;
}

}  // namespace

std::string session_file_path(const std::string &data_dir) { return data_dir + "/pg_ha.zksession"; }

std::string session_id_hex(std::int64_t id) {
    char b[32];
    std::snprintf(b, sizeof b, "%llx", static_cast<unsigned long long>(id));
    return b;
}

bool read_session_file(const std::string &path, const std::string &member, ZkCredentials &c, int &timeout_ms) {
    std::ifstream in(path);
    std::string who, sid, pw;
    if (!(in >> who >> sid >> pw) || who != member) return false;
    int t = 0;
    if (in >> t && t > 0) timeout_ms = t;
    try {
        std::size_t pos = 0;
        c.session_id = static_cast<std::int64_t>(std::stoull(sid, &pos, 16));
        if (pos != sid.size()) return false;
    } catch (const std::exception &) {
        return false;
    }
    return unhex(pw, c.password) && c.valid();
}

bool write_session_file(const std::string &path, const std::string &member, const ZkCredentials &c, int timeout_ms) {
    const std::string tmp = path + ".tmp";
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) return false;
    const std::string line =
        member + " " + session_id_hex(c.session_id) + " " + hex(c.password) + " " + std::to_string(timeout_ms) + "\n";
    const bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()) && ::fsync(fd) == 0;
    ::close(fd);
    return ok && std::rename(tmp.c_str(), path.c_str()) == 0;
}

}  // namespace pgha
