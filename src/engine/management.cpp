#include "engine/management.hpp"

#include <chrono>
#include <future>

namespace pgha {
namespace {

HttpReply text(int status, const std::string &body) { return HttpReply{status, "text/plain", body}; }

nlohmann::json parse_object(const std::string &body, bool empty_ok) {
    if (empty_ok && body.empty()) return nlohmann::json::object();
    return nlohmann::json::parse(body, nullptr, false);
}

const char *kNotObject = "Bad request: the body must be a JSON object";

}  // namespace

std::optional<HttpReply> ManagementApi::handle(const NodeSnapshot *snap, const HttpRequestView &req) {
    const std::string &m = req.method, &p = req.path;
    if (m == "POST" && p == "/failsafe") return failsafe(snap, req);
    if (m == "POST" && (p == "/switchover" || p == "/failover")) {
        nlohmann::json j = parse_object(req.body, false);
        if (!j.is_object()) return text(400, kNotObject);
        for (const char *k : {"leader", "candidate", "member", "scheduled_at"})
            if (j.contains(k) && !j[k].is_null() && !j[k].is_string())
                return text(400, std::string("Bad request: \"") + k + "\" must be a string");
        return command(p == "/switchover" ? OperatorCommand::Switchover : OperatorCommand::Failover, j, 35000);
    }
    if (m == "POST" && (p == "/restart" || p == "/reinitialize" || p == "/reload")) {
        nlohmann::json j = parse_object(req.body, true);
        if (!j.is_object()) return text(400, kNotObject);
        j["member"] = snap ? snap->name : "";
        OperatorCommand k = p == "/restart" ? OperatorCommand::Restart
                        : p == "/reload" ? OperatorCommand::Reload
                                         : OperatorCommand::Reinitialize;
        return command(k, j, 10000);
    }
    if (m == "DELETE" && p == "/restart") return command(OperatorCommand::CancelRestart, nlohmann::json::object(), 10000);
    if ((m == "PATCH" || m == "PUT") && p == "/config") {
        nlohmann::json j = parse_object(req.body, false);
        if (!j.is_object()) return text(400, kNotObject);
        return command(m == "PUT" ? OperatorCommand::ReplaceConfig : OperatorCommand::SetConfig, j, 10000);
    }
    return std::nullopt;
}

HttpReply ManagementApi::failsafe(const NodeSnapshot *snap, const HttpRequestView &req) {
    if (!snap || !snap->cluster.config.failsafe_mode) return text(502, "failsafe mode is off");
    nlohmann::json j = nlohmann::json::parse(req.body, nullptr, false);
    auto str = [&j](const char *k) { return j.is_object() && j.contains(k) && j[k].is_string(); };
    if (!str("name") || !str("conn_url") || !str("api_url"))
        return text(400, "expected {\"name\": ..., \"conn_url\": ..., \"api_url\": ...}");
    if ((snap->role == "primary" && snap->state == "running") || snap->is_leader) return text(500, "Running as a leader");
    Member leader;
    leader.name = j["name"].get<std::string>();
    leader.conn_url = j["conn_url"].get<std::string>();
    leader.api_url = j["api_url"].get<std::string>();
    leader.state = "running";
    leader.role = "primary";
    // The promise: no bid for the lock for one ttl (ours) from now.
    const int promise_ms = snap->cluster.config.ttl_ms;
    if (!failsafe_.accept(leader, clock_(), wall_clock_(), promise_ms))
        return text(500, "Running as a leader, or the promise cannot be stored");
    return text(200, failsafe_accepted_body(promise_ms));
}

HttpReply ManagementApi::command(OperatorCommand kind, const nlohmann::json &args, int timeout_ms) {
    auto prom = std::make_shared<std::promise<std::pair<int, std::string>>>();
    auto fut = prom->get_future();
    // Command::answer runs at most once, so the promise is set at most once.
    auto c = std::make_shared<Command>(kind, args, clock_() + timeout_ms,
                                       [prom](int st, const std::string &msg) { prom->set_value({st, msg}); });
    queue_.push(c);
    if (fut.wait_for(std::chrono::milliseconds(timeout_ms + 3000)) != std::future_status::ready)
        return text(503, std::string(to_string(kind)) + " status unknown: no answer from the HA loop");
    auto r = fut.get();
    HttpReply reply = text(r.first, r.second);
    reply.on_sent = [c] { c->mark_delivered(); };
    return reply;
}

}  // namespace pgha
