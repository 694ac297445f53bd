#include "core/settings_file.hpp"

#include <cctype>
#include <fstream>
#include <sstream>

namespace pgha {

namespace {
std::string trim(const std::string &s) {
    std::size_t a = 0, b = s.size();
    while (a < b && std::isspace(static_cast<unsigned char>(s[a]))) ++a;
    while (b > a && std::isspace(static_cast<unsigned char>(s[b - 1]))) --b;
    return s.substr(a, b - a);
}
}  // namespace

SettingsFile parse_settings(const std::string &text) {
    SettingsFile out;
    std::istringstream in(text);
    std::string line;
    int lineno = 0;
    while (std::getline(in, line)) {
        ++lineno;
        std::size_t i = 0;
        while (i < line.size() && std::isspace(static_cast<unsigned char>(line[i]))) ++i;
        if (i == line.size() || line[i] == '#') continue;
        std::size_t k = i;
        while (k < line.size() && (std::isalnum(static_cast<unsigned char>(line[k])) || line[k] == '_' || line[k] == '.')) ++k;
        std::string key = line.substr(i, k - i);
        if (key.empty()) {
            out.errors.push_back("line " + std::to_string(lineno) + ": expected a setting name");
            continue;
        }
        for (auto &c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        std::size_t p = k;
        while (p < line.size() && std::isspace(static_cast<unsigned char>(line[p]))) ++p;
        if (p < line.size() && line[p] == '=') ++p;
        while (p < line.size() && std::isspace(static_cast<unsigned char>(line[p]))) ++p;
        std::string value;
        if (p < line.size() && line[p] == '\'') {
            ++p;
            bool closed = false;
            while (p < line.size()) {
                if (line[p] == '\'') {
                    if (p + 1 < line.size() && line[p + 1] == '\'') {
                        value += '\'';
                        p += 2;
                        continue;
                    }
                    closed = true;
                    ++p;
                    break;
                }
                if (line[p] == '\\' && p + 1 < line.size()) ++p;
                value += line[p++];
            }
            if (!closed) {
                out.errors.push_back("line " + std::to_string(lineno) + ": unterminated quoted value for " + key);
                continue;
            }
        } else {
            std::size_t e = line.find('#', p);
            value = trim(line.substr(p, e == std::string::npos ? std::string::npos : e - p));
        }
        out.values[key] = value;
    }
    return out;
}

bool load_settings_file(const std::string &path, SettingsFile &out, std::string &error) {
    std::ifstream f(path);
    if (!f) {
        error = "cannot read settings file \"" + path + "\"";
        return false;
    }
    std::stringstream ss;
    ss << f.rdbuf();
    out = parse_settings(ss.str());
    return true;
}

std::string SettingsFile::get(const std::string &key, const std::string &dflt) const {
    auto it = values.find(key);
    return it == values.end() ? dflt : it->second;
}

bool SettingsFile::get_bool(const std::string &key, bool dflt) const {
    auto it = values.find(key);
    if (it == values.end()) return dflt;
    const std::string &v = it->second;
    if (v == "on" || v == "true" || v == "yes" || v == "1") return true;
    if (v == "off" || v == "false" || v == "no" || v == "0") return false;
    return dflt;
}

int SettingsFile::get_int(const std::string &key, int dflt) const {
    auto it = values.find(key);
    if (it == values.end()) return dflt;
    try {
        return std::stoi(it->second);
    } catch (const std::exception &) {
        return dflt;
    }
}

}  // namespace pgha
