#include "core/server_conf.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

namespace pgha {

std::string conf_quote(const std::string &s) {
    std::string out = "'";
    for (char c : s) {
        if (c == '\'') out += "''";
        else if (c == '\\') out += "\\\\";
        else out += c;
    }
    return out + "'";
}

namespace {

bool name_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.'; }

// One `name [=] value [# comment]` line; false for blank/comment/include lines.
bool parse_line(const std::string &line, std::string &name, std::string &value) {
    std::size_t i = 0;
    auto skip_ws = [&] {
        while (i < line.size() && std::isspace(static_cast<unsigned char>(line[i]))) ++i;
    };
    skip_ws();
    const std::size_t start = i;
    while (i < line.size() && name_char(line[i])) ++i;
    if (i == start) return false;
    name = line.substr(start, i - start);
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    if (name == "include" || name == "include_if_exists" || name == "include_dir") return false;
    skip_ws();
    if (i < line.size() && line[i] == '=') ++i;
    skip_ws();
    value.clear();
    if (i < line.size() && line[i] == '\'') {
        for (++i; i < line.size(); ++i) {
            if (line[i] == '\'') {
                if (i + 1 < line.size() && line[i + 1] == '\'') {
                    value += '\'';
                    ++i;
                } else
                    return true;
            } else if (line[i] == '\\' && i + 1 < line.size()) {
                value += line[++i];
            } else
                value += line[i];
        }
        return false;  // unterminated
    }
    const std::size_t vstart = i;
    while (i < line.size() && !std::isspace(static_cast<unsigned char>(line[i])) && line[i] != '#') ++i;
    value = line.substr(vstart, i - vstart);
    return true;
}

}  // namespace

ConfParams parse_conf(const std::string &text) {
    ConfParams out;
    std::istringstream in(text);
    std::string line, name, value;
    while (std::getline(in, line))
        if (parse_line(line, name, value)) out.emplace_back(name, value);
    return out;
}

ConfParams merge_conf(ConfParams current, const ConfParams &params) {
    for (const auto &kv : params) {
        // (no structured binding: C++17 lambdas cannot capture one; clang refuses)
        const std::string &k = kv.first;
        auto it = std::find_if(current.begin(), current.end(), [&](const auto &p) { return p.first == k; });
        if (it != current.end()) it->second = kv.second;
        else current.emplace_back(k, kv.second);
    }
    // A name repeated in a hand-edited file: keep its last value only.
    ConfParams unique;
    for (auto it = current.rbegin(); it != current.rend(); ++it)
        if (std::none_of(unique.begin(), unique.end(), [&](const auto &p) { return p.first == it->first; }))
            unique.insert(unique.begin(), *it);
    return unique;
}

std::string render_server_conf(const ConfParams &params) {
    std::string out =
        "# Written by pg_ha (server parameters it manages; included from postgresql.conf).\n"
        "# Do not edit: pg_ha rewrites this file.\n";
    for (const auto &[k, v] : params) out += k + " = " + conf_quote(v) + "\n";
    return out;
}

std::string strip_conf_keys(const std::string &text, const std::vector<std::string> &names, ConfParams &removed) {
    std::istringstream in(text);
    std::string line, out, name, value;
    while (std::getline(in, line)) {
        if (parse_line(line, name, value) && std::find(names.begin(), names.end(), name) != names.end()) {
            removed = merge_conf(std::move(removed), {{name, value}});
            continue;
        }
        out += line + "\n";
    }
    return out;
}

bool read_text_file(const std::string &path, std::string &text) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return false;
    std::ostringstream ss;
    ss << in.rdbuf();
    text = ss.str();
    return true;
}

bool write_file_atomic(const std::string &path, const std::string &text, unsigned mode, std::string &error) {
    const std::string tmp = path + ".tmp";
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, static_cast<mode_t>(mode));
    if (fd < 0) {
        error = "cannot create " + tmp + ": " + std::strerror(errno);
        return false;
    }
    bool ok = ::fchmod(fd, static_cast<mode_t>(mode)) == 0;
    std::size_t done = 0;
    while (ok && done < text.size()) {
        const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) ok = false;
        else done += static_cast<std::size_t>(n);
    }
    ok = ok && ::fsync(fd) == 0;
    const int saved = errno;
    ::close(fd);
    if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
        error = "cannot write " + path + ": " + std::strerror(ok ? errno : saved);
        ::unlink(tmp.c_str());
        return false;
    }
    const auto slash = path.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
    if (const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
        ::fsync(dfd);
        ::close(dfd);
    }
    return true;
}

bool update_server_conf(const std::string &data_dir, const ConfParams &params, std::string &error) {
    const std::string path = data_dir + "/" + kServerConfFile;
    std::string text;
    ConfParams current;
    struct stat st;
    if (::stat(path.c_str(), &st) == 0) {
        if (!read_text_file(path, text)) {
            error = "cannot read " + path;
            return false;
        }
        current = parse_conf(text);
    }
    return write_file_atomic(path, render_server_conf(merge_conf(std::move(current), params)), 0600, error);
}

bool remove_other_server_conf_keys(const std::string &data_dir, const std::vector<std::string> &keep,
                                   std::vector<std::string> &removed, std::string &error) {
    removed.clear();
    const std::string path = data_dir + "/" + kServerConfFile;
    std::string text;
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) return true;  // nothing written yet
    if (!read_text_file(path, text)) {
        error = "cannot read " + path;
        return false;
    }
    ConfParams left;
    for (const auto &kv : parse_conf(text)) {
        const bool own = std::find(std::begin(kServerConfKeys), std::end(kServerConfKeys), kv.first) !=
                         std::end(kServerConfKeys);
        if (own || std::find(keep.begin(), keep.end(), kv.first) != keep.end()) left.push_back(kv);
        else removed.push_back(kv.first);
    }
    if (removed.empty()) return true;
    return write_file_atomic(path, render_server_conf(left), 0600, error);
}

}  // namespace pgha
