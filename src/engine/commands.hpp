// Operator commands (SQL through the shared-memory request slot, REST
// through the management API) and the desk that carries them out on the
// worker's loop. Every command is answered exactly once: by its own step, a
// ZooKeeper completion, a background completion, or its timeout.
#pragma once

#include "core/no_postgres.hpp"

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/operator_rules.hpp"
#include "engine/background.hpp"
#include "engine/cluster_link.hpp"
#include "engine/deps.hpp"
#include "engine/engine_settings.hpp"
#include "engine/leadership.hpp"
#include "engine/local_server.hpp"
#include "engine/outbox.hpp"

namespace pgha {

using AnswerFn = std::function<void(int status, const std::string &message)>;

class Command {
  public:
    Command(OperatorCommand kind, nlohmann::json args, std::int64_t deadline_ms, AnswerFn done);
    // The first call wins; later ones are ignored.
    void answer(int status, const std::string &message);
    bool answered() const { return *answered_; }
    // The answer reached the caller (HTTP: written to the socket, or the
    // connection closed). Any thread.
    void mark_delivered() { delivered_->store(true, std::memory_order_release); }
    bool delivered() const { return delivered_->load(std::memory_order_acquire); }

    const OperatorCommand kind;
    const nlohmann::json args;
    const std::int64_t deadline_ms;
    int caller_pid = 0;  // SQL: the backend waiting for the answer (delivered once it is not running a statement)

    // progress (desk only)
    enum class Stage { New, Validating, Writing, Waiting } stage = Stage::New;
    std::uint64_t need_view = 0;  // validate against a cluster read that started after the request
    bool key_seen = false;        // a cluster read showed our failover key
    bool probe_in_flight = false;
    std::string old_leader, target;
    std::int64_t next_probe_ms = 0;

  private:
    AnswerFn done_;
    std::shared_ptr<bool> answered_ = std::make_shared<bool>(false);
    std::shared_ptr<std::atomic<bool>> delivered_ = std::make_shared<std::atomic<bool>>(false);
};

// HTTP threads push, the loop drains; the waker wakes the loop.
class CommandQueue {
  public:
    explicit CommandQueue(Waker &waker) : waker_(waker) {}
    void push(std::shared_ptr<Command> c);
    std::vector<std::shared_ptr<Command>> drain();

  private:
    Waker &waker_;
    std::mutex mu_;
    std::deque<std::shared_ptr<Command>> q_;
};

class CommandDesk {
  public:
    CommandDesk(const EngineSettings &s, ClusterLink &link, LocalServer &local, Leadership &leadership, Outbox &out,
                Background &bg, PeerHttp http, Clock clock, Clock wall_clock, Waker &waker);

    CommandQueue &queue() { return queue_; }
    // A request from a backend (SQL): id, JSON {"kind", "args", "timeout_ms"}, the caller's pid.
    void take_sql_request(std::uint64_t id, const std::string &json, int pid);
    void intake_http();
    // Start, poll and time out commands. `handover_active`: our switchover is running.
    void run(bool handover_active);
    bool busy() const { return !commands_.empty(); }
    // Commands in progress, or answered but maybe not delivered yet (each for
    // at most 500 ms after its answer): the server must not stop under them
    // (e.g. the old leader after a switchover).
    bool holds_shutdown();
    bool delivering() const { return !delivering_.empty(); }
    // This node's scheduled restart (POST /restart with "schedule"), as published.
    std::optional<ScheduledRestart> scheduled_restart() const {
        return scheduled_ ? std::optional<ScheduledRestart>(published(*scheduled_)) : std::nullopt;
    }
    const std::vector<int> &protected_pids() const { return protected_pids_; }
    // The newest answer to a SQL request.
    std::uint64_t reply_id() const { return reply_id_; }
    int reply_status() const { return reply_status_; }
    const std::string &reply_message() const { return reply_message_; }

  private:
    void adopt(std::shared_ptr<Command> c);
    void start(const std::shared_ptr<Command> &c);
    void start_switchover(const std::shared_ptr<Command> &c);
    void start_config(const std::shared_ptr<Command> &c);
    void start_reload(Command &c);
    void start_restart(const std::shared_ptr<Command> &c);
    void cancel_restart(Command &c);
    void restart_now(Command *c, bool reinit, int timeout_s = 0);
    // Runs the scheduled restart when it is due (Patroni's evaluate_scheduled_restart).
    void run_scheduled_restart();
    void poll(const std::shared_ptr<Command> &c, std::int64_t now, bool handover_active);

    const EngineSettings &s_;
    ClusterLink &link_;
    LocalServer &local_;
    Leadership &leadership_;
    Outbox &out_;
    Background &bg_;
    PeerHttp http_;
    Clock clock_;
    Clock wall_clock_;  // ms since the epoch: scheduled switchovers and restarts
    std::int64_t wall_now_s() const { return wall_clock_() / 1000; }
    CommandQueue queue_;
    std::vector<std::shared_ptr<Command>> commands_;
    std::uint64_t sql_request_seen_ = 0;
    std::uint64_t reply_id_ = 0;
    int reply_status_ = 0;
    std::string reply_message_;
    std::vector<int> protected_pids_;
    struct Delivery {
        std::shared_ptr<Command> cmd;
        std::int64_t until_ms;
    };
    std::vector<Delivery> delivering_;  // answered, delivery not seen yet
    // In memory only, as in Patroni: a restart of the server (and so of this
    // worker) before it is due cancels it.
    std::optional<RestartRequest> scheduled_;  // SQL callers waiting for a switchover: not terminated
};

}  // namespace pgha
