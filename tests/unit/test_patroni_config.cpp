// cli/patroni_config: a Patroni YAML file as pg_ha's configuration, and
// core/patroni_parameters: which of the config key's parameters a member applies.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>

#include "cli/patroni_config.hpp"
#include "core/node_settings.hpp"
#include "core/patroni_parameters.hpp"
#include "core/settings_file.hpp"

using namespace pgha;
using namespace pgha::cli;
using nlohmann::json;

namespace {

// The user's deployment (read at test time, never copied into the repository):
// ../shared/user-deployment beside the tree, or $PGHA_USER_DEPLOYMENT.
const std::string kUserDir = std::getenv("PGHA_USER_DEPLOYMENT") ? std::getenv("PGHA_USER_DEPLOYMENT")
                                                                   : PGHA_USER_DEPLOYMENT_DIR;

std::string read_text(const std::string &path) {
    std::ifstream f(path);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

// postgresN.yml as the user's README describes the other nodes: they differ
// in name and the two connect addresses.
std::string user_node_yaml(int n) {
    std::string y = read_text(kUserDir + "/postgres0.yml");
    if (y.empty() || n == 0) return y;
    y = std::regex_replace(y, std::regex("name: postgresql0"), "name: postgresql" + std::to_string(n));
    y = std::regex_replace(y, std::regex("connect_address: pg-test-1:5432"),
                           "connect_address: pg-test-" + std::to_string(n + 1) + ":5432");
    y = std::regex_replace(y, std::regex("postgresql0"), "postgresql" + std::to_string(n));
    return y;
}

bool has_warning(const PatroniConfig &c, const std::string &path) {
    for (const auto &w : c.warnings)
        if (w.rfind(path + ":", 0) == 0) return true;
    return false;
}

std::string all(const std::vector<std::string> &v) {
    std::string s;
    for (const auto &e : v) s += e + "\n";
    return s;
}

// The settings file pg_hactl would write, read back the way the server and
// pg_hactl read it.
NodeSettings settings_of(const PatroniConfig &c, std::vector<std::string> &errors) {
    SettingsFile f = parse_settings(settings_file_text(c, "test.yml"));
    for (const auto &e : f.errors) errors.push_back(e);
    return NodeSettings::from_map(f.values, errors, {"ctl_certfile", "ctl_keyfile", "ctl_insecure"});
}

const char *kMinimal = R"(
scope: demo
name: n1
zookeeper:
  hosts: "zk1:2181, zk2:2181"
postgresql:
  connect_address: 10.0.0.1:5432
  data_dir: /data/pg
)";

}  // namespace

TEST(PatroniConfig, UsersOwnFilesTranslate) {
    for (int n = 0; n < 3; ++n) {
        const std::string yaml = user_node_yaml(n);
        if (yaml.empty()) GTEST_SKIP() << kUserDir << "/postgres0.yml is not here";
        const PatroniConfig c = read_patroni_config(yaml);
        ASSERT_TRUE(c.ok()) << all(c.errors);
        std::vector<std::string> errors;
        const NodeSettings s = settings_of(c, errors);
        EXPECT_TRUE(errors.empty()) << all(errors);
        EXPECT_EQ(s.scope, "batman");
        EXPECT_EQ(s.ns, "/service");
        EXPECT_EQ(s.node_name, "postgresql" + std::to_string(n));
        EXPECT_EQ(s.zookeeper_hosts, "zoo1:2181");
        EXPECT_EQ(s.connect_address, "pg-test-" + std::to_string(n + 1) + ":5432");
        EXPECT_EQ(s.api_listen, "0.0.0.0:8008");
        EXPECT_EQ(s.superuser, "postgres");
        EXPECT_EQ(s.superuser_password, "grespost");
        EXPECT_EQ(s.replication_user, "replicator");
        EXPECT_EQ(s.replication_password, "rep-pass");
        EXPECT_EQ(s.rewind_user, "rewind_user");
        EXPECT_EQ(s.rewind_password, "rewind_password");
        EXPECT_EQ(s.admin_user, "");  // bootstrap.users creates "admin" instead
        EXPECT_EQ(s.watchdog_mode, kWatchdogAutomatic);
        EXPECT_EQ(s.watchdog_device, "/dev/watchdog");
        EXPECT_EQ(s.watchdog_safety_margin, 5);
        EXPECT_FALSE(s.nofailover);
        EXPECT_FALSE(s.clonefrom);
        EXPECT_EQ(s.port, 5432);
        EXPECT_EQ(c.setting("listen_addresses"), "0.0.0.0");
        // unix_socket_directories: "." is the data directory, made absolute for pg_ha's own connections
        EXPECT_EQ(s.socket_dir, "/var/lib/postgresql/data/postgresql" + std::to_string(n));
        EXPECT_EQ(c.data_dir, "/var/lib/postgresql/data/postgresql" + std::to_string(n));
        EXPECT_EQ(c.bin_dir, "/usr/lib/postgresql/17/bin");
        EXPECT_TRUE(s.dcs_shell_parameters);  // the file's own bootstrap.dcs sets archive_command

        // bootstrap.dcs -> the initial config key, typed as Patroni writes it
        EXPECT_EQ(c.dcs["ttl"], 30);
        EXPECT_EQ(c.dcs["loop_wait"], 10);
        EXPECT_EQ(c.dcs["maximum_lag_on_failover"], 1048576);
        EXPECT_EQ(c.dcs["synchronous_mode"], true);
        EXPECT_EQ(c.dcs["postgresql"]["use_slots"], true);
        const json &p = c.dcs["postgresql"]["parameters"];
        EXPECT_EQ(p["hot_standby"], "on");
        EXPECT_EQ(p["archive_mode"], "always");
        EXPECT_EQ(p["max_wal_senders"], 10);
        EXPECT_EQ(p["archive_timeout"], "1800s");
        EXPECT_EQ(p["archive_command"],
                  "mkdir -p ../wal_archive && test ! -f ../wal_archive/%f && cp %p ../wal_archive/%f");

        // the bootstrap plan
        EXPECT_EQ(c.bootstrap.method, "initdb");
        EXPECT_EQ(c.bootstrap.initdb_options, (std::vector<std::string>{"--encoding=UTF8", "--data-checksums"}));
        EXPECT_EQ(c.bootstrap.pg_hba, (std::vector<std::string>{"host replication replicator 0.0.0.0/0 md5",
                                                                "host all all 0.0.0.0/0 md5"}));
        ASSERT_EQ(c.bootstrap.users.size(), 1u);
        EXPECT_EQ(c.bootstrap.users[0].name, "admin");
        EXPECT_EQ(c.bootstrap.users[0].password, "admin");
        EXPECT_EQ(c.bootstrap.users[0].options, (std::vector<std::string>{"CREATEROLE", "CREATEDB"}));

        // what pg_ha does not use is named, by its path
        EXPECT_TRUE(has_warning(c, "postgresql.pgpass")) << all(c.warnings);
        EXPECT_FALSE(has_warning(c, "bootstrap.dcs.master_start_timeout")) << all(c.warnings);  // acted on
        EXPECT_TRUE(has_warning(c, "restapi.connect_address")) << all(c.warnings);  // 0.0.0.0:8008
        EXPECT_FALSE(has_warning(c, "tags.nofailover"));
        EXPECT_FALSE(has_warning(c, "bootstrap.dcs.ttl"));
    }
}

TEST(PatroniConfig, EveryUnsupportedKeyIsNamed) {
    const PatroniConfig c = read_patroni_config(std::string(kMinimal) + R"(
  pg_ident: ["x y z"]
  callbacks: {on_start: /bin/true}
  authentication:
    superuser: {username: su, password: pw, sslmode: require}
restapi:
  listen: 0.0.0.0:8008
  allowlist: [10.0.0.0/8]
  authentication: {username: u, password: p}
etcd3:
  hosts: e1:2379
log:
  level: DEBUG
tags:
  replicatefrom: n2
  nosync: true
bootstrap:
  dcs:
    ttl: 20
    check_timeline: true
    postgresql:
      recovery_conf: {restore_command: x}
  initdb: [data-checksums, {pgdata: /x}]
citus: {group: 0}
)");
    ASSERT_TRUE(c.ok()) << all(c.errors);
    for (const char *path : {"postgresql.pg_ident", "postgresql.callbacks", "postgresql.authentication.superuser.sslmode",
                             "etcd3", "log.level", "tags.replicatefrom", "bootstrap.dcs.check_timeline",
                             "bootstrap.dcs.postgresql.recovery_conf", "bootstrap.initdb.pgdata", "citus"})
        EXPECT_TRUE(has_warning(c, path)) << path << "\n" << all(c.warnings);
    EXPECT_EQ(c.setting("pg_ha.restapi_username"), "u");
    EXPECT_EQ(c.setting("pg_ha.restapi_password"), "p");
    EXPECT_EQ(c.setting("pg_ha.nosync"), "on");
    EXPECT_EQ(c.setting("pg_ha.zookeeper_hosts"), "zk1:2181,zk2:2181");
    EXPECT_EQ(c.bootstrap.initdb_options, std::vector<std::string>{"--data-checksums"});
    EXPECT_EQ(c.setting("pg_ha.dcs_shell_parameters"), "");  // no shell command in its bootstrap.dcs
}

TEST(PatroniConfig, BadFilesAreRefusedClearly) {
    EXPECT_FALSE(read_patroni_config("scope: [unclosed").ok());
    EXPECT_FALSE(read_patroni_config("- a list").ok());
    PatroniConfig c = read_patroni_config("name: n\npostgresql: {connect_address: a:1, data_dir: /d}\n");
    EXPECT_FALSE(c.ok());
    EXPECT_NE(all(c.errors).find("scope"), std::string::npos);
    EXPECT_NE(all(c.errors).find("zookeeper"), std::string::npos);
    c = read_patroni_config(std::string(kMinimal) + "tags: {nofailover: maybe}\n");
    EXPECT_NE(all(c.errors).find("tags.nofailover"), std::string::npos);
    c = read_patroni_config(std::string(kMinimal) +
                            "bootstrap:\n  users:\n    x: {password: p, options: [\"createdb; DROP TABLE t\"]}\n");
    EXPECT_NE(all(c.errors).find("bootstrap.users.x.options"), std::string::npos);
}

TEST(PatroniConfig, LocalParametersAndNamespace) {
    const PatroniConfig c = read_patroni_config(std::string(kMinimal) + R"(
  listen: 127.0.0.1,10.0.0.1:5433
  parameters:
    work_mem: 8MB
    max_connections: 300
    unix_socket_directories: "/run/pg, sock"
  use_pg_rewind: false
namespace: /pgha/
)");
    ASSERT_TRUE(c.ok()) << all(c.errors);
    EXPECT_EQ(c.setting("work_mem"), "8MB");
    EXPECT_EQ(c.setting("max_connections"), "");  // cluster-wide only, as in Patroni
    EXPECT_TRUE(has_warning(c, "postgresql.parameters.max_connections"));
    EXPECT_EQ(c.setting("unix_socket_directories"), "/run/pg,/data/pg/sock");
    EXPECT_EQ(c.setting("listen_addresses"), "127.0.0.1,10.0.0.1");
    EXPECT_EQ(c.setting("port"), "5433");
    EXPECT_EQ(c.setting("pg_ha.namespace"), "/pgha");
    EXPECT_EQ(c.setting("pg_ha.rewind_user"), "");  // no rewind role: the superuser rewinds
    EXPECT_EQ(c.dcs["postgresql"]["use_pg_rewind"], false);
}

TEST(PatroniConfig, SecretsOnlyInTheSettingsFileQuoted) {
    const PatroniConfig c = read_patroni_config(std::string(kMinimal) + R"(
  authentication:
    replication: {username: rep, password: "it's a \\ pass"}
)");
    ASSERT_TRUE(c.ok()) << all(c.errors);
    const std::string text = settings_file_text(c, "x.yml");
    SettingsFile f = parse_settings(text);
    EXPECT_EQ(f.get("pg_ha.replication_password"), "it's a \\ pass");
    for (const auto &w : c.warnings) EXPECT_EQ(w.find("pass"), std::string::npos) << w;
}

TEST(PatroniConfig, CustomBootstrapMethod) {
    const PatroniConfig c = read_patroni_config(std::string(kMinimal) + R"(
bootstrap:
  method: pgbackrest
  pgbackrest:
    command: /usr/bin/restore.sh
    stanza: main
    recovery_conf: {restore_command: x}
  post_init: /usr/local/bin/setup.sh
)");
    ASSERT_TRUE(c.ok()) << all(c.errors);
    EXPECT_EQ(c.bootstrap.method, "pgbackrest");
    EXPECT_EQ(c.bootstrap.method_command, "/usr/bin/restore.sh");
    EXPECT_EQ(c.bootstrap.method_args, std::vector<std::string>{"--stanza=main"});
    EXPECT_EQ(c.bootstrap.post_bootstrap, "/usr/local/bin/setup.sh");
    EXPECT_TRUE(has_warning(c, "bootstrap.pgbackrest.recovery_conf"));
    EXPECT_FALSE(has_warning(c, "bootstrap.pgbackrest"));
}

TEST(ClusterParameters, PatronisPrecedenceAndTheShellRule) {
    const json config = json::parse(R"({"postgresql": {"parameters": {
        "work_mem": "4MB", "hot_standby": true, "max_connections": 200, "archive_command": "cp %p /a/%f",
        "wal_keep_segments": 8, "shared_buffers": "1GB", "bad name": 1, "x": {"y": 1}}}})");
    ClusterParameters p = cluster_parameters(config, {"work_mem", "max_connections"}, false, 150004);
    const std::vector<std::pair<std::string, std::string>> want = {
        {"hot_standby", "on"}, {"max_connections", "200"}, {"shared_buffers", "1GB"}, {"wal_keep_size", "128MB"}};
    EXPECT_EQ(p.apply, want);
    const std::string skipped = all(p.skipped);
    EXPECT_NE(skipped.find("work_mem: set in the local configuration"), std::string::npos) << skipped;
    EXPECT_NE(skipped.find("archive_command: runs a shell command"), std::string::npos) << skipped;
    EXPECT_NE(skipped.find("bad name"), std::string::npos) << skipped;
    p = cluster_parameters(config, {}, true, 120000);
    bool archive = false, segments = false;
    for (const auto &kv : p.apply) {
        archive |= kv.first == "archive_command" && kv.second == "cp %p /a/%f";
        segments |= kv.first == "wal_keep_segments" && kv.second == "8";
    }
    EXPECT_TRUE(archive);
    EXPECT_TRUE(segments);
    EXPECT_TRUE(cluster_parameters(json::object(), {}, true, 150000).apply.empty());
}

TEST(PatroniConfig, RestApiAllowlistAndZooKeeperAuth) {
    const std::string base = "scope: demo\nname: n1\npostgresql: {connect_address: 10.0.0.1:5432, data_dir: /data/pg}\n";
    PatroniConfig c = read_patroni_config(base + R"(
restapi:
  listen: 0.0.0.0:8008
  connect_address: n1:8008
  allowlist: [10.0.0.0/8, 127.0.0.1]
  allowlist_include_members: true
zookeeper:
  hosts: [zk1:2181]
  auth_data: {digest: "pgha:s3cr:et"}
  set_acls: {"digest:monitor:abc=": [READ]}
)");
    ASSERT_TRUE(c.ok()) << all(c.errors);
    EXPECT_EQ(c.setting("pg_ha.restapi_allowlist"), "10.0.0.0/8,127.0.0.1");
    EXPECT_EQ(c.setting("pg_ha.restapi_allowlist_include_members"), "on");
    EXPECT_EQ(c.setting("pg_ha.zookeeper_user"), "pgha");
    EXPECT_EQ(c.setting("pg_ha.zookeeper_password"), "s3cr:et");
    EXPECT_EQ(c.setting("pg_ha.zookeeper_set_acls"), "digest:monitor:abc= READ");
    EXPECT_FALSE(has_warning(c, "restapi.allowlist"));
    EXPECT_FALSE(has_warning(c, "zookeeper.auth_data"));
    c = read_patroni_config(base + "zookeeper:\n  hosts: [zk1:2181]\n  auth_data: {digest: nocolon}\n");
    EXPECT_NE(all(c.errors).find("zookeeper.auth_data"), std::string::npos);
    EXPECT_EQ(all(c.errors).find("nocolon"), std::string::npos) << "the credential is not echoed";
}

// bootstrap.dcs.postgresql.pg_hba: the member applies the config key's
// pg_hba (pg_ha.dcs_pg_hba) unless its own postgresql.pg_hba wins.
TEST(PatroniConfig, BootstrapDcsPgHbaTurnsOnDcsPgHbaUnlessLocalOneWins) {
    const std::string dcs = R"(
bootstrap:
  dcs:
    postgresql:
      pg_hba: ["local all all peer", "host all all 0.0.0.0/0 scram-sha-256"]
)";
    PatroniConfig c = read_patroni_config(std::string(kMinimal) + dcs);
    ASSERT_TRUE(c.ok()) << all(c.errors);
    EXPECT_EQ(c.setting("pg_ha.dcs_pg_hba"), "on");
    EXPECT_FALSE(has_warning(c, "bootstrap.dcs.postgresql.pg_hba")) << all(c.warnings);
    PatroniConfig local = read_patroni_config(std::string(kMinimal) + "  pg_hba: [\"local all all trust\"]\n" + dcs);
    ASSERT_TRUE(local.ok()) << all(local.errors);
    EXPECT_EQ(local.setting("pg_ha.dcs_pg_hba"), "");
    EXPECT_TRUE(has_warning(local, "bootstrap.dcs.postgresql.pg_hba")) << all(local.warnings);
    EXPECT_EQ(read_patroni_config(kMinimal).setting("pg_ha.dcs_pg_hba"), "");
}
