// ZooKeeper digest authentication and the ACL pg_ha puts on the znodes it
// creates. Pure (OpenSSL's SHA-1 only): no ZooKeeper client calls here.
//
// With pg_ha.zookeeper_user/zookeeper_password set, every session adds the
// digest credentials and every znode gets
//   digest:<user>:<base64(sha1(user:password))>  ALL
// plus the entries of pg_ha.zookeeper_set_acls (Patroni's set_acls), e.g. a
// read-only monitoring identity. Without credentials znodes stay open
// (world:anyone ALL), as before.
#pragma once
#include "core/no_postgres.hpp"

#include <string>
#include <vector>

namespace pgha {

// ZooKeeper's permission bits (ZOO_PERM_*; zk_session.cpp checks they match).
namespace zk_perm {
constexpr int kRead = 1, kWrite = 2, kCreate = 4, kDelete = 8, kAdmin = 16, kAll = 31;
}

struct ZkAclEntry {
    int perms = 0;
    std::string scheme;  // digest, ip, x509, sasl, world, ...
    std::string id;      // digest: "user:base64(sha1(user:password))"
    bool operator==(const ZkAclEntry &o) const { return perms == o.perms && scheme == o.scheme && id == o.id; }
};

// What a ZooKeeper session authenticates with and the ACL of what it creates.
// Holds a password: never log or print it.
struct ZkAuth {
    std::string user;      // empty: no authentication, open ACL
    std::string password;
    std::vector<ZkAclEntry> acl;  // empty: world:anyone ALL
    bool enabled() const { return !user.empty(); }
    // "user:password", what zoo_add_auth("digest", ...) takes.
    std::string digest_credential() const { return user + ":" + password; }
};

// ZooKeeper's digest id of user:password: "user:" + base64(sha1("user:password")).
std::string zk_digest_id(const std::string &user, const std::string &password);

// "READ", "read,write", "ALL"... -> permission bits; 0 with `error` on a bad word.
int parse_zk_perms(const std::string &text, std::string &error);

// pg_ha.zookeeper_set_acls: entries separated by ';', each "<principal> <PERM>[,<PERM>...]"
// (the principal has no blanks; the permissions may),
// principal "scheme:credential" (no scheme: x509, as Patroni), e.g.
//   "digest:monitor:Vg0aNDd3KX0Pl3ZSu4HTLpjOrBw= READ; ip:10.0.0.5 READ"
bool parse_zk_acls(const std::string &text, std::vector<ZkAclEntry> &out, std::string &error);

// Builds the session's authentication and ACL from the settings. false with
// `error` (naming the setting, never the password) on bad input: a user
// without a password, a ':' in the user, set_acls without credentials (pg_ha
// could lock itself out), an unparsable set_acls.
bool make_zk_auth(const std::string &user, const std::string &password, const std::string &set_acls, ZkAuth &out,
                  std::string &error);

}  // namespace pgha
