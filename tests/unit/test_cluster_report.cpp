// core/cluster_report (one member row for /cluster, pg_hactl list and
// ha_status()) and the small shared parsers of core/cluster.
#include <gtest/gtest.h>

#include "core/cluster_report.hpp"

using namespace pgha;

namespace {

Member member(const std::string &name, Lsn xlog, const std::string &state = "running") {
    Member m;
    m.name = name;
    m.state = state;
    m.role = "replica";
    m.conn_url = "postgres://10.0.0." + name.substr(name.size() - 1) + ":5432/postgres";
    m.api_url = "http://10.0.0." + name.substr(name.size() - 1) + ":8008/patroni";
    m.xlog_location = xlog;
    m.timeline = 3;
    return m;
}

}  // namespace

TEST(ClusterReport, RolesStatesAndLag) {
    ClusterView v;
    v.leader = "pg-2";
    v.status_optime = 5000;
    v.members = {member("pg-3", 0), member("pg-2", 5000), member("pg-1", 4000), member("pg-4", 6000)};
    v.members[1].role = "primary";
    v.members[2].replication_state = "streaming";
    v.members[2].receive_lsn = 4500;  // best position counts
    v.members[0].tags.nofailover = true;
    v.members[3].pending_restart = true;
    v.sync.leader = "pg-2";
    v.sync.sync_standby = {"pg-4"};
    v.config.synchronous_mode = true;
    auto rows = cluster_report(v);
    ASSERT_EQ(rows.size(), 4u);
    EXPECT_EQ(rows[0].name, "pg-1");  // sorted by name
    EXPECT_EQ(rows[1].name, "pg-2");
    EXPECT_EQ(rows[2].name, "pg-3");
    EXPECT_EQ(rows[3].name, "pg-4");

    EXPECT_EQ(rows[1].role, ReportRole::Leader);
    EXPECT_TRUE(rows[1].is_leader);
    EXPECT_STREQ(to_string(rows[1].role), "leader");
    EXPECT_STREQ(display_name(rows[1].role), "Leader");
    EXPECT_EQ(rows[1].lag, std::optional<Lsn>(0));

    EXPECT_EQ(rows[0].role, ReportRole::Replica);
    EXPECT_STREQ(display_name(rows[0].role), "Replica");
    EXPECT_EQ(rows[0].state, "streaming");  // Patroni: the replication state of a replica
    EXPECT_EQ(rows[0].lsn, 4500u);
    EXPECT_EQ(rows[0].lag, std::optional<Lsn>(500));
    EXPECT_EQ(rows[0].lag_json(), 500);
    EXPECT_EQ(rows[0].host, "10.0.0.1");
    EXPECT_EQ(rows[0].port, 5432);
    EXPECT_EQ(rows[0].timeline, 3);

    EXPECT_FALSE(rows[2].lag.has_value());  // reported no position
    EXPECT_EQ(rows[2].lag_json(), "unknown");
    EXPECT_TRUE(rows[2].tags.nofailover);
    EXPECT_EQ(rows[2].state, "running");

    EXPECT_EQ(rows[3].role, ReportRole::SyncStandby);
    EXPECT_STREQ(to_string(rows[3].role), "sync_standby");
    EXPECT_STREQ(display_name(rows[3].role), "Sync Standby");
    EXPECT_EQ(rows[3].lag, std::optional<Lsn>(0));  // ahead of the optime
    EXPECT_TRUE(rows[3].pending_restart);
    // Quorum commit: Patroni 4's quorum_standby; synchronous mode off: a replica whatever the key says.
    v.config.synchronous_mode_quorum = true;
    rows = cluster_report(v);
    EXPECT_STREQ(to_string(rows[3].role), "quorum_standby");
    EXPECT_STREQ(display_name(rows[3].role), "Quorum Standby");
    v.config.synchronous_mode = v.config.synchronous_mode_quorum = false;
    EXPECT_EQ(cluster_report(v)[3].role, ReportRole::Replica);
}

// A standby's member rows carry positions as of each member's last news
// (it does not watch them); the leader's status key is newer: lag is
// measured from whichever is ahead, and a row ahead of it wins.
TEST(ClusterReport, PositionsFromTheStatusKeyWhenNewerThanTheRow) {
    ClusterView v;
    v.leader = "pg-1";
    v.status_optime = 9000;
    v.members = {member("pg-1", 5000), member("pg-2", 4000), member("pg-3", 8000)};
    v.status_slots = {{"pg_2", 8800}, {"pg_3", 7000}};
    EXPECT_EQ(v.position_of(v.members[0]), 9000u) << "the leader: its optime";
    EXPECT_EQ(v.position_of(v.members[1]), 8800u) << "the status key is newer than the row";
    EXPECT_EQ(v.position_of(v.members[2]), 8000u) << "the row is newer than the status key";
    auto rows = cluster_report(v);
    EXPECT_EQ(rows[1].lag, std::optional<Lsn>(200));
    EXPECT_EQ(rows[2].lag, std::optional<Lsn>(1000));
}

TEST(ClusterReport, StandbyLeaderAndLeaderState) {
    ClusterView v;
    v.leader = "pg-1";
    v.members = {member("pg-1", 100)};
    v.members[0].role = "standby_leader";
    v.members[0].replication_state = "streaming";
    auto rows = cluster_report(v);
    ASSERT_EQ(rows.size(), 1u);
    EXPECT_EQ(rows[0].role, ReportRole::StandbyLeader);
    EXPECT_STREQ(to_string(rows[0].role), "standby_leader");
    EXPECT_STREQ(display_name(rows[0].role), "Standby Leader");
    EXPECT_EQ(rows[0].state, "running");  // the leader's member state, not its replication state
    EXPECT_TRUE(cluster_report(ClusterView{}).empty());
}

TEST(Cluster, ApiEndpoint) {
    Member m;
    m.api_url = "http://10.0.0.1:8008/patroni";
    EXPECT_EQ(m.api_endpoint("/primary"), "http://10.0.0.1:8008/primary");
    m.api_url = "https://[::1]:8008/patroni";
    EXPECT_EQ(m.api_endpoint("/switchover"), "https://[::1]:8008/switchover");
    m.api_url = "http://h:8008";
    EXPECT_EQ(m.api_endpoint("/primary"), "http://h:8008/primary");
    m.api_url = "";
    EXPECT_EQ(m.api_endpoint("/primary"), "");
    m.api_url = "h:8008/patroni";
    EXPECT_EQ(m.api_endpoint("/primary"), "");
}

TEST(Cluster, ParseHostPortForms) {
    std::string host, why;
    int port = 0;
    EXPECT_TRUE(parse_host_port("10.0.0.1:5432", host, port));
    EXPECT_EQ(host, "10.0.0.1");
    EXPECT_EQ(port, 5432);
    EXPECT_TRUE(parse_host_port("[::1]:8008", host, port));
    EXPECT_EQ(host, "::1");
    EXPECT_EQ(port, 8008);
    for (const char *bad : {"", "h", "h:", ":5432", "h:0", "h:65536", "h:12a", "[::1]8008", "[::1", "[]:1", "a b:1"})
        EXPECT_FALSE(parse_host_port(bad, host, port)) << bad;
    // listen addresses: all-addresses host and port 0
    EXPECT_TRUE(parse_host_port("*:8008", HostPortForm::Listen, host, port, why));
    EXPECT_EQ(host, "");
    EXPECT_TRUE(parse_host_port(":0", HostPortForm::Listen, host, port, why));
    EXPECT_EQ(port, 0);
    EXPECT_TRUE(parse_host_port("[::]:8008", HostPortForm::Listen, host, port, why));
    EXPECT_EQ(host, "::");
    EXPECT_FALSE(parse_host_port("[::1]:99999", HostPortForm::Listen, host, port, why));
    EXPECT_EQ(why, "port out of range");
    EXPECT_FALSE(parse_host_port("h:0", HostPortForm::Address, host, port, why));
    EXPECT_EQ(why, "port out of range");
    EXPECT_FALSE(parse_host_port("[::1", HostPortForm::Listen, host, port, why));
    EXPECT_EQ(why, "missing ']'");
}
