// Physical slot rules (core/slot_rules): creation for members, retention of a
// departed member's slot for member_slots_ttl, ignore_slots, permanent slots,
// standby slots moved forward; and their settings in the config key.
#include "core/no_postgres.hpp"

#include <gtest/gtest.h>

#include "core/dynamic_config.hpp"
#include "core/patroni_codec.hpp"
#include "core/slot_rules.hpp"

using namespace pgha;

namespace {

SlotRow phys(const std::string &name, bool active = false, Lsn restart = 100) {
    SlotRow s;
    s.name = name;
    s.type = "physical";
    s.active = active;
    s.restart_lsn = restart;
    return s;
}

SlotInputs leader_in(std::int64_t now) {
    SlotInputs in;
    in.leader = true;
    in.now_ms = now;
    in.ttl_ms = 60 * 1000;
    in.my_slot = "pg_1";
    in.member_slots = {{"pg_2", 500}, {"pg_3", 500}};
    return in;
}

bool has(const std::vector<std::string> &v, const std::string &s) {
    return std::find(v.begin(), v.end(), s) != v.end();
}

}  // namespace

TEST(SlotRules, LeaderCreatesMissingMemberSlotsOnly) {
    std::map<std::string, std::int64_t> seen;
    auto in = leader_in(1000);
    in.existing = {phys("pg_2")};
    const SlotPlan p = plan_slots(in, seen);
    EXPECT_EQ(p.create, (std::vector<std::string>{"pg_3"}));
    EXPECT_TRUE(p.drop.empty());
    EXPECT_TRUE(p.advance.empty());
    EXPECT_EQ(p.retain, (std::vector<std::string>{"pg_2", "pg_3"}));
}

TEST(SlotRules, DepartedMemberSlotKeptForTheTtlThenDropped) {
    std::map<std::string, std::int64_t> seen;
    auto in = leader_in(1000);
    in.existing = {phys("pg_2"), phys("pg_3")};
    plan_slots(in, seen);
    in.member_slots.erase("pg_3");  // pg-3 leaves
    for (std::int64_t t : {2000, 30000, 60999}) {
        in.now_ms = t;
        const SlotPlan p = plan_slots(in, seen);
        EXPECT_TRUE(p.drop.empty()) << t;
        EXPECT_TRUE(has(p.retain, "pg_3")) << t;
        EXPECT_TRUE(p.create.empty()) << "a departed member's slot is not re-created";
    }
    in.now_ms = 61000;  // ttl after it was last seen
    SlotPlan p = plan_slots(in, seen);
    EXPECT_EQ(p.drop, (std::vector<std::string>{"pg_3"}));
    EXPECT_FALSE(has(p.retain, "pg_3"));
    // once gone, it is forgotten
    in.existing = {phys("pg_2")};
    in.now_ms = 62000;
    p = plan_slots(in, seen);
    EXPECT_TRUE(p.drop.empty());
    EXPECT_EQ(seen.count("pg_3"), 0u);
}

TEST(SlotRules, ReturningMemberRestartsTheClock) {
    std::map<std::string, std::int64_t> seen;
    auto in = leader_in(1000);
    in.existing = {phys("pg_2"), phys("pg_3")};
    in.member_slots.erase("pg_3");
    plan_slots(in, seen);
    in.now_ms = 50000;
    in.member_slots["pg_3"] = 700;  // back
    plan_slots(in, seen);
    in.member_slots.erase("pg_3");  // leaves again
    in.now_ms = 100000;             // 50 s later: within the ttl
    EXPECT_TRUE(plan_slots(in, seen).drop.empty());
    in.now_ms = 110000;
    EXPECT_EQ(plan_slots(in, seen).drop, (std::vector<std::string>{"pg_3"}));
}

TEST(SlotRules, NeverDropsActiveLogicalTemporaryIgnoredPermanentOrMemberSlots) {
    std::map<std::string, std::int64_t> seen;
    auto in = leader_in(1000);
    SlotRow logical = phys("sub1");
    logical.type = "logical";
    logical.database = "app";
    logical.plugin = "pgoutput";
    SlotRow temp = phys("tmp");
    temp.temporary = true;
    in.existing = {phys("pg_2", false), phys("pg_3", false), phys("backup_rx", true), logical, temp,
                   phys("keep_me"), phys("perm"), phys("stray")};
    in.ignore = {IgnoreSlot{"keep_me", "physical", "", ""}};
    in.permanent = {"perm"};
    plan_slots(in, seen);
    in.now_ms = 1000 + 10 * 60 * 1000;
    const SlotPlan p = plan_slots(in, seen);
    EXPECT_EQ(p.drop, (std::vector<std::string>{"stray"})) << "only the unknown inactive physical slot goes";
}

TEST(SlotRules, UnknownSlotGetsTheTtlFromFirstSight) {
    std::map<std::string, std::int64_t> seen;
    auto in = leader_in(5000);
    in.existing = {phys("pg_2"), phys("pg_3"), phys("operator_slot")};
    EXPECT_TRUE(plan_slots(in, seen).drop.empty());
    in.now_ms = 64999;
    EXPECT_TRUE(plan_slots(in, seen).drop.empty());
    in.now_ms = 65000;
    EXPECT_EQ(plan_slots(in, seen).drop, (std::vector<std::string>{"operator_slot"}));
}

TEST(SlotRules, TtlZeroDropsAtOnce) {
    std::map<std::string, std::int64_t> seen;
    auto in = leader_in(1000);
    in.ttl_ms = 0;
    in.existing = {phys("pg_2"), phys("pg_3"), phys("pg_9")};
    EXPECT_EQ(plan_slots(in, seen).drop, (std::vector<std::string>{"pg_9"}));
}

TEST(SlotRules, NewLeaderKeepsWhatTheStatusKeyRetains) {
    std::map<std::string, std::int64_t> seen;  // a new leader remembers nothing
    auto in = leader_in(1000);
    in.existing = {phys("pg_2"), phys("pg_3"), phys("pg_4")};
    in.retain_from_status = {"pg_4"};
    SlotPlan p = plan_slots(in, seen);
    EXPECT_TRUE(p.drop.empty());
    EXPECT_TRUE(has(p.retain, "pg_4"));
    in.now_ms = 61000;
    p = plan_slots(in, seen);
    EXPECT_EQ(p.drop, (std::vector<std::string>{"pg_4"}));
}

TEST(SlotRules, StandbyKeepsMemberSlotsAndMovesThemForward) {
    std::map<std::string, std::int64_t> seen;
    SlotInputs in;
    in.leader = false;
    in.now_ms = 1000;
    in.my_slot = "pg_2";
    in.member_slots = {{"pg_1", 9000}, {"pg_3", 50}, {"pg_4", 70}};
    in.existing = {phys("pg_1", false, 4000), phys("pg_3", false, 100)};
    const SlotPlan p = plan_slots(in, seen);
    ASSERT_EQ(p.advance.size(), 1u) << "pg_3 reports less than its slot holds: left as is";
    EXPECT_EQ(p.advance[0], (std::pair<std::string, Lsn>{"pg_1", 9000}));
    EXPECT_EQ(p.create, (std::vector<std::string>{"pg_4"})) << "a standby that takes over has every member's slot";
    EXPECT_TRUE(p.retain.empty()) << "only the leader writes the status key";
}

TEST(SlotRules, IgnoreSlotsMatchesEveryGivenField) {
    std::vector<IgnoreSlot> ign;
    std::string err;
    ASSERT_TRUE(parse_ignore_slots(nlohmann::json::parse(
                                       R"([{"name":"a"},{"type":"logical","database":"app","plugin":"pgoutput"}])"),
                                   ign, err))
        << err;
    SlotRow a = phys("a");
    EXPECT_TRUE(slot_ignored(a, ign));
    SlotRow l = phys("sub");
    l.type = "logical";
    l.database = "app";
    l.plugin = "pgoutput";
    EXPECT_TRUE(slot_ignored(l, ign));
    l.database = "other";
    EXPECT_FALSE(slot_ignored(l, ign));
    EXPECT_FALSE(slot_ignored(phys("b"), ign));
    for (const char *bad : {R"("a")", R"([1])", R"([{}])", R"([{"nmae":"a"}])", R"([{"name":""}])",
                            R"([{"type":"weird"}])", R"([{"name":5}])"}) {
        err.clear();
        EXPECT_FALSE(parse_ignore_slots(nlohmann::json::parse(bad), ign, err)) << bad;
        EXPECT_NE(err.find("ignore_slots"), std::string::npos) << bad;
    }
}

TEST(SlotRules, ConfigKeySettings) {
    std::vector<std::string> errors;
    auto c = DynamicConfig::from_json(nlohmann::json::object(), errors);
    EXPECT_EQ(c.member_slots_ttl, 1800);
    c = DynamicConfig::from_json(nlohmann::json::parse(R"({"member_slots_ttl":"30min",
        "ignore_slots":[{"name":"x"}], "slots":{"p1":{"type":"physical"},"p2":0,"l1":{"type":"logical","database":"d","plugin":"pgoutput"}}})"),
                                 errors);
    EXPECT_TRUE(errors.empty()) << errors[0];
    EXPECT_EQ(c.member_slots_ttl, 1800);
    EXPECT_EQ(c.ignore_slots.size(), 1u);
    EXPECT_EQ(c.permanent_slots, (std::set<std::string>{"p1", "p2"}));
    c = DynamicConfig::from_json(nlohmann::json::parse(R"({"member_slots_ttl": 0})"), errors);
    EXPECT_EQ(c.member_slots_ttl, 0);
    for (const char *bad : {R"({"member_slots_ttl":"soon"})", R"({"member_slots_ttl":-5})",
                            R"({"member_slots_ttl":"-1h"})", R"({"ignore_slots":{"name":"x"}})", R"({"slots":[1]})",
                            R"({"slots":{"Backup":0}})", R"({"slots":{"a,b":0}})", R"({"slots":{"":0}})",
                            R"({"slots":{"x\"}":{"type":"logical"}}})"}) {
        errors.clear();
        c = DynamicConfig::from_json(nlohmann::json::parse(bad), errors);
        EXPECT_FALSE(errors.empty()) << bad;
        EXPECT_EQ(c.member_slots_ttl, 1800) << bad;
        EXPECT_TRUE(c.ignore_slots.empty()) << bad;
        EXPECT_TRUE(c.permanent_slots.empty()) << bad;
    }
    errors.clear();
    c = DynamicConfig::from_json(nlohmann::json::parse(R"({"slots":{"ok_1":0,"Not Ok":0}})"), errors);
    ASSERT_EQ(errors.size(), 1u);
    EXPECT_NE(errors[0].find("\"Not Ok\" is not a replication slot name"), std::string::npos) << errors[0];
    EXPECT_EQ(c.permanent_slots, (std::set<std::string>{"ok_1"})) << "a bad entry changes nothing else";
    EXPECT_TRUE(valid_slot_name(std::string(63, 'a')));
    EXPECT_FALSE(valid_slot_name(std::string(64, 'a')));
}

TEST(SlotRules, PermanentSlotsAreCreatedOnEveryNode) {
    std::map<std::string, std::int64_t> seen;
    auto in = leader_in(1000);
    in.existing = {phys("pg_2"), phys("pg_3")};
    in.permanent = {"backup_rx", "pg_2"};  // a member's name stays the member's slot
    SlotPlan p = plan_slots(in, seen);
    EXPECT_EQ(p.create, (std::vector<std::string>{"backup_rx"}));
    in.leader = false;
    in.my_slot = "pg_2";
    in.member_slots = {{"pg_1", 500}, {"pg_3", 500}};
    in.existing = {phys("pg_1"), phys("pg_3")};
    p = plan_slots(in, seen);
    EXPECT_EQ(p.create, (std::vector<std::string>{"backup_rx"})) << "a standby has it before it takes over";
    EXPECT_FALSE(has(p.drop, "backup_rx"));
}

TEST(SlotRules, PermanentSlotFollowsReplayOnAStandbyOnly) {
    std::map<std::string, std::int64_t> seen;
    auto in = leader_in(1000);
    in.permanent = {"backup_rx"};
    in.existing = {phys("pg_2"), phys("pg_3"), phys("backup_rx", false, 40)};
    SlotPlan p = plan_slots(in, seen);
    EXPECT_TRUE(p.advance.empty()) << "the consumer moves it on the leader";
    in.leader = false;
    in.member_slots = {{"pg_2", 100}, {"pg_3", 100}};  // their slots are where they are
    p = plan_slots(in, seen);
    ASSERT_EQ(p.advance.size(), 1u);
    EXPECT_EQ(p.advance[0].first, "backup_rx");
    EXPECT_EQ(p.advance[0].second, ~Lsn{0}) << "as far as the standby replayed (the server caps it)";
    in.existing = {phys("pg_2"), phys("pg_3"), phys("backup_rx", true, 40)};
    EXPECT_TRUE(plan_slots(in, seen).advance.empty()) << "an active slot is its consumer's";
    in.existing = {phys("pg_2"), phys("pg_3"), phys("backup_rx", false, 0)};
    EXPECT_TRUE(plan_slots(in, seen).advance.empty()) << "no WAL reserved: nothing to move";
    in.now_ms = 1000 + 10 * 60 * 1000;
    EXPECT_FALSE(has(plan_slots(in, seen).drop, "backup_rx")) << "never dropped";
}

TEST(SlotRules, StatusKeyCarriesTheMemberSlotsPositions) {
    std::string err;
    std::map<std::string, Lsn> slots;
    EXPECT_EQ(decode_status(encode_status(777, {}, {{"pg_2", 700}, {"pg_3", 650}}), err, nullptr, &slots), 777u);
    EXPECT_TRUE(err.empty()) << err;
    EXPECT_EQ(slots, (std::map<std::string, Lsn>{{"pg_2", 700}, {"pg_3", 650}}));
    EXPECT_NE(encode_status(5).find("\"slots\":null"), std::string::npos) << "Patroni's shape when there are none";
    decode_status(encode_status(5), err, nullptr, &slots);
    EXPECT_TRUE(slots.empty());
    // Someone else's data: bad entries are reported and left out, the rest is kept.
    EXPECT_EQ(decode_status(R"({"optime": 9, "slots": {"a": 5, "b": -1, "c": "x"}})", err, nullptr, &slots), 9u);
    EXPECT_FALSE(err.empty());
    EXPECT_EQ(slots, (std::map<std::string, Lsn>{{"a", 5}}));
    err.clear();
    decode_status(R"({"optime": 9, "slots": [1]})", err, nullptr, &slots);
    EXPECT_FALSE(err.empty());
    EXPECT_TRUE(slots.empty());
}

TEST(SlotRules, StatusKeyCarriesRetainSlots) {
    std::string err;
    std::vector<std::string> retain;
    EXPECT_EQ(decode_status(encode_status(777, {"pg_3", "pg_4"}), err, &retain), 777u);
    EXPECT_TRUE(err.empty()) << err;
    EXPECT_EQ(retain, (std::vector<std::string>{"pg_3", "pg_4"}));
    EXPECT_EQ(encode_status(5).find("retain_slots"), std::string::npos);
    EXPECT_EQ(decode_status(R"({"optime": 9, "retain_slots": ["a", 3]})", err, &retain), 9u);
    EXPECT_FALSE(err.empty());
    EXPECT_EQ(retain, (std::vector<std::string>{"a"}));
    err.clear();
    decode_status(R"({"optime": 9, "retain_slots": "a"})", err, &retain);
    EXPECT_FALSE(err.empty());
    EXPECT_TRUE(retain.empty());
}
