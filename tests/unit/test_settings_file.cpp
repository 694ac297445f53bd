// The settings-file reader follows PostgreSQL's configuration-file scanner
// (guc-file.l): pg_hactl must read the very value the server reads (issue 10
// item 6). tests/cluster/test_settings_file.py checks the same cases against
// `postgres -C`.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "core/settings_file.hpp"

using namespace pgha;

TEST(SettingsFileSyntax, EscapesAsPostgres) {
    auto s = parse_settings(
        "a = 'tab\\there'\n"
        "b = 'nl\\nx\\rcr\\bbs\\fff'\n"
        "c = 'oct\\101\\0601\\7'\n"
        "d = 'q\\'x''y'\n"
        "e = 'back\\\\slash\\z'\n"
        "f 'no equals sign'\n"
        "G.Mixed_Case = on\n");
    EXPECT_TRUE(s.errors.empty()) << s.errors[0];
    EXPECT_EQ(s.get("a"), "tab\there");
    EXPECT_EQ(s.get("b"), "nl\nx\rcr\bbs\fff");
    EXPECT_EQ(s.get("c"), std::string("octA01") + '\7');
    EXPECT_EQ(s.get("d"), "q'x'y");
    EXPECT_EQ(s.get("e"), "back\\slashz");
    EXPECT_EQ(s.get("f"), "no equals sign");
    EXPECT_EQ(s.get("g.mixed_case"), "on");
}

TEST(SettingsFileSyntax, UnquotedTokensAndErrors) {
    auto s = parse_settings(
        "port = 5433\n"
        "t = 10s # comment\n"
        "neg = -1\n"
        "r = 1.5e-3\n"
        "path = pg_ha/x:y-z.conf\n"
        "later = first\n"
        "later = second\n");
    EXPECT_TRUE(s.errors.empty()) << s.errors[0];
    EXPECT_EQ(s.get("t"), "10s");
    EXPECT_EQ(s.get("neg"), "-1");
    EXPECT_EQ(s.get("r"), "1.5e-3");
    EXPECT_EQ(s.get("path"), "pg_ha/x:y-z.conf");
    EXPECT_EQ(s.get("later"), "second");
    // What the server refuses, pg_hactl refuses: it must not read a value the
    // server never would.
    for (const char *bad : {"h = zoo1:2181,zoo2:2181\n", "p = two words\n", "x = 'a' 'b'\n", "x =\n", "= 5\n",
                            "x = 'open\n", "x = /abs/path\n", "x. = 1\n"}) {
        auto b = parse_settings(bad);
        EXPECT_EQ(b.errors.size(), 1u) << bad;
        EXPECT_TRUE(b.values.empty()) << bad;
    }
}

TEST(SettingsFileSyntax, IncludesRelativeToTheFile) {
    char dir[] = "/tmp/pgha-settings-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    const std::string d = dir;
    ASSERT_EQ(mkdir((d + "/conf.d").c_str(), 0700), 0);
    std::ofstream(d + "/main.conf") << "a = 'main'\ninclude 'sub.conf'\ninclude_if_exists 'missing.conf'\n"
                                       "include_dir 'conf.d'\nz = 'last'\n";
    std::ofstream(d + "/sub.conf") << "a = 'from sub'\nb = 'sub'\n";
    std::ofstream(d + "/conf.d/10-x.conf") << "c = 'ten'\n";
    std::ofstream(d + "/conf.d/20-y.conf") << "c = 'twenty'\n";
    std::ofstream(d + "/conf.d/.hidden.conf") << "c = 'hidden'\n";
    std::ofstream(d + "/conf.d/skip.txt") << "c = 'txt'\n";
    std::ofstream(d + "/loop.conf") << "include 'loop.conf'\n";
    SettingsFile f;
    std::string err;
    ASSERT_TRUE(load_settings_file(d + "/main.conf", f, err)) << err;
    EXPECT_TRUE(f.errors.empty()) << f.errors[0];
    EXPECT_EQ(f.get("a"), "from sub");
    EXPECT_EQ(f.get("b"), "sub");
    EXPECT_EQ(f.get("c"), "twenty");
    EXPECT_EQ(f.get("z"), "last");
    SettingsFile loop;
    ASSERT_TRUE(load_settings_file(d + "/loop.conf", loop, err));
    ASSERT_FALSE(loop.errors.empty());
    EXPECT_NE(loop.errors.back().find("nested more than 10 deep"), std::string::npos);
    SettingsFile missing;
    std::ofstream(d + "/bad.conf") << "include 'nope.conf'\n";
    ASSERT_TRUE(load_settings_file(d + "/bad.conf", missing, err));
    ASSERT_EQ(missing.errors.size(), 1u);
    EXPECT_NE(missing.errors[0].find("nope.conf"), std::string::npos);
    for (const char *f2 : {"main.conf", "sub.conf", "conf.d/10-x.conf", "conf.d/20-y.conf", "conf.d/.hidden.conf",
                           "conf.d/skip.txt", "loop.conf", "bad.conf"})
        std::remove((d + "/" + f2).c_str());
    rmdir((d + "/conf.d").c_str());
    rmdir(dir);
}
