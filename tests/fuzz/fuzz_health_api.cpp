// libFuzzer target: the REST API's request router and access control.
// Input = one raw HTTP/1.1 request head (+ body): it goes through the plain-
// HTTP server's parser (http/event_server parse_request_head), then
// check_access and handle_request (core/health_api) on a primary's and on a
// replica's snapshot, with a management hook that accepts everything.
// Properties: nothing throws, every status is a valid HTTP code, unsafe
// methods never reach the hook without the right credentials.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/health_api.hpp"
#include "http/event_server.hpp"

using namespace pgha;

namespace {

SnapshotPtr node(bool primary) {
    auto s = std::make_shared<NodeSnapshot>();
    s->scope = "demo";
    s->name = primary ? "pg-1" : "pg-2";
    s->state = "running";
    s->role = primary ? "primary" : "replica";
    s->is_leader = primary;
    s->accepts_writes = primary;
    s->dcs_ok = true;
    s->loop_steady_ms = 1000;
    s->lease_until_steady_ms = primary ? 30000 : 0;  // requests come at 2000: the lease holds
    s->local.state = PgState::Running;
    s->local.in_recovery = !primary;
    s->local.write_lsn = 0x3000060;
    s->local.receive_lsn = s->local.replay_lsn = primary ? 0 : 0x3000000;
    s->local.timeline = 1;
    s->cluster.leader = "pg-1";
    s->cluster.config_present = true;
    Member a, b;
    a.name = "pg-1";
    a.api_url = "http://10.0.0.1:8008/patroni";
    a.conn_url = "postgres://10.0.0.1:5432/postgres";
    b.name = "pg-2";
    b.api_url = "http://10.0.0.2:8008/patroni";
    b.conn_url = "postgres://10.0.0.2:5432/postgres";
    s->cluster.members = {a, b};
    return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    static const SnapshotPtr primary = node(true), replica = node(false);
    const std::string input(reinterpret_cast<const char *>(data), size);
    std::size_t end = input.find("\r\n\r\n");
    const std::string head = input.substr(0, end);
    const std::string body = end == std::string::npos ? std::string() : input.substr(end + 4);

    EventRequest req;
    if (parse_request_head(head, 64, req) != 0) return 0;
    req.body = body;
    req.remote_addr = "10.0.0.2";

    ApiAccessPolicy policy;
    policy.username = "admin";
    policy.password = "s3cret";
    std::vector<IpNetwork> nets;
    std::string err;
    parse_allowlist(req.header("x-allowlist") ? *req.header("x-allowlist") : std::string(), nets, err);
    policy.allowlist = nets;
    policy.allowlist_include_members = req.header("x-members") != nullptr;
    const std::string *auth = req.header("authorization");
    auto denied = check_access(policy, req.method, auth, false, req.remote_addr,
                               member_api_hosts(*primary));
    ApiAccessPolicy closed;
    auto closed_denied = check_access(closed, req.method, auth, false, req.remote_addr);
    if (!is_safe_method(req.method) && !closed_denied) std::abort();  // closed by default

    HttpRequestView view;
    view.method = req.method;
    view.path = req.path;
    view.query = req.query;
    view.body = req.body;
    bool hook_ran = false;
    ManagementHook hook = [&](const NodeSnapshot *, const HttpRequestView &) -> std::optional<HttpReply> {
        hook_ran = true;
        return HttpReply{200, "text/plain", "ok"};
    };
    for (const SnapshotPtr &snap : {primary, replica, SnapshotPtr()}) {
        HttpReply r = handle_request(snap.get(), view, 2000, denied ? ManagementHook() : hook);
        if (r.status < 100 || r.status > 599) std::abort();
    }
    if (hook_ran && denied) std::abort();
    return 0;
}
