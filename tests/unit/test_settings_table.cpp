// README.md's settings table and contrib/systemd/pg_ha.conf.example against
// src/core/settings.def (through setting_rows() and NodeSettings::from_map).
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "core/node_settings.hpp"
#include "core/settings_file.hpp"

using namespace pgha;

namespace {

std::string read_file(const std::string &path) {
    std::ifstream f(path);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

std::string trim(const std::string &s) {
    const auto b = s.find_first_not_of(" \t");
    if (b == std::string::npos) return "";
    return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

// "| `pg_ha.x` | default | meaning |" rows of the table headed "| GUC | default | meaning |":
// name (without pg_ha.) -> default cell without backquotes ("—" = empty).
std::map<std::string, std::string> readme_rows(const std::string &text, std::vector<std::string> &problems) {
    std::map<std::string, std::string> rows;
    std::istringstream in(text);
    std::string line;
    bool in_table = false;
    while (std::getline(in, line)) {
        if (!in_table) {
            in_table = line.rfind("| GUC | default | meaning |", 0) == 0;
            continue;
        }
        if (line.rfind("|---", 0) == 0) continue;
        if (line.empty() || line[0] != '|') break;
        std::vector<std::string> cells;
        std::size_t p = 1;
        for (int i = 0; i < 2; i++) {
            const std::size_t q = line.find('|', p);
            if (q == std::string::npos) break;
            cells.push_back(trim(line.substr(p, q - p)));
            p = q + 1;
        }
        const std::string prefix = "`pg_ha.";
        if (cells.size() != 2 || cells[0].rfind(prefix, 0) != 0 || cells[0].back() != '`' ||
            cells[0].find_first_of(" ,/", prefix.size()) != std::string::npos) {
            problems.push_back("not one `pg_ha.name` per row: " + line);
            continue;
        }
        const std::string name = cells[0].substr(prefix.size(), cells[0].size() - prefix.size() - 1);
        std::string dflt;
        for (char c : cells[1])
            if (c != '`') dflt += c;
        if (dflt == "—") dflt.clear();
        if (rows.count(name)) problems.push_back("twice: pg_ha." + name);
        rows[name] = dflt;
    }
    if (!in_table) problems.push_back("no table headed \"| GUC | default | meaning |\"");
    return rows;
}

}  // namespace

TEST(SettingsTable, ReadmeListsExactlyTheRowsWithTheirDefaults) {
    const std::string text = read_file(PGHA_README_PATH);
    ASSERT_FALSE(text.empty()) << PGHA_README_PATH;
    std::vector<std::string> problems;
    auto readme = readme_rows(text, problems);
    std::set<std::string> known;
    for (const auto &r : setting_rows()) {
        known.insert(r.name);
        auto it = readme.find(r.name);
        if (it == readme.end())
            problems.push_back("missing in README.md: pg_ha." + r.name);
        else if (it->second != r.default_text)
            problems.push_back("pg_ha." + r.name + ": README.md says default \"" + it->second +
                               "\", settings.def says \"" + r.default_text + "\"");
    }
    for (const auto &[name, dflt] : readme)
        if (!known.count(name)) problems.push_back("in README.md but not in settings.def: pg_ha." + name);
    std::string all;
    for (const auto &p : problems) all += p + "\n";
    EXPECT_TRUE(problems.empty()) << all;
}

TEST(SettingsTable, SystemdExampleUsesValidSettings) {
    SettingsFile f;
    std::string err;
    ASSERT_TRUE(load_settings_file(PGHA_CONF_EXAMPLE_PATH, f, err)) << err;
    EXPECT_TRUE(f.errors.empty());
    std::vector<std::string> errors;
    NodeSettings s = NodeSettings::from_map(f.values, errors);
    std::string all;
    for (const auto &e : errors) all += e + "\n";
    EXPECT_TRUE(errors.empty()) << all;
    EXPECT_FALSE(s.scope.empty());
    EXPECT_FALSE(s.node_name.empty());
}

// docker/entrypoint.sh maps PGHA_<NAME> to pg_ha.<name> from the installed list;
// its own defaults and docker-compose.yml's variables must name real settings.
TEST(SettingsTable, DockerVariablesNameSettings) {
    std::set<std::string> settings;
    for (const auto &r : setting_rows()) settings.insert(r.name);
    const std::string ep = read_file(PGHA_ENTRYPOINT_PATH);
    ASSERT_FALSE(ep.empty()) << PGHA_ENTRYPOINT_PATH;
    std::vector<std::string> problems;

    // the awk function entry_default(name): `if (name == "x") return ...`
    // lines and one `if (name ~ /^(a|b|c)$/) return ...`
    const auto b = ep.find("function entry_default(name) {");
    const auto e = ep.find("\n        }", b);
    ASSERT_NE(b, std::string::npos);
    ASSERT_NE(e, std::string::npos);
    std::istringstream body(ep.substr(b, e - b));
    std::string line;
    const std::regex one(R"re(name == "([a-z0-9_]+)")re");
    const std::regex alternatives(R"re(name ~ /\^\(([a-z0-9_|]+)\)\$/)re");
    int defaults = 0;
    while (std::getline(body, line)) {
        std::smatch m;
        std::vector<std::string> names;
        if (std::regex_search(line, m, one)) {
            names.push_back(m[1].str());
        } else if (std::regex_search(line, m, alternatives)) {
            std::istringstream alt(m[1].str());
            for (std::string n; std::getline(alt, n, '|');) names.push_back(n);
        }
        for (const auto &n : names) {
            defaults++;
            if (!settings.count(n)) problems.push_back("entrypoint.sh has a default for no setting: " + n);
        }
    }
    EXPECT_GE(defaults, 10);

    std::smatch m;
    ASSERT_TRUE(std::regex_search(ep, m, std::regex(R"re(entry_vars="([^"]*)")re"))) << "entry_vars";
    std::set<std::string> known;
    std::istringstream vars(m[1].str());
    for (std::string v; vars >> v;) known.insert(v);
    for (const auto &n : settings) {
        std::string v = "PGHA_";
        for (char c : n) v += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        if (known.count(v)) problems.push_back(v + " is both an entrypoint variable and a setting");
        known.insert(v);
    }

    const std::string compose = read_file(PGHA_COMPOSE_PATH);
    ASSERT_FALSE(compose.empty()) << PGHA_COMPOSE_PATH;
    const std::regex env_key(R"(^\s+(PGHA_[A-Z0-9_]+):)");
    std::istringstream cin(compose);
    int compose_vars = 0;
    while (std::getline(cin, line)) {
        if (!std::regex_search(line, m, env_key)) continue;
        compose_vars++;
        if (!known.count(m[1].str())) problems.push_back("docker-compose.yml sets " + m[1].str() + ", which nothing reads");
    }
    EXPECT_GE(compose_vars, 5);
    std::string all;
    for (const auto &p : problems) all += p + "\n";
    EXPECT_TRUE(problems.empty()) << all;
}
