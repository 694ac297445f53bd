// ZooKeeper digest ids and the ACL pg_ha puts on its znodes (dcs/zk_acl).
#include <gtest/gtest.h>

#include "dcs/zk_acl.hpp"

using namespace pgha;

// ZooKeeper's own example (DigestAuthenticationProvider, "super:admin"); the
// others checked with `printf user:pw | openssl dgst -binary -sha1 | base64`.
TEST(ZkAcl, DigestIdIsBase64OfSha1) {
    EXPECT_EQ(zk_digest_id("super", "admin"), "super:xQJmxLMiHGwaqBvst5y6rkB6HQs=");
    EXPECT_EQ(zk_digest_id("monitor", "mon pass"), "monitor:BwsXui0rCjeKMy1UN8eua3fJStI=");
    EXPECT_EQ(zk_digest_id("pg_ha", "s3cret"), "pg_ha:1f8ToQLJnhPBvk8kNceMyo8Iib8=");
}

TEST(ZkAcl, NoCredentialsMeansOpenAcl) {
    ZkAuth a;
    std::string err;
    ASSERT_TRUE(make_zk_auth("", "", "", a, err)) << err;
    EXPECT_FALSE(a.enabled());
    EXPECT_TRUE(a.acl.empty());  // ZkSession uses world:anyone ALL then
}

TEST(ZkAcl, CredentialsGiveCreatorAllFirst) {
    ZkAuth a;
    std::string err;
    ASSERT_TRUE(make_zk_auth("pg_ha", "s3cret", "", a, err)) << err;
    EXPECT_TRUE(a.enabled());
    EXPECT_EQ(a.digest_credential(), "pg_ha:s3cret");
    ASSERT_EQ(a.acl.size(), 1u);
    EXPECT_EQ(a.acl[0], (ZkAclEntry{zk_perm::kAll, "digest", "pg_ha:1f8ToQLJnhPBvk8kNceMyo8Iib8="}));
}

TEST(ZkAcl, SetAclsAddMonitoringAndOthers) {
    ZkAuth a;
    std::string err;
    ASSERT_TRUE(make_zk_auth("pg_ha", "s3cret",
                             " digest:monitor:BwsXui0rCjeKMy1UN8eua3fJStI= READ ;ip:10.0.0.5 read, write;"
                             "CN=patroni ALL; world:anyone READ;",
                             a, err))
        << err;
    ASSERT_EQ(a.acl.size(), 5u);
    EXPECT_EQ(a.acl[1], (ZkAclEntry{zk_perm::kRead, "digest", "monitor:BwsXui0rCjeKMy1UN8eua3fJStI="}));
    EXPECT_EQ(a.acl[2], (ZkAclEntry{zk_perm::kRead | zk_perm::kWrite, "ip", "10.0.0.5"}));
    EXPECT_EQ(a.acl[3], (ZkAclEntry{zk_perm::kAll, "x509", "CN=patroni"}));  // Patroni's default scheme
    EXPECT_EQ(a.acl[4], (ZkAclEntry{zk_perm::kRead, "world", "anyone"}));
}

TEST(ZkAcl, DuplicatesMerge) {
    ZkAuth a;
    std::string err;
    ASSERT_TRUE(make_zk_auth("pg_ha", "s3cret",
                             "digest:pg_ha:1f8ToQLJnhPBvk8kNceMyo8Iib8= READ; ip:10.0.0.5 READ; ip:10.0.0.5 CREATE",
                             a, err))
        << err;
    ASSERT_EQ(a.acl.size(), 2u);  // our own id once, with ALL
    EXPECT_EQ(a.acl[0].perms, zk_perm::kAll);
    EXPECT_EQ(a.acl[1], (ZkAclEntry{zk_perm::kRead | zk_perm::kCreate, "ip", "10.0.0.5"}));
}

TEST(ZkAcl, PermissionWords) {
    std::string err;
    EXPECT_EQ(parse_zk_perms("ALL", err), zk_perm::kAll);
    EXPECT_EQ(parse_zk_perms("read,Create , DELETE", err), zk_perm::kRead | zk_perm::kCreate | zk_perm::kDelete);
    EXPECT_EQ(parse_zk_perms("admin", err), zk_perm::kAdmin);
    EXPECT_EQ(parse_zk_perms("READ,EXECUTE", err), 0);
    EXPECT_NE(err.find("EXECUTE"), std::string::npos);
    EXPECT_EQ(parse_zk_perms(" ", err), 0);
}

TEST(ZkAcl, BadSettingsAreRefusedWithoutEchoingSecrets) {
    ZkAuth a;
    std::string err;
    EXPECT_FALSE(make_zk_auth("", "pw", "", a, err));
    EXPECT_NE(err.find("pg_ha.zookeeper_user"), std::string::npos);
    EXPECT_FALSE(make_zk_auth("pg_ha", "", "", a, err));
    EXPECT_NE(err.find("pg_ha.zookeeper_password"), std::string::npos);
    EXPECT_FALSE(make_zk_auth("pg:ha", "pw", "", a, err));
    EXPECT_NE(err.find("':'"), std::string::npos);
    // set_acls alone could lock pg_ha out of its own znodes
    EXPECT_FALSE(make_zk_auth("", "", "world:anyone READ", a, err));
    EXPECT_NE(err.find("pg_ha.zookeeper_set_acls"), std::string::npos);
    // a password where the digest hash belongs: refused, not echoed
    EXPECT_FALSE(make_zk_auth("pg_ha", "pw", "digest:monitor:TopSecret READ", a, err));
    EXPECT_EQ(err.find("TopSecret"), std::string::npos) << err;
    EXPECT_NE(err.find("base64(sha1"), std::string::npos);
    EXPECT_FALSE(make_zk_auth("pg_ha", "pw", "digest:monitor:BwsXui0rCjeKMy1UN8eua3fJStI=", a, err));  // no perms
    EXPECT_FALSE(make_zk_auth("pg_ha", "pw", "bogus:x READ", a, err));
    EXPECT_NE(err.find("unknown scheme"), std::string::npos);
    EXPECT_FALSE(make_zk_auth("pg_ha", "pw", "ip: READ", a, err));
    EXPECT_FALSE(make_zk_auth("pg_ha", "pw", "ip:10.0.0.5 READ,NOPE", a, err));
    EXPECT_FALSE(a.enabled());  // nothing half-built on failure
}
