#include "dcs/zk_acl.hpp"

#include <openssl/evp.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cctype>

namespace pgha {
namespace {

std::string trim(const std::string &s) {
    std::size_t b = 0, e = s.size();
    while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
    while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
    return s.substr(b, e - b);
}

std::string upper(std::string s) {
    for (char &c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return s;
}

// base64 of a SHA-1 digest: 27 characters of the alphabet and one '='.
bool looks_like_digest_hash(const std::string &h) {
    if (h.size() != 28 || h[27] != '=') return false;
    return std::all_of(h.begin(), h.end() - 1,
                       [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/'; });
}

const char *const kSchemes[] = {"digest", "ip", "x509", "sasl", "world", "auth", "super"};

}  // namespace

std::string zk_digest_id(const std::string &user, const std::string &password) {
    const std::string cred = user + ":" + password;
    unsigned char md[SHA_DIGEST_LENGTH];
    SHA1(reinterpret_cast<const unsigned char *>(cred.data()), cred.size(), md);
    unsigned char b64[4 * ((SHA_DIGEST_LENGTH + 2) / 3) + 1];
    const int n = EVP_EncodeBlock(b64, md, SHA_DIGEST_LENGTH);
    return user + ":" + std::string(reinterpret_cast<const char *>(b64), static_cast<std::size_t>(n));
}

int parse_zk_perms(const std::string &text, std::string &error) {
    int perms = 0;
    std::size_t start = 0;
    const std::string t = trim(text);
    if (t.empty()) {
        error = "no permissions (READ, WRITE, CREATE, DELETE, ADMIN or ALL)";
        return 0;
    }
    while (start <= t.size()) {
        std::size_t comma = t.find(',', start);
        const std::string word = upper(trim(t.substr(start, comma == std::string::npos ? std::string::npos : comma - start)));
        if (word == "READ") perms |= zk_perm::kRead;
        else if (word == "WRITE") perms |= zk_perm::kWrite;
        else if (word == "CREATE") perms |= zk_perm::kCreate;
        else if (word == "DELETE") perms |= zk_perm::kDelete;
        else if (word == "ADMIN") perms |= zk_perm::kAdmin;
        else if (word == "ALL") perms |= zk_perm::kAll;
        else {
            error = "unknown permission \"" + word + "\" (READ, WRITE, CREATE, DELETE, ADMIN or ALL)";
            return 0;
        }
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
    return perms;
}

bool parse_zk_acls(const std::string &text, std::vector<ZkAclEntry> &out, std::string &error) {
    out.clear();
    std::size_t start = 0;
    while (start <= text.size()) {
        std::size_t semi = text.find(';', start);
        const std::string entry = trim(text.substr(start, semi == std::string::npos ? std::string::npos : semi - start));
        start = semi == std::string::npos ? text.size() + 1 : semi + 1;
        if (entry.empty()) continue;
        std::size_t sp = entry.find_first_of(" \t");  // the principal has no blanks
        if (sp == std::string::npos) {
            error = "\"" + entry + "\": expected \"<scheme:credential> <PERMISSION>[,<PERMISSION>...]\"";
            return false;
        }
        const std::string principal = trim(entry.substr(0, sp));
        std::string perr;
        ZkAclEntry e;
        e.perms = parse_zk_perms(entry.substr(sp + 1), perr);
        if (e.perms == 0) {
            error = "\"" + entry + "\": " + perr;
            return false;
        }
        std::size_t colon = principal.find(':');
        if (colon == std::string::npos) {
            e.scheme = "x509";  // Patroni's default scheme
            e.id = principal;
        } else {
            e.scheme = principal.substr(0, colon);
            e.id = principal.substr(colon + 1);
        }
        if (std::find(std::begin(kSchemes), std::end(kSchemes), e.scheme) == std::end(kSchemes)) {
            error = "\"" + principal + "\": unknown scheme \"" + e.scheme + "\" (digest, ip, x509, sasl, world)";
            return false;
        }
        if (e.id.empty()) {
            error = "\"" + principal + "\": no credential after the scheme";
            return false;
        }
        if (e.scheme == "digest") {
            std::size_t c = e.id.find(':');
            if (c == 0 || c == std::string::npos || !looks_like_digest_hash(e.id.substr(c + 1))) {
                // Do not echo it: it may be a password someone put here by mistake.
                error = "a digest principal must be digest:<user>:<base64(sha1(user:password))> (28 characters; see "
                        "README, \"ZooKeeper security\"), not a password";
                return false;
            }
        }
        // One entry per identity (ZooKeeper keeps duplicates as given).
        auto same = std::find_if(out.begin(), out.end(),
                                 [&](const ZkAclEntry &o) { return o.scheme == e.scheme && o.id == e.id; });
        if (same != out.end()) same->perms |= e.perms;
        else out.push_back(e);
    }
    return true;
}

bool make_zk_auth(const std::string &user, const std::string &password, const std::string &set_acls, ZkAuth &out,
                  std::string &error) {
    out = ZkAuth();
    if (user.empty()) {
        if (!password.empty()) {
            error = "pg_ha.zookeeper_password is set but pg_ha.zookeeper_user is empty";
            return false;
        }
        if (!trim(set_acls).empty()) {
            error = "pg_ha.zookeeper_set_acls needs pg_ha.zookeeper_user and pg_ha.zookeeper_password (without "
                    "them pg_ha could not write the znodes it creates)";
            return false;
        }
        return true;
    }
    if (user.find(':') != std::string::npos) {
        error = "pg_ha.zookeeper_user must not contain ':'";
        return false;
    }
    if (password.empty()) {
        error = "pg_ha.zookeeper_user is set but pg_ha.zookeeper_password is empty";
        return false;
    }
    std::vector<ZkAclEntry> extra;
    std::string perr;
    if (!parse_zk_acls(set_acls, extra, perr)) {
        error = "pg_ha.zookeeper_set_acls: " + perr;
        return false;
    }
    out.user = user;
    out.password = password;
    out.acl.push_back(ZkAclEntry{zk_perm::kAll, "digest", zk_digest_id(user, password)});
    for (const auto &e : extra) {
        if (e.scheme == out.acl[0].scheme && e.id == out.acl[0].id) continue;  // ours has ALL already
        out.acl.push_back(e);
    }
    return true;
}

}  // namespace pgha
