// cli/render: pg_hactl's YAML (yaml-cpp) reads back as the same JSON, in the
// layout the operator tests read (show-config, edit-config's diff).
#include <gtest/gtest.h>

#include <yaml-cpp/yaml.h>

#include "cli/render.hpp"

using namespace pgha::cli;
using nlohmann::json;

namespace {

// YAML back to JSON, scalars typed the way YAML 1.1 core readers (PyYAML) do.
json from_yaml(const YAML::Node &n) {
    if (n.IsMap()) {
        json o = json::object();
        for (const auto &kv : n) o[kv.first.as<std::string>()] = from_yaml(kv.second);
        return o;
    }
    if (n.IsSequence()) {
        json a = json::array();
        for (const auto &e : n) a.push_back(from_yaml(e));
        return a;
    }
    if (n.IsNull()) return nullptr;
    const std::string s = n.Scalar();
    if (n.Tag() == "!") return s;  // quoted: a string
    if (s == "true") return true;
    if (s == "false") return false;
    json num = json::parse(s, nullptr, false);
    if (!num.is_discarded() && num.is_number()) return num;
    return s;
}

}  // namespace

TEST(Render, YamlLayoutAsPatronictl) {
    json cfg = {{"ttl", 30},
                {"loop_wait", 10},
                {"pause", true},
                {"postgresql", {{"parameters", {{"work_mem", "8MB"}, {"max_connections", 100}}}, {"use_slots", false}}},
                {"tags", json::array({"a", "b"})}, {"none", json::array()},
                {"empty", json::object()}};
    const std::string y = to_yaml(cfg);
    EXPECT_NE(y.find("ttl: 30\n"), std::string::npos) << y;
    EXPECT_NE(y.find("loop_wait: 10\n"), std::string::npos) << y;
    EXPECT_NE(y.find("pause: true\n"), std::string::npos) << y;
    EXPECT_NE(y.find("postgresql:\n  parameters:\n    max_connections: 100\n    work_mem: 8MB\n  use_slots: false\n"),
              std::string::npos)
        << y;
    EXPECT_NE(y.find("tags:\n  - a\n  - b\n"), std::string::npos) << y;
    EXPECT_NE(y.find("empty: {}\n"), std::string::npos) << y;
    EXPECT_NE(y.find("none: []\n"), std::string::npos) << y;
    EXPECT_LT(y.find("empty:"), y.find("loop_wait:"));  // keys sorted
    EXPECT_EQ(y.back(), '\n');
}

TEST(Render, YamlReadsBackAsTheSameJson) {
    json cfg = {{"s_num", "123"},     {"s_bool", "true"},  {"s_on", "on"},       {"s_null", "null"},
                {"s_empty", ""},      {"s_space", " x "},  {"s_colon", "a: b"},  {"s_hash", "x #y"},
                {"s_quote", "it's"},  {"s_dq", "say \"hi\""}, {"num", 1.5},      {"big", 9007199254740993LL},
                {"neg", -3},          {"nil", nullptr},    {"t", false},         {"nested", {{"k", json::array({1, "2", nullptr})}}}};
    const std::string y = to_yaml(cfg);
    const json back = from_yaml(YAML::Load(y));
    EXPECT_EQ(back, cfg) << y;
}

TEST(Render, LineDiff) {
    EXPECT_EQ(line_diff("a\nb\nc\n", "a\nc\nd\n"), "  a\n- b\n  c\n+ d\n");
    EXPECT_EQ(line_diff("", "x\n"), "+ x\n");
    EXPECT_EQ(line_diff("x\n", "x\n"), "  x\n");
}
