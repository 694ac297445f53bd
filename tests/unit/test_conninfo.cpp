// core/conninfo: the builder quotes so that libpq itself reads every value
// back unchanged, and the parser agrees with libpq's PQconninfoParse.
#include <gtest/gtest.h>

#include <libpq-fe.h>

#include <map>

#include "core/conninfo.hpp"

using namespace pgha;

namespace {

// libpq's own reading of a conninfo: keyword -> value (set ones only).
std::map<std::string, std::string> libpq_parse(const std::string &conninfo, std::string &error) {
    std::map<std::string, std::string> out;
    char *err = nullptr;
    PQconninfoOption *opts = PQconninfoParse(conninfo.c_str(), &err);
    if (!opts) {
        error = err ? err : "out of memory";
        if (err) PQfreemem(err);
        return out;
    }
    for (PQconninfoOption *o = opts; o->keyword; ++o)
        if (o->val) out[o->keyword] = o->val;
    PQconninfoFree(opts);
    return out;
}

std::map<std::string, std::string> ours(const std::string &conninfo, bool &ok) {
    ConninfoPairs kv;
    std::string error;
    ok = parse_conninfo(conninfo, kv, error);
    return std::map<std::string, std::string>(kv.begin(), kv.end());
}

}  // namespace

TEST(Conninfo, QuotesBackslashAndQuote) {
    EXPECT_EQ(conninfo_quote("plain"), "'plain'");
    EXPECT_EQ(conninfo_quote("a b"), "'a b'");
    EXPECT_EQ(conninfo_quote("it's"), "'it\\'s'");
    EXPECT_EQ(conninfo_quote("back\\slash"), "'back\\\\slash'");
    EXPECT_EQ(conninfo_quote(""), "''");
}

TEST(Conninfo, HostilePasswordRoundTripsThroughLibpq) {
    const std::string pw = "p a's\\s w'\\'d =x host=evil";
    const std::string ci = build_conninfo({{"user", "repl user"},
                                           {"password", pw},
                                           {"host", "10.0.0.2"},
                                           {"port", "5433"},
                                           {"application_name", "pg-1"},
                                           {"sslmode", "prefer"}});
    std::string error;
    auto libpq = libpq_parse(ci, error);
    ASSERT_TRUE(error.empty()) << error << " in " << ci;
    EXPECT_EQ(libpq["password"], pw);
    EXPECT_EQ(libpq["user"], "repl user");
    EXPECT_EQ(libpq["host"], "10.0.0.2");  // not "evil"
    EXPECT_EQ(libpq["port"], "5433");
    EXPECT_EQ(libpq["application_name"], "pg-1");
    bool ok = false;
    auto mine = ours(ci, ok);
    ASSERT_TRUE(ok);
    EXPECT_EQ(mine["password"], pw);
    std::string host;
    int port = 0;
    parse_conninfo_host_port(ci, host, port);
    EXPECT_EQ(host, "10.0.0.2");
    EXPECT_EQ(port, 5433);
}

// The standby's primary_conninfo (pg_hactl boot and the worker share it):
// libpq reads every field back, and it names a database (PostgreSQL 17's slot
// sync worker refuses a primary_conninfo without one).
TEST(Conninfo, ReplicationConninfoNamesTheMemberAndADatabase) {
    const std::string ci = replication_conninfo("repl", "pw'x", "10.0.0.3", 5432, "pg-2");
    std::string error;
    auto libpq = libpq_parse(ci, error);
    ASSERT_TRUE(error.empty()) << error;
    EXPECT_EQ(libpq["user"], "repl");
    EXPECT_EQ(libpq["password"], "pw'x");
    EXPECT_EQ(libpq["host"], "10.0.0.3");
    EXPECT_EQ(libpq["port"], "5432");
    EXPECT_EQ(libpq["application_name"], "pg-2");
    EXPECT_EQ(libpq["dbname"], "postgres");
    EXPECT_EQ(libpq["connect_timeout"], "5");
}

TEST(Conninfo, EmptyValuesAreLeftOut) {
    // An unquoted empty value would swallow the next pair ("password= host=x"
    // is a password of "host=x" to libpq); left out, libpq uses its default.
    const std::string ci = build_conninfo({{"user", "u"}, {"password", ""}, {"host", "h"}});
    EXPECT_EQ(ci, "user='u' host='h'");
    std::string error;
    auto libpq = libpq_parse(ci, error);
    EXPECT_EQ(libpq.count("password"), 0u);
    EXPECT_EQ(libpq["host"], "h");
}

TEST(Conninfo, ParserAgreesWithLibpq) {
    for (const std::string ci : {
             "host=a port=5433",
             "  host = a   port= 5433 ",
             "host='a b' port='1'",
             "password=x\\ y host=h",
             "password='it\\'s' host=h",
             "password='' host=h",
             "host=h1,h2 port=5432,5433",
             "hostaddr=10.0.0.9 port=6000",
             "host=h dbname=postgres host=h2",
             "application_name='\\\\' host=h",
             "postgresql://",
             "postgresql://u:p%20w@h:5433/db?application_name=x&sslmode=require",
             "postgres://[::1]:5433/db",
             "postgresql://h1:1,h2:2/db",
             "postgresql:///db?host=/tmp",
         }) {
        std::string error;
        auto libpq = libpq_parse(ci, error);
        ASSERT_TRUE(error.empty()) << ci << ": " << error;
        bool ok = false;
        auto mine = ours(ci, ok);
        ASSERT_TRUE(ok) << ci;
        for (const auto &[k, v] : mine) EXPECT_EQ(libpq[k], v) << ci << " key " << k;
        for (const char *k : {"host", "hostaddr", "port", "user", "password", "dbname"})
            EXPECT_EQ(libpq.count(k), mine.count(k)) << ci << " key " << k;
    }
}

TEST(Conninfo, MalformedIsAnErrorForBoth) {
    for (const std::string ci : {"host", "host=a port", "password='open"}) {
        std::string error;
        libpq_parse(ci, error);
        EXPECT_FALSE(error.empty()) << ci;
        ConninfoPairs kv;
        std::string mine;
        EXPECT_FALSE(parse_conninfo(ci, kv, mine)) << ci;
        EXPECT_FALSE(mine.empty());
    }
    std::string host = "x";
    int port = 1;
    parse_conninfo_host_port("host='open", host, port);
    EXPECT_EQ(host, "");
    EXPECT_EQ(port, 0);
}

TEST(Conninfo, HostPortDefaultsAsLibpq) {
    std::string host;
    int port = 0;
    parse_conninfo_host_port("user=u", host, port);
    EXPECT_EQ(host, "");
    EXPECT_EQ(port, 5432);
    parse_conninfo_host_port("hostaddr=10.1.1.1", host, port);
    EXPECT_EQ(host, "10.1.1.1");
    parse_conninfo_host_port("host=h hostaddr=10.1.1.1 port=7", host, port);
    EXPECT_EQ(host, "h");
    EXPECT_EQ(port, 7);
    parse_conninfo_host_port("", host, port);
    EXPECT_EQ(host, "");
    EXPECT_EQ(port, 0);
    parse_conninfo_host_port("postgresql://[::1]:5433/db", host, port);
    EXPECT_EQ(host, "::1");
    EXPECT_EQ(port, 5433);
}
