// pg_hactl's text output. See render.hpp.
#include "cli/render.hpp"

#include <algorithm>
#include <set>
#include <sstream>
#include <vector>

#include <yaml-cpp/yaml.h>

namespace pgha::cli {

using nlohmann::json;

namespace {

// A string YAML would not read back as that string when written plain.
bool needs_quotes(const std::string &s) {
    if (s.empty()) return true;
    static const std::set<std::string> words = {"true", "false", "yes", "no", "on", "off", "null", "~", "y", "n",
                                                "True", "False", "Yes", "No", "On", "Off", "Null", "NULL",
                                                "TRUE", "FALSE", "YES", "NO", "ON", "OFF", "Y", "N"};
    if (words.count(s)) return true;
    const json as_json = json::parse(s, nullptr, false);
    if (!as_json.is_discarded() && as_json.is_number()) return true;
    if (s.front() == ' ' || s.back() == ' ') return true;
    return false;
}

void emit(YAML::Emitter &out, const json &v) {
    switch (v.type()) {
        case json::value_t::object:
            if (v.empty()) out << YAML::Flow;  // "{}" on the key's line
            out << YAML::BeginMap;
            for (auto it = v.begin(); it != v.end(); ++it) {  // nlohmann's object keeps keys sorted
                out << YAML::Key;
                if (needs_quotes(it.key())) out << YAML::DoubleQuoted;
                out << it.key() << YAML::Value;
                emit(out, it.value());
            }
            out << YAML::EndMap;
            return;
        case json::value_t::array:
            if (v.empty()) out << YAML::Flow;  // "[]"
            out << YAML::BeginSeq;
            for (const auto &e : v) emit(out, e);
            out << YAML::EndSeq;
            return;
        case json::value_t::string: {
            const std::string s = v.get<std::string>();
            if (needs_quotes(s)) out << YAML::DoubleQuoted;
            out << s;
            return;
        }
        case json::value_t::boolean:
            out << v.get<bool>();
            return;
        case json::value_t::null:
            out << YAML::Null;
            return;
        default:
            // Numbers as JSON writes them (shortest exact form); plain, not quoted.
            out << YAML::Auto << v.dump();
            return;
    }
}

std::vector<std::string> split_lines(const std::string &text) {
    std::vector<std::string> lines;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) lines.push_back(line);
    return lines;
}

}  // namespace

std::string to_yaml(const json &j) {
    YAML::Emitter out;
    out.SetIndent(2);
    out.SetNullFormat(YAML::LowerNull);
    out.SetBoolFormat(YAML::TrueFalseBool);
    out.SetBoolFormat(YAML::LowerCase);
    emit(out, j);
    std::string text = out.c_str();
    if (!text.empty() && text.back() != '\n') text += '\n';
    return text;
}

std::string line_diff(const std::string &before, const std::string &after) {
    const auto a = split_lines(before), b = split_lines(after);
    const std::size_t n = a.size(), m = b.size();
    std::vector<std::vector<std::size_t>> lcs(n + 1, std::vector<std::size_t>(m + 1, 0));
    for (std::size_t i = n; i-- > 0;)
        for (std::size_t k = m; k-- > 0;)
            lcs[i][k] = a[i] == b[k] ? lcs[i + 1][k + 1] + 1 : std::max(lcs[i + 1][k], lcs[i][k + 1]);
    std::string out;
    std::size_t i = 0, k = 0;
    while (i < n || k < m) {
        if (i < n && k < m && a[i] == b[k]) {
            out += "  " + a[i] + "\n";
            ++i;
            ++k;
        } else if (i < n && (k == m || lcs[i + 1][k] >= lcs[i][k + 1])) {
            out += "- " + a[i++] + "\n";
        } else {
            out += "+ " + b[k++] + "\n";
        }
    }
    return out;
}

}  // namespace pgha::cli
