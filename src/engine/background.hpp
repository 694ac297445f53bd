// Slow work off the worker's loop (peer HTTP checks, the failsafe round,
// forwarded restarts, CHECKPOINT): a job runs on one helper thread and hands
// a continuation back, which the loop runs in drain() after the eventfd woke
// it. The loop never blocks on the job.
//
// Thread affinity: submit() and drain() on the loop's thread only. Jobs run
// on the helper thread and must not touch loop state; they never call
// PostgreSQL functions (libpq over a socket is fine).
#pragma once

#include "core/no_postgres.hpp"

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace pgha {

// An eventfd the worker waits on beside its latch: HTTP threads (commands)
// and the helper thread (completions) signal it.
class Waker {
  public:
    Waker();
    ~Waker();
    Waker(const Waker &) = delete;
    Waker &operator=(const Waker &) = delete;
    void signal();
    void clear();
    int fd() const { return fd_; }

  private:
    int fd_;
};

class Background {
  public:
    using Continuation = std::function<void()>;
    using Job = std::function<Continuation()>;

    // inline_jobs: run each job at once on the caller's thread (unit tests).
    Background(Waker &waker, bool inline_jobs = false);
    ~Background();
    Background(const Background &) = delete;
    Background &operator=(const Background &) = delete;

    void submit(Job job);
    // Runs the continuations of finished jobs; returns how many ran.
    int drain();
    // Jobs submitted and not yet drained.
    int pending() const { return pending_; }
    void stop();

  private:
    void run();
    Waker &waker_;
    bool inline_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Job> jobs_;
    std::deque<Continuation> done_;
    bool stopping_ = false;
    std::thread thread_;
    int pending_ = 0;
};

}  // namespace pgha
