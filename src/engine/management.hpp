// The management endpoints of the REST API (POST /switchover, /failover,
// /restart, /reinitialize, /reload, /failsafe, PATCH/PUT /config).
//
// Thread affinity: runs on the HTTP server's threads. It can reach only the
// command queue and the failsafe box (both thread-safe) and the snapshot it is
// given: the thread boundary is this type, which holds nothing else.
#pragma once

#include "core/no_postgres.hpp"

#include <optional>

#include <nlohmann/json.hpp>

#include "core/health_api.hpp"
#include "core/snapshot.hpp"
#include "engine/commands.hpp"
#include "engine/deps.hpp"
#include "engine/leadership.hpp"

namespace pgha {

class ManagementApi {
  public:
    ManagementApi(CommandQueue &queue, FailsafeBox &failsafe, Clock clock, Clock wall_clock)
        : queue_(queue), failsafe_(failsafe), clock_(std::move(clock)), wall_clock_(std::move(wall_clock)) {}
    std::optional<HttpReply> handle(const NodeSnapshot *snap, const HttpRequestView &req);

  private:
    HttpReply failsafe(const NodeSnapshot *snap, const HttpRequestView &req);
    // Queue a command for the loop and wait (bounded) for its answer.
    HttpReply command(OperatorCommand kind, const nlohmann::json &args, int timeout_ms);
    CommandQueue &queue_;
    FailsafeBox &failsafe_;
    Clock clock_;
    Clock wall_clock_;
};

}  // namespace pgha
