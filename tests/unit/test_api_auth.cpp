// REST API access control (basic auth, Patroni's check_access) and HTTPS:
// the pure checks in core/health_api and the real server in http/api_server.
#include "core/no_postgres.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>

#include "core/health_api.hpp"
#include "http/api_server.hpp"
#include "http/peer_client.hpp"

using namespace pgha;

namespace {

// ---- helpers ------------------------------------------------------------------

std::string b64(const std::string &in) {
    static const char *tbl = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    std::size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        const unsigned v = (unsigned char)in[i] << 16 | (unsigned char)in[i + 1] << 8 | (unsigned char)in[i + 2];
        out += tbl[v >> 18 & 63];
        out += tbl[v >> 12 & 63];
        out += tbl[v >> 6 & 63];
        out += tbl[v & 63];
    }
    if (in.size() - i == 1) {
        const unsigned v = (unsigned char)in[i] << 16;
        out += tbl[v >> 18 & 63];
        out += tbl[v >> 12 & 63];
        out += "==";
    } else if (in.size() - i == 2) {
        const unsigned v = (unsigned char)in[i] << 16 | (unsigned char)in[i + 1] << 8;
        out += tbl[v >> 18 & 63];
        out += tbl[v >> 12 & 63];
        out += tbl[v >> 6 & 63];
        out += '=';
    }
    return out;
}

std::int64_t steady_ms() { return snapshot_clock_ms(); }  // the snapshots' clock

SnapshotPtr make_node(bool primary) {
    auto s = std::make_shared<NodeSnapshot>();
    s->scope = "demo";
    s->name = "node1";
    s->version = "0.1.0";
    s->state = "running";
    s->role = primary ? "primary" : "replica";
    s->is_leader = primary;
    s->accepts_writes = primary;
    s->dcs_ok = true;
    s->loop_steady_ms = steady_ms();
    s->lease_until_steady_ms = primary ? s->loop_steady_ms + 3600 * 1000 : 0;
    s->local.state = PgState::Running;
    s->local.in_recovery = !primary;
    s->local.write_lsn = 0x3000060;
    s->local.timeline = 1;
    if (!primary) {
        s->local.replication_state = "streaming";
        s->local.receive_lsn = s->local.replay_lsn = 0x3000060;
    }
    s->cluster.leader = primary ? "node1" : "node2";
    s->cluster.config_present = true;
    return s;
}

// Sends raw bytes over plain TCP; returns the answer (until a complete
// response, the server closing, or 5 s).
std::string raw_request(int port, const std::string &data) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return "socket failed";
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (::connect(fd, reinterpret_cast<sockaddr *>(&addr), sizeof addr) != 0) {
        ::close(fd);
        return "connect failed";
    }
    std::size_t off = 0;
    while (off < data.size()) {
        ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
        if (n <= 0) break;
        off += static_cast<std::size_t>(n);
    }
    std::string out;
    char buf[4096];
    for (;;) {
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        out.append(buf, static_cast<std::size_t>(n));
        auto end = out.find("\r\n\r\n");
        if (end != std::string::npos) {
            auto cl = out.find("Content-Length: ");
            std::size_t len = cl == std::string::npos ? 0 : std::stoul(out.substr(cl + 16));
            if (out.size() >= end + 4 + len) break;
        }
    }
    ::close(fd);
    return out;
}

int status_of(const std::string &raw) {
    if (raw.rfind("HTTP/1.", 0) != 0 || raw.size() < 12) return 0;
    return std::stoi(raw.substr(9, 3));
}

std::string post_with_auth(const std::string &authorization_line) {
    return "POST /reload HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + authorization_line +
           "Content-Length: 2\r\n\r\n{}";
}

// A management hook that counts its calls.
struct CountingHook {
    std::shared_ptr<std::atomic<int>> calls = std::make_shared<std::atomic<int>>(0);
    ManagementHook hook() const {
        auto c = calls;
        return [c](const NodeSnapshot *, const HttpRequestView &req) -> std::optional<HttpReply> {
            ++*c;
            return HttpReply{202, "text/plain", "accepted " + req.method + " " + req.path};
        };
    }
};

}  // namespace

// ---- pure checks (core/health_api) -----------------------------------------------

TEST(ApiAuthCore, DecodeBase64IsStrict) {
    EXPECT_EQ(decode_base64(""), std::string());
    EXPECT_EQ(decode_base64("YQ=="), std::string("a"));
    EXPECT_EQ(decode_base64("YQ"), std::string("a"));  // unpadded
    EXPECT_EQ(decode_base64("YWI="), std::string("ab"));
    EXPECT_EQ(decode_base64("YWJj"), std::string("abc"));
    EXPECT_EQ(decode_base64(b64("user:p@ss:w0rd")), std::string("user:p@ss:w0rd"));
    EXPECT_EQ(decode_base64(b64(std::string("\0\xff\x01", 3))), std::string("\0\xff\x01", 3));
    for (const char *bad : {"Y", "YQ=", "YQ===", "Y===", "====", "YW I=", "YWJj\n", "YW-j", "YW_j", "YR==", "YQ==YQ=="})
        EXPECT_FALSE(decode_base64(bad)) << bad;
}

TEST(ApiAuthCore, ConstantTimeEquals) {
    EXPECT_TRUE(constant_time_equals("", ""));
    EXPECT_TRUE(constant_time_equals("secret", "secret"));
    EXPECT_FALSE(constant_time_equals("secreT", "secret"));
    EXPECT_FALSE(constant_time_equals("secret", "secrets"));
    EXPECT_FALSE(constant_time_equals("secrets", "secret"));
    EXPECT_FALSE(constant_time_equals("", "secret"));
    EXPECT_FALSE(constant_time_equals("x", ""));
    // a supplied value repeating the expected one is still different
    EXPECT_FALSE(constant_time_equals("abab", "ab"));
}

TEST(ApiAuthCore, BasicAuthMatches) {
    const std::string good = "Basic " + b64("admin:s3cr:et");
    EXPECT_TRUE(basic_auth_matches(good, "admin", "s3cr:et"));
    EXPECT_TRUE(basic_auth_matches("basic " + b64("admin:s3cr:et"), "admin", "s3cr:et"));  // scheme case
    EXPECT_TRUE(basic_auth_matches("BASIC  " + b64("admin:s3cr:et") + " ", "admin", "s3cr:et"));
    EXPECT_TRUE(basic_auth_matches("Basic " + b64("admin:"), "admin", ""));  // empty password
    EXPECT_FALSE(basic_auth_matches(good, "admin", "s3cr:eT"));
    EXPECT_FALSE(basic_auth_matches(good, "Admin", "s3cr:et"));
    EXPECT_FALSE(basic_auth_matches("Basic " + b64("admin:s3cr:et "), "admin", "s3cr:et"));
    EXPECT_FALSE(basic_auth_matches("Basic " + b64("admin"), "admin", ""));  // no colon
    EXPECT_FALSE(basic_auth_matches("Basic " + b64("adminsecret"), "admin", "secret"));
    EXPECT_FALSE(basic_auth_matches("Basic " + b64(":admin:secret"), "admin", "secret"));
    EXPECT_FALSE(basic_auth_matches("Bearer " + b64("admin:secret"), "admin", "secret"));
    EXPECT_FALSE(basic_auth_matches("Basic" + b64("admin:secret"), "admin", "secret"));
    EXPECT_FALSE(basic_auth_matches(b64("admin:secret"), "admin", "secret"));
    EXPECT_FALSE(basic_auth_matches("Basic", "admin", "secret"));
    EXPECT_FALSE(basic_auth_matches("Basic ", "", ""));
    EXPECT_FALSE(basic_auth_matches("", "admin", "secret"));
    EXPECT_FALSE(basic_auth_matches("Basic !!!!", "admin", "secret"));
    EXPECT_FALSE(basic_auth_matches("Basic YWRtaW46c2VjcmV0=", "admin", "secret"));  // bad padding
    EXPECT_FALSE(basic_auth_matches(std::string("Basic \0\xff", 8), "admin", "secret"));
    // a valid-looking but huge token is rejected without decoding
    const std::string huge_secret(5000, 'x');
    EXPECT_FALSE(basic_auth_matches("Basic " + b64("admin:" + huge_secret), "admin", huge_secret));
    EXPECT_FALSE(basic_auth_matches("Basic " + std::string(1 << 20, 'A'), "admin", "secret"));
}

// issue 10: without credentials or client certificates the management API is
// closed; only the explicit opt-out opens it.
TEST(ApiAuthCore, UnsafeMethodsClosedByDefault) {
    ApiAccessPolicy closed;
    EXPECT_FALSE(closed.protects_unsafe_methods());
    for (const char *m : {"GET", "HEAD", "OPTIONS"}) EXPECT_FALSE(check_access(closed, m, nullptr, false)) << m;
    const std::string any = "Basic " + b64("admin:secret");
    for (const char *m : {"POST", "PUT", "PATCH", "DELETE", "FOO"}) {
        for (const std::string *auth : {static_cast<const std::string *>(nullptr), &any}) {
            auto r = check_access(closed, m, auth, false);
            ASSERT_TRUE(r) << m;
            EXPECT_EQ(r->status, 401) << m;
            EXPECT_EQ(r->body, kApiClosedMessage);
        }
        EXPECT_EQ(check_access(closed, m, nullptr, true)->status, 401) << "a certificate nobody asked for";
    }
    // a password without a user configures nothing
    closed.password = "secret";
    EXPECT_EQ(check_access(closed, "POST", &any, false)->status, 401);

    ApiAccessPolicy open;
    open.allow_unauthenticated = true;
    for (const char *m : {"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"})
        EXPECT_FALSE(check_access(open, m, nullptr, false)) << m;
    // the opt-out does not weaken configured credentials
    open.username = "admin";
    open.password = "pw";
    EXPECT_EQ(check_access(open, "POST", nullptr, false)->status, 401);
}

TEST(ApiAuthCore, AllowlistAndMembers) {
    auto n = parse_ip_network("10.1.0.0/16");
    ASSERT_TRUE(n);
    EXPECT_TRUE(ip_in_network("10.1.200.3", *n));
    EXPECT_FALSE(ip_in_network("10.2.0.1", *n));
    EXPECT_TRUE(ip_in_network("::ffff:10.1.0.9", *n));  // dual-stack socket
    EXPECT_FALSE(ip_in_network("", *n));
    EXPECT_FALSE(ip_in_network("not-an-ip", *n));
    auto v6 = parse_ip_network("fe80::/10");
    ASSERT_TRUE(v6);
    EXPECT_TRUE(ip_in_network("fe80::1", *v6));
    EXPECT_FALSE(ip_in_network("10.1.0.1", *v6));
    auto one = parse_ip_network("192.0.2.7");
    ASSERT_TRUE(one);
    EXPECT_EQ(one->prefix, 32);
    EXPECT_TRUE(ip_in_network("192.0.2.7", *one));
    EXPECT_FALSE(ip_in_network("192.0.2.8", *one));
    EXPECT_TRUE(ip_in_network("1.2.3.4", *parse_ip_network("0.0.0.0/0")));
    for (const char *bad : {"", "10.0.0.0/33", "10.0.0.0/", "10.0.0.0/-1", "::/129", "host", "10.0.0.1/8x", "1.2.3"})
        EXPECT_FALSE(parse_ip_network(bad)) << bad;

    std::vector<IpNetwork> list;
    std::string err;
    EXPECT_TRUE(parse_allowlist(" 127.0.0.1, 10.0.0.0/8  ::1 ", list, err));
    EXPECT_EQ(list.size(), 3u);
    EXPECT_TRUE(parse_allowlist("", list, err));
    EXPECT_TRUE(list.empty());
    EXPECT_FALSE(parse_allowlist("127.0.0.1,pg-1", list, err));
    EXPECT_NE(err.find("\"pg-1\""), std::string::npos) << err;

    ApiAccessPolicy p;
    p.username = "admin";
    p.password = "secret";
    const std::string good = "Basic " + b64("admin:secret");
    ASSERT_TRUE(parse_allowlist("10.0.0.0/8", p.allowlist, err));
    EXPECT_FALSE(check_access(p, "POST", &good, false, "10.9.9.9"));
    auto r = check_access(p, "POST", &good, false, "192.168.1.1");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 403);
    EXPECT_EQ(r->body, "Access is denied");
    EXPECT_EQ(check_access(p, "POST", &good, false, "")->status, 403);  // unknown address: denied
    EXPECT_EQ(check_access(p, "POST", &good, false)->status, 403);
    EXPECT_FALSE(check_access(p, "GET", nullptr, false, "192.168.1.1"));  // reads are not restricted
    EXPECT_EQ(check_access(p, "POST", nullptr, false, "10.9.9.9")->status, 401);  // allowlist adds, not replaces

    p.allowlist_include_members = true;
    EXPECT_EQ(check_access(p, "POST", &good, false, "192.168.1.1", {"192.168.1.2"})->status, 403);
    EXPECT_FALSE(check_access(p, "POST", &good, false, "192.168.1.1", {"192.168.1.2", "192.168.1.1"}));
    p.allowlist.clear();  // members only
    EXPECT_FALSE(check_access(p, "POST", &good, false, "::ffff:192.168.1.1", {"192.168.1.1"}));
    EXPECT_EQ(check_access(p, "POST", &good, false, "10.9.9.9", {"192.168.1.1"})->status, 403);
    EXPECT_EQ(check_access(p, "POST", &good, false, "10.9.9.9", {"not-resolved"})->status, 403);

    NodeSnapshot snap;
    Member a, b, c, d;
    a.api_url = "http://10.0.0.1:8008/patroni";
    b.api_url = "https://[fd00::2]:8008/patroni";
    c.api_url = "http://pg-3:8008/patroni";
    d.api_url = "garbage";
    snap.cluster.members = {a, b, c, d, a};
    EXPECT_EQ(member_api_hosts(snap), (std::vector<std::string>{"10.0.0.1", "fd00::2", "pg-3"}));
}

TEST(ApiAuthCore, CheckAccessFollowsPatroni) {

    ApiAccessPolicy p;
    p.username = "admin";
    p.password = "secret";
    const std::string good = "Basic " + b64("admin:secret");
    const std::string bad = "Basic " + b64("admin:wrong");
    for (const char *m : {"GET", "HEAD", "OPTIONS"}) {
        EXPECT_FALSE(check_access(p, m, nullptr, false)) << m;
        EXPECT_FALSE(check_access(p, m, &bad, false)) << m;  // reads never look at credentials
    }
    for (const char *m : {"POST", "PUT", "PATCH", "DELETE", "FOO"}) {
        auto r = check_access(p, m, nullptr, false);
        ASSERT_TRUE(r) << m;
        EXPECT_EQ(r->status, 401);
        EXPECT_EQ(r->body, "no auth header received");
        r = check_access(p, m, &bad, false);
        ASSERT_TRUE(r) << m;
        EXPECT_EQ(r->status, 401);
        EXPECT_EQ(r->body, "not authenticated");
        EXPECT_FALSE(check_access(p, m, &good, false)) << m;
    }

    p.auth_for_reads = true;
    ASSERT_TRUE(check_access(p, "GET", nullptr, false));
    EXPECT_EQ(check_access(p, "HEAD", &bad, false)->status, 401);
    EXPECT_FALSE(check_access(p, "GET", &good, false));

    // verify_client optional/required over HTTPS: unsafe methods need a
    // verified client certificate (403 comes before the credentials check).
    ApiAccessPolicy c;
    c.client_cert_required = true;
    EXPECT_FALSE(check_access(c, "GET", nullptr, false));
    auto r = check_access(c, "POST", nullptr, false);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 403);
    EXPECT_EQ(r->body, "client certificate required");
    EXPECT_FALSE(check_access(c, "POST", nullptr, true));
    c.username = "admin";
    c.password = "secret";
    EXPECT_EQ(check_access(c, "POST", &good, false)->status, 403);
    EXPECT_EQ(check_access(c, "POST", nullptr, true)->status, 401);
    EXPECT_FALSE(check_access(c, "POST", &good, true));
}

// ---- the server over plain HTTP ------------------------------------------------

class ApiAuthServerTest : public ::testing::Test {
  protected:
    void start(bool auth_for_reads = false) {
        ApiServerOptions o;
        o.auth_username = "admin";
        o.auth_password = "s3cret";
        o.auth_for_reads = auth_for_reads;
        server = std::make_unique<ApiServer>(o);
        ASSERT_TRUE(server->set_management_hook(counter.hook()));
        box.publish(make_node(true));
        std::string error;
        ASSERT_TRUE(server->start("127.0.0.1:0", box, error)) << error;
    }
    httplib::Client client() {
        httplib::Client c("127.0.0.1", server->port());
        c.set_connection_timeout(5, 0);
        c.set_read_timeout(5, 0);
        c.set_tcp_nodelay(true);  // else the body waits for the server's delayed ACK
        return c;
    }
    int calls() const { return counter.calls->load(); }
    SnapshotBox box;
    CountingHook counter;
    std::unique_ptr<ApiServer> server;
};

TEST_F(ApiAuthServerTest, UnsafeMethodsNeedCredentialsReadsStayOpen) {
    start();
    auto cli = client();
    cli.set_keep_alive(true);

    // No credentials: 401 with the challenge, and the hook never runs.
    auto r = cli.Post("/switchover", "{\"leader\":\"node1\"}", "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 401);
    EXPECT_EQ(r->get_header_value("WWW-Authenticate"), "Basic realm=\"pg_ha\"");
    EXPECT_EQ(r->body, "no auth header received");
    auto expect_401 = [](const httplib::Result &res, const char *what) {
        ASSERT_TRUE(res) << what;
        EXPECT_EQ(res->status, 401) << what;
        EXPECT_TRUE(res->has_header("WWW-Authenticate")) << what;
    };
    expect_401(cli.Delete("/switchover"), "DELETE");
    expect_401(cli.Patch("/config", "{}", "application/json"), "PATCH");
    expect_401(cli.Put("/config", "{}", "application/json"), "PUT");
    expect_401(cli.Post("/reload"), "POST without body");
    // Without Content-Length too (served by the pre-routing handler).
    EXPECT_EQ(status_of(raw_request(server->port(), "POST /reload HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")),
              401);
    EXPECT_EQ(calls(), 0);

    // Wrong password, wrong user: 401, hook not called.
    cli.set_basic_auth("admin", "wrong");
    r = cli.Post("/reload", "{}", "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 401);
    EXPECT_EQ(r->body, "not authenticated");
    cli.set_basic_auth("root", "s3cret");
    r = cli.Post("/reload", "{}", "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 401);
    EXPECT_EQ(calls(), 0);

    // Right credentials: the hook answers (same keep-alive connection).
    cli.set_basic_auth("admin", "s3cret");
    r = cli.Post("/reload", "{}", "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 202);
    EXPECT_EQ(r->body, "accepted POST /reload");
    r = cli.Delete("/switchover");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 202);
    EXPECT_EQ(calls(), 2);

    // GET/HEAD/OPTIONS without credentials: as before.
    auto reader = client();
    r = reader.Get("/primary");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    r = reader.Get("/replica");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 503);
    r = reader.Options("/primary");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    r = reader.Head("/replica");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 503);
    box.publish(make_node(false));
    r = reader.Get("/replica");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    // Wrong credentials on a read are ignored, as in Patroni.
    reader.set_basic_auth("admin", "wrong");
    r = reader.Get("/patroni");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(calls(), 2);
}

TEST_F(ApiAuthServerTest, MalformedAuthorizationHeadersAre401) {
    start();
    const int port = server->port();
    const std::vector<std::string> headers = {
        "Authorization: Bearer " + b64("admin:s3cret") + "\r\n",  // not Basic
        "Authorization: " + b64("admin:s3cret") + "\r\n",         // no scheme
        "Authorization: Basic\r\n",                               // no token
        "Authorization:\r\n",                                     // empty
        "Authorization: Basic !!!not-base64!!!\r\n",              // bad base64
        "Authorization: Basic YWRtaW46czNjcmV0=\r\n",             // bad padding
        "Authorization: Basic " + b64("admins3cret") + "\r\n",    // no colon
        "Authorization: Basic " + b64("admin:s3cret") + " " + b64("x") + "\r\n",  // trailing junk
        "Authorization: Basic " + b64("admin:s3cret\n") + "\r\n",
        std::string("Authorization: Basic \xff\xfe\x80\r\n"),
        // huge (but under cpp-httplib's 8 KiB line limit)
        "Authorization: Basic " + std::string(7000, 'A') + "\r\n",
        "Authorization: Basic " + b64("admin:" + std::string(5000, 'x')) + "\r\n",
        // a right and a wrong header: ambiguous, rejected
        "Authorization: Basic " + b64("admin:s3cret") + "\r\nAuthorization: Basic " + b64("admin:no") + "\r\n",
    };
    for (const auto &h : headers) {
        const std::string raw = raw_request(port, post_with_auth(h));
        EXPECT_EQ(status_of(raw), 401) << h.substr(0, 80) << "\n" << raw.substr(0, 200);
        EXPECT_NE(raw.find("WWW-Authenticate: Basic realm=\"pg_ha\""), std::string::npos) << h.substr(0, 80);
    }
    // Beyond cpp-httplib's header line limit: refused before our handler
    // (400 or a closed connection), never a 2xx, never a crash.
    const std::string raw =
        raw_request(port, post_with_auth("Authorization: Basic " + std::string(64 * 1024, 'A') + "\r\n"));
    const int st = status_of(raw);
    EXPECT_TRUE(st == 0 || (st >= 400 && st < 500)) << raw.substr(0, 200);
    EXPECT_EQ(calls(), 0);

    // The server still works, and the right header (any scheme case) is accepted.
    EXPECT_EQ(status_of(raw_request(port, post_with_auth("Authorization: basic " + b64("admin:s3cret") + "\r\n"))),
              202);
    EXPECT_EQ(status_of(raw_request(port, "GET /primary HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")), 200);
    EXPECT_EQ(calls(), 1);
}

TEST_F(ApiAuthServerTest, AuthForReadsProtectsGetToo) {
    start(/*auth_for_reads=*/true);
    auto cli = client();
    auto r = cli.Get("/primary");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 401);
    EXPECT_TRUE(r->has_header("WWW-Authenticate"));
    cli.set_basic_auth("admin", "s3cret");
    r = cli.Get("/primary");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    r = cli.Post("/reload", "{}", "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 202);
}

TEST(ApiAuthServer, InvalidVerifyClientFailsStart) {
    ApiServerOptions o;
    o.verify_client = "sometimes";
    ApiServer server(o);
    SnapshotBox box;
    std::string error;
    EXPECT_FALSE(server.start("127.0.0.1:0", box, error));
    EXPECT_NE(error.find("verify_client"), std::string::npos) << error;
    EXPECT_EQ(server.port(), 0);
}

// ---- HTTPS ---------------------------------------------------------------------------

namespace {

// Throwaway CA, server certificate (CN/SAN 127.0.0.1, signed by the CA),
// client certificate (signed by the CA), a self-signed server certificate and
// an encrypted copy of the server key, made with the openssl CLI.
struct TlsFiles {
    std::string dir;
    bool ok = false;
    std::string path(const char *name) const { return dir + "/" + name; }

    TlsFiles() {
        char tmpl[] = "/tmp/pgha_tls_XXXXXX";
        if (!::mkdtemp(tmpl)) return;
        dir = tmpl;
        const std::string cmd =
            "(cd '" + dir + "' && openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=pg_ha-test-ca -days 1 -keyout ca.key -out ca.pem"
                " && openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1"
                " -keyout server.key -out server.csr"
                " && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1"
                " -copy_extensions copy -out server.pem"
                " && openssl req -newkey rsa:2048 -nodes -subj /CN=client -keyout client.key -out client.csr"
                " && openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -out client.pem"
                " && openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -days 1"
                " -keyout self.key -out self.pem"
                " && openssl rsa -in server.key -aes256 -passout pass:k3ypass -out server_enc.key"
                " && cat server.pem server.key > combined.pem"
                " && echo 'not a certificate' > garbage.pem) >/dev/null 2>&1";
        ok = std::system(cmd.c_str()) == 0;
    }
    ~TlsFiles() {
        if (!dir.empty()) std::system(("rm -rf '" + dir + "'").c_str());
    }
};

TlsFiles *tls_files = nullptr;

}  // namespace

class ApiTlsTest : public ::testing::Test {
  protected:
    static void SetUpTestSuite() {
        if (std::system("openssl version >/dev/null 2>&1") != 0) return;
        tls_files = new TlsFiles();
    }
    static void TearDownTestSuite() {
        delete tls_files;
        tls_files = nullptr;
    }
    void SetUp() override {
        // openssl is installed by scripts/install-deps.sh: no certificates is a failure, not a skip.
        ASSERT_TRUE(tls_files && tls_files->ok) << "could not create test certificates with the openssl CLI";
        box.publish(make_node(true));
    }
    std::string f(const char *name) const { return tls_files->path(name); }
    ApiServerOptions tls_options() const {
        ApiServerOptions o;
        o.certfile = f("server.pem");
        o.keyfile = f("server.key");
        return o;
    }
    bool start(const ApiServerOptions &o, std::string &error) {
        server = std::make_unique<ApiServer>(o);
        server->set_management_hook(counter.hook());
        return server->start("127.0.0.1:0", box, error);
    }
    std::unique_ptr<httplib::SSLClient> client(const char *cert = nullptr, const char *key = nullptr) {
        auto c = cert ? std::make_unique<httplib::SSLClient>("127.0.0.1", server->port(), f(cert), f(key))
                      : std::make_unique<httplib::SSLClient>("127.0.0.1", server->port());
        c->enable_server_certificate_verification(false);
        c->set_connection_timeout(5, 0);
        c->set_read_timeout(5, 0);
        c->set_tcp_nodelay(true);
        return c;
    }
    SnapshotBox box;
    CountingHook counter;
    std::unique_ptr<ApiServer> server;
};

TEST_F(ApiTlsTest, ServesHttpsWithAuth) {
    ApiServerOptions o = tls_options();
    o.auth_username = "admin";
    o.auth_password = "s3cret";
    std::string error;
    ASSERT_TRUE(start(o, error)) << error;

    auto cli = client();
    auto r = cli->Get("/primary");
    ASSERT_TRUE(r) << httplib::to_string(r.error());
    EXPECT_EQ(r->status, 200);
    r = cli->Get("/replica");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 503);
    r = cli->Post("/reload", "{}", "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 401);
    EXPECT_EQ(r->get_header_value("WWW-Authenticate"), "Basic realm=\"pg_ha\"");
    EXPECT_EQ(counter.calls->load(), 0);
    cli->set_basic_auth("admin", "s3cret");
    r = cli->Post("/reload", "{}", "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 202);
    EXPECT_EQ(counter.calls->load(), 1);

    // The server certificate verifies against the CA, for host 127.0.0.1.
    auto verified = client();
    verified->set_ca_cert_path(f("ca.pem"));
    verified->enable_server_certificate_verification(true);
    r = verified->Get("/patroni");
    ASSERT_TRUE(r) << httplib::to_string(r.error());
    EXPECT_EQ(r->status, 200);

    // Plain HTTP to the HTTPS port gets no HTTP answer; the server keeps serving.
    const std::string raw = raw_request(server->port(), "GET /primary HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_EQ(status_of(raw), 0);
    r = client()->Get("/primary");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    server->stop();
    EXPECT_EQ(server->port(), 0);
}

TEST_F(ApiTlsTest, KeyInCertfileAndEncryptedKey) {
    ApiServerOptions o;
    o.certfile = f("combined.pem");  // keyfile "": the key is in the certfile
    std::string error;
    ASSERT_TRUE(start(o, error)) << error;
    auto r = client()->Get("/primary");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    server->stop();

    o = tls_options();
    o.keyfile = f("server_enc.key");
    o.keyfile_password = "k3ypass";
    ASSERT_TRUE(start(o, error)) << error;
    r = client()->Get("/primary");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    server->stop();

    o.keyfile_password = "wrong";  // never a terminal prompt
    EXPECT_FALSE(start(o, error));
    EXPECT_NE(error.find("server_enc.key"), std::string::npos) << error;
    EXPECT_NE(error.find("keyfile_password"), std::string::npos) << error;
    o.keyfile_password.clear();
    EXPECT_FALSE(start(o, error));
    EXPECT_NE(error.find("server_enc.key"), std::string::npos) << error;
}

TEST_F(ApiTlsTest, UnusableCertificateFilesFailStartWithAnError) {
    struct Case {
        const char *what;
        ApiServerOptions o;
        std::string expect;  // substring of the error
    };
    std::vector<Case> cases;
    {
        ApiServerOptions o = tls_options();
        o.certfile = f("missing.pem");
        cases.push_back({"missing certfile", o, "missing.pem\" is not readable: No such file"});
    }
    {
        ApiServerOptions o = tls_options();
        o.certfile = f("garbage.pem");
        cases.push_back({"garbage certfile", o, "certfile \"" + f("garbage.pem") + "\""});
    }
    {
        ApiServerOptions o = tls_options();
        o.certfile = tls_files->dir;  // a directory
        cases.push_back({"directory certfile", o, "certfile"});
    }
    {
        ApiServerOptions o = tls_options();
        o.keyfile = f("missing.key");
        cases.push_back({"missing keyfile", o, "missing.key\" is not readable"});
    }
    {
        ApiServerOptions o = tls_options();
        o.keyfile = f("garbage.pem");
        cases.push_back({"garbage keyfile", o, "private key"});
    }
    {
        ApiServerOptions o = tls_options();
        o.keyfile = f("self.key");  // another key
        cases.push_back({"mismatched key", o, "does not match"});
    }
    {
        ApiServerOptions o = tls_options();
        o.certfile = f("server.pem");
        o.keyfile.clear();  // server.pem has no key
        cases.push_back({"no key", o, "private key"});
    }
    {
        ApiServerOptions o = tls_options();
        o.cafile = f("missing-ca.pem");
        o.verify_client = "required";
        cases.push_back({"missing cafile", o, "missing-ca.pem\" is not readable"});
    }
    {
        ApiServerOptions o = tls_options();
        o.cafile = f("garbage.pem");
        o.verify_client = "required";
        cases.push_back({"garbage cafile", o, "cafile"});
    }
    {
        ApiServerOptions o = tls_options();
        o.verify_client = "maybe";
        cases.push_back({"bad verify_client", o, "verify_client \"maybe\""});
    }
    {
        ApiServerOptions o = tls_options();
        o.ciphers = "NO-SUCH-CIPHER";
        cases.push_back({"bad ciphers", o, "ciphers"});
    }
    for (const auto &c : cases) {
        std::string error;
        bool started = true;
        EXPECT_NO_THROW(started = start(c.o, error)) << c.what;
        EXPECT_FALSE(started) << c.what;
        EXPECT_NE(error.find(c.expect), std::string::npos) << c.what << ": " << error;
        EXPECT_EQ(server->port(), 0) << c.what;
        EXPECT_FALSE(server->alive()) << c.what;
    }
    // The address is free again: a good configuration starts.
    std::string error;
    ASSERT_TRUE(start(tls_options(), error)) << error;
}

TEST_F(ApiTlsTest, VerifyClientRequired) {
    ApiServerOptions o = tls_options();
    o.cafile = f("ca.pem");
    o.verify_client = "REQUIRED";  // case-insensitive, as Patroni
    std::string error;
    ASSERT_TRUE(start(o, error)) << error;

    // No client certificate: the handshake fails (with TLS 1.3 the client
    // sees it on the first read), no HTTP answer.
    auto r = client()->Get("/primary");
    EXPECT_FALSE(r);
    // A certificate the CA did not sign: fails too.
    r = client("self.pem", "self.key")->Get("/primary");
    EXPECT_FALSE(r);
    // The CA-signed client certificate: served; POST reaches the hook.
    auto cli = client("client.pem", "client.key");
    r = cli->Get("/primary");
    ASSERT_TRUE(r) << httplib::to_string(r.error());
    EXPECT_EQ(r->status, 200);
    r = cli->Post("/reload", "{}", "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 202);
    EXPECT_EQ(counter.calls->load(), 1);
}

TEST_F(ApiTlsTest, VerifyClientOptional) {
    ApiServerOptions o = tls_options();
    o.cafile = f("ca.pem");
    o.verify_client = "optional";
    o.auth_username = "admin";
    o.auth_password = "s3cret";
    std::string error;
    ASSERT_TRUE(start(o, error)) << error;

    // Without a client certificate: reads work, writes get Patroni's 403.
    auto anon = client();
    anon->set_basic_auth("admin", "s3cret");
    auto r = anon->Get("/primary");
    ASSERT_TRUE(r) << httplib::to_string(r.error());
    EXPECT_EQ(r->status, 200);
    r = anon->Post("/reload", "{}", "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 403);
    EXPECT_EQ(r->body, "client certificate required");
    // An untrusted certificate still fails the handshake.
    EXPECT_FALSE(client("self.pem", "self.key")->Get("/primary"));

    // With the certificate: the credentials decide.
    auto cli = client("client.pem", "client.key");
    r = cli->Post("/reload", "{}", "application/json");
    ASSERT_TRUE(r) << httplib::to_string(r.error());
    EXPECT_EQ(r->status, 401);
    EXPECT_EQ(counter.calls->load(), 0);
    cli->set_basic_auth("admin", "s3cret");
    r = cli->Post("/reload", "{}", "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 202);
    EXPECT_EQ(counter.calls->load(), 1);
}

// TCP_NODELAY over TLS: cpp-httplib writes headers and body as separate TLS
// records; with Nagle each keep-alive response would wait for the client's
// delayed ACK (~40 ms). 300 sequential requests must take well under that.
TEST_F(ApiTlsTest, KeepAliveThroughputAndFreshHandshakes) {
    std::string error;
    ASSERT_TRUE(start(tls_options(), error)) << error;
    auto cli = client();
    cli->set_keep_alive(true);
    const int n = 300;
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < n; ++i) {
        auto r = cli->Get("/primary");
        ASSERT_TRUE(r) << i;
        ASSERT_EQ(r->status, 200);
    }
    const auto keep_alive_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_LT(keep_alive_ms, 3000) << "Nagle on the TLS connections?";

    // New connection (full handshake) per request, 4 clients in parallel.
    std::atomic<int> failed{0};
    t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&] {
            for (int i = 0; i < 25; ++i) {
                httplib::SSLClient c("127.0.0.1", server->port());
                c.enable_server_certificate_verification(false);
                auto r = c.Get("/primary");
                if (!r || r->status != 200) ++failed;
            }
        });
    for (auto &t : threads) t.join();
    const auto fresh_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_EQ(failed.load(), 0);
    EXPECT_LT(fresh_ms, 10000);
    std::cout << "[ TLS      ] " << n << " keep-alive requests in " << keep_alive_ms << " ms; 100 new connections in "
              << fresh_ms << " ms" << std::endl;
}

// Issue 10 item 3 over HTTPS: connections that never finish their TLS
// handshake (silent, or a record header and then nothing) cost no thread and
// are closed at the head deadline; checks on fresh connections are answered
// meanwhile. (cpp-httplib's thread per connection, used for HTTPS before,
// kept each of them for the 5 s read timeout: 16 of them starved the checks.)
TEST_F(ApiTlsTest, StalledHandshakesDoNotStarveChecks) {
    ApiServerOptions o = tls_options();
    o.head_deadline_ms = 700;
    std::string error;
    ASSERT_TRUE(start(o, error)) << error;
    std::vector<int> stalled;
    for (int i = 0; i < 120; ++i) {
        int fd = ::socket(AF_INET, SOCK_STREAM, 0);
        ASSERT_GE(fd, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(static_cast<std::uint16_t>(server->port()));
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof a), 0);
        if (i % 2 == 1) {
            static const unsigned char kRecordHeader[] = {0x16, 0x03, 0x01, 0x02, 0x00};  // then nothing
            ASSERT_EQ(::send(fd, kRecordHeader, sizeof kRecordHeader, MSG_NOSIGNAL), 5);
        }
        stalled.push_back(fd);
    }
    for (int i = 0; i < 20; ++i) {
        auto r = client()->Get("/primary");
        ASSERT_TRUE(r) << i << ": " << httplib::to_string(r.error());
        EXPECT_EQ(r->status, 200);
    }
    // The stalled ones are closed by the server once the head deadline passed.
    int closed = 0;
    for (int round = 0; round < 60 && closed < static_cast<int>(stalled.size()); ++round) {
        closed = 0;
        for (int fd : stalled) {
            char b;
            const ssize_t n = ::recv(fd, &b, 1, MSG_DONTWAIT | MSG_PEEK);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) ++closed;
        }
        if (closed < static_cast<int>(stalled.size())) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    EXPECT_EQ(closed, static_cast<int>(stalled.size()));
    EXPECT_LE(server->connections(), 2u);
    for (int fd : stalled) ::close(fd);
}

// ---- issue 10: closed by default, opt-out, allowlist (real server) ----------------

namespace {

struct ClosedServer {
    explicit ClosedServer(ApiServerOptions o) : server(std::move(o)) {
        box.publish(make_node(true));
        EXPECT_TRUE(server.set_management_hook(counter.hook()));
        EXPECT_TRUE(server.start("127.0.0.1:0", box, error)) << error;
    }
    httplib::Client client() {
        httplib::Client c("127.0.0.1", server.port());
        c.set_connection_timeout(5, 0);
        c.set_read_timeout(5, 0);
        return c;
    }
    SnapshotBox box;
    CountingHook counter;
    ApiServer server;
    std::string error;
};

}  // namespace

TEST(ApiAuthDefaults, DefaultServerRefusesUnsafeMethods) {
    ClosedServer s{ApiServerOptions()};
    auto cli = s.client();
    for (const char *path : {"/restart", "/switchover", "/reinitialize", "/failsafe"}) {
        auto r = cli.Post(path, "{}", "application/json");
        ASSERT_TRUE(r) << path;
        EXPECT_EQ(r->status, 401) << path;
        EXPECT_EQ(r->body, kApiClosedMessage);
        EXPECT_EQ(r->get_header_value("WWW-Authenticate"), "Basic realm=\"pg_ha\"");
    }
    auto r = cli.Post("/restart");  // no body at all
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 401);
    r = cli.Patch("/config", "{\"pause\":true}", "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 401);
    r = cli.Delete("/switchover");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 401);
    EXPECT_EQ(s.counter.calls->load(), 0) << "the management hook ran for an unauthenticated request";
    r = cli.Get("/primary");  // reads stay open
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
}

TEST(ApiAuthDefaults, ExplicitOptOutOpensThem) {
    ApiServerOptions o;
    o.allow_unauthenticated = true;
    ClosedServer s{o};
    auto r = s.client().Post("/restart", "{}", "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 202);
    EXPECT_EQ(s.counter.calls->load(), 1);
}

TEST(ApiAuthDefaults, AllowlistDeniesOtherAddresses) {
    ApiServerOptions o;
    o.auth_username = "admin";
    o.auth_password = "pw";
    o.allowlist = "127.0.0.2, 10.0.0.0/8";  // the client is 127.0.0.1
    {
        ClosedServer s{o};
        auto cli = s.client();
        cli.set_basic_auth("admin", "pw");
        auto r = cli.Post("/restart", "{}", "application/json");
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, 403);
        EXPECT_EQ(r->body, "Access is denied");
        EXPECT_EQ(s.counter.calls->load(), 0);
        r = cli.Get("/primary");
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, 200);
    }
    o.allowlist = "127.0.0.0/8";
    {
        ClosedServer s{o};
        auto cli = s.client();
        cli.set_basic_auth("admin", "pw");
        auto r = cli.Post("/restart", "{}", "application/json");
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, 202);
    }
    o.allowlist = "127.0.0.1, pg-1";
    ApiServer bad(o);
    SnapshotBox box;
    std::string error;
    EXPECT_FALSE(bad.start("127.0.0.1:0", box, error));
    EXPECT_NE(error.find("allowlist"), std::string::npos) << error;
}

// S9: the peer client sends credentials only with unsafe methods, and over
// plain http only when allowed (the URL comes from ZooKeeper).
TEST(ApiAuthPeerClient, CredentialsOnlyOnUnsafeMethodsAndNotOverPlainHttp) {
    ApiServerOptions o;
    o.auth_username = "admin";
    o.auth_password = "pw";
    o.auth_for_reads = true;  // a GET that carried the credentials would pass
    ClosedServer s{o};
    const std::string base = "http://127.0.0.1:" + std::to_string(s.server.port());

    PeerRequest post;
    post.url = base + "/restart";
    post.method = "POST";
    post.body = "{}";
    post.basic_auth = "admin:pw";
    auto r = http_parallel({post}, 3000);
    ASSERT_EQ(r.size(), 1u);
    EXPECT_FALSE(r[0].ok);
    EXPECT_NE(r[0].error.find("plain http"), std::string::npos) << r[0].error;
    EXPECT_EQ(s.counter.calls->load(), 0);

    post.allow_http_credentials = true;
    r = http_parallel({post}, 3000);
    ASSERT_TRUE(r[0].ok) << r[0].error;
    EXPECT_EQ(r[0].status, 202);
    EXPECT_EQ(s.counter.calls->load(), 1);

    PeerRequest get;
    get.url = base + "/patroni";
    get.basic_auth = "admin:pw";
    get.allow_http_credentials = true;
    r = http_parallel({get}, 3000);
    ASSERT_TRUE(r[0].ok) << r[0].error;
    EXPECT_EQ(r[0].status, 401) << "credentials went out with a GET";
    get.allow_http_credentials = false;  // a GET never needs them: no refusal either
    r = http_parallel({get}, 3000);
    ASSERT_TRUE(r[0].ok) << r[0].error;
}
