#include "core/settings_file.hpp"

#include <dirent.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>

namespace pgha {

// The rules of PostgreSQL's configuration-file scanner (guc-file.l), so that
// pg_hactl reads exactly the values the server reads from the same file:
//   name [=] value [# comment]     one setting a line, later ones win
//   name:  letters, digits, '_', qualified with '.' (case-insensitive)
//   value: 'quoted' ('' or \' for a quote; \b \f \n \r \t, \ooo octal, any
//          other \c is c), or one unquoted token (an identifier, a path-like
//          word starting with a letter, or a number with a unit); anything
//          else after the value is a syntax error
//   include 'file', include_if_exists 'file', include_dir 'dir' (relative to
//          the including file's directory; *.conf in name order, no dot
//          files; nesting at most 10 deep)
namespace {

bool letter(unsigned char c) { return std::isalpha(c) || c == '_' || c >= 0x80; }
bool digit(unsigned char c) { return c >= '0' && c <= '9'; }

std::string lineref(const std::string &file, int lineno) {
    return (file.empty() ? std::string("line ") : file + ":") + std::to_string(lineno);
}

struct Parser {
    SettingsFile &out;
    int depth = 0;

    void error(const std::string &where, const std::string &what) { out.errors.push_back(where + ": " + what); }

    // Quoted value from line[p] == '\''; p ends after the closing quote.
    bool quoted(const std::string &line, std::size_t &p, std::string &value) {
        ++p;
        while (p < line.size()) {
            const char c = line[p];
            if (c == '\'') {
                if (p + 1 < line.size() && line[p + 1] == '\'') {
                    value += '\'';
                    p += 2;
                    continue;
                }
                ++p;
                return true;
            }
            if (c == '\\' && p + 1 < line.size()) {
                const char e = line[p + 1];
                p += 2;
                switch (e) {
                    case 'b': value += '\b'; break;
                    case 'f': value += '\f'; break;
                    case 'n': value += '\n'; break;
                    case 'r': value += '\r'; break;
                    case 't': value += '\t'; break;
                    default:
                        if (e >= '0' && e <= '7') {
                            int v = e - '0';
                            for (int k = 0; k < 2 && p < line.size() && line[p] >= '0' && line[p] <= '7'; ++k)
                                v = v * 8 + (line[p++] - '0');
                            value += static_cast<char>(v & 0xff);
                        } else {
                            value += e;
                        }
                }
                continue;
            }
            value += c;
            ++p;
        }
        return false;
    }

    // One unquoted token: an identifier or path-like word starting with a
    // letter, or a number (sign, digits, '.', exponent, unit letters).
    bool unquoted(const std::string &line, std::size_t &p, std::string &value) {
        const std::size_t start = p;
        const unsigned char c = static_cast<unsigned char>(line[p]);
        if (letter(c)) {
            while (p < line.size()) {
                const unsigned char d = static_cast<unsigned char>(line[p]);
                if (!(letter(d) || digit(d) || d == '-' || d == '.' || d == ':' || d == '/')) break;
                ++p;
            }
        } else if (digit(c) || c == '-' || c == '+' || c == '.') {
            ++p;
            while (p < line.size()) {
                const unsigned char d = static_cast<unsigned char>(line[p]);
                if (!(std::isalnum(d) || d == '.' || ((d == '-' || d == '+') && std::tolower(line[p - 1]) == 'e')))
                    break;
                ++p;
            }
        } else {
            return false;
        }
        value = line.substr(start, p - start);
        return true;
    }

    void include(const std::string &dir, const std::string &key, const std::string &arg, const std::string &where) {
        if (arg.empty()) return error(where, key + " needs a file name");
        const std::string path = arg[0] == '/' ? arg : dir + "/" + arg;
        if (key == "include_dir") {
            DIR *d = ::opendir(path.c_str());
            if (!d) return error(where, "cannot open configuration directory \"" + path + "\"");
            std::vector<std::string> names;
            while (dirent *e = ::readdir(d)) {
                const std::string n = e->d_name;
                if (n.empty() || n[0] == '.' || n.size() < 6 || n.compare(n.size() - 5, 5, ".conf") != 0) continue;
                names.push_back(n);
            }
            ::closedir(d);
            std::sort(names.begin(), names.end());
            for (const auto &n : names) file(path + "/" + n, false, where);
            return;
        }
        file(path, key == "include_if_exists", where);
    }

    void file(const std::string &path, bool missing_ok, const std::string &where) {
        if (depth >= 10) return error(where, "configuration files nested more than 10 deep at \"" + path + "\"");
        std::ifstream f(path);
        if (!f) {
            if (!missing_ok) error(where, "cannot read configuration file \"" + path + "\"");
            return;
        }
        std::stringstream ss;
        ss << f.rdbuf();
        const auto slash = path.rfind('/');
        ++depth;
        text(ss.str(), path, slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash)));
        --depth;
    }

    void text(const std::string &t, const std::string &file_name, const std::string &dir) {
        std::istringstream in(t);
        std::string line;
        int lineno = 0;
        while (std::getline(in, line)) {
            ++lineno;
            if (!line.empty() && line.back() == '\r') line.pop_back();
            const std::string where = lineref(file_name, lineno);
            std::size_t i = 0;
            auto skip_space = [&line](std::size_t &p) {
                while (p < line.size() && std::isspace(static_cast<unsigned char>(line[p]))) ++p;
            };
            skip_space(i);
            if (i == line.size() || line[i] == '#') continue;
            std::size_t k = i;
            if (letter(static_cast<unsigned char>(line[k]))) {
                while (k < line.size()) {
                    const unsigned char c = static_cast<unsigned char>(line[k]);
                    if (!(letter(c) || digit(c) || c == '.')) break;
                    ++k;
                }
            }
            std::string key = line.substr(i, k - i);
            if (key.empty() || key.back() == '.') {
                error(where, "syntax error: expected a setting name");
                continue;
            }
            for (auto &c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            std::size_t p = k;
            skip_space(p);
            if (p < line.size() && line[p] == '=') {
                ++p;
                skip_space(p);
            }
            std::string value;
            bool ok;
            if (p < line.size() && line[p] == '\'') {
                ok = quoted(line, p, value);
                if (!ok) {
                    error(where, "unterminated quoted string for " + key);
                    continue;
                }
            } else {
                ok = p < line.size() && unquoted(line, p, value);
                if (!ok) {
                    error(where, "syntax error: " + key + " has no value (quote values with spaces or symbols)");
                    continue;
                }
            }
            skip_space(p);
            if (p < line.size() && line[p] != '#') {
                error(where, "syntax error after the value of " + key + " (quote values with spaces or symbols)");
                continue;
            }
            if (key == "include" || key == "include_if_exists" || key == "include_dir") {
                include(dir, key, value, where);
                continue;
            }
            out.values[key] = value;
        }
    }
};

}  // namespace

SettingsFile parse_settings(const std::string &text) {
    SettingsFile out;
    Parser p{out};
    p.text(text, "", ".");
    return out;
}

bool load_settings_file(const std::string &path, SettingsFile &out, std::string &error) {
    std::ifstream f(path);
    if (!f) {
        error = "cannot read settings file \"" + path + "\"";
        return false;
    }
    out = SettingsFile{};
    Parser p{out};
    p.file(path, false, path);
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
