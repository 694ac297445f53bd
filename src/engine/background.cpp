#include "engine/background.hpp"

#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdint>
#include <exception>

namespace pgha {

Waker::Waker() : fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}

Waker::~Waker() {
    if (fd_ >= 0) ::close(fd_);
}

void Waker::signal() {
    std::uint64_t one = 1;
    if (fd_ >= 0 && ::write(fd_, &one, sizeof one) < 0) { /* counter full: already signalled */ }
}

void Waker::clear() {
    std::uint64_t v;
    if (fd_ >= 0 && ::read(fd_, &v, sizeof v) < 0) { /* nothing signalled */ }
}

Background::Background(Waker &waker, bool inline_jobs) : waker_(waker), inline_(inline_jobs) {}

Background::~Background() { stop(); }

void Background::stop() {
    {
        std::lock_guard<std::mutex> g(mu_);
        stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
}

void Background::submit(Job job) {
    ++pending_;
    if (inline_) {
        Continuation c;
        try {
            c = job();
        } catch (...) {
            c = nullptr;
        }
        std::lock_guard<std::mutex> g(mu_);
        done_.push_back(std::move(c));
        return;
    }
    {
        std::lock_guard<std::mutex> g(mu_);
        jobs_.push_back(std::move(job));
        if (!thread_.joinable()) {
            // The helper thread must never take a signal meant for the worker.
            sigset_t all, old;
            sigfillset(&all);
            pthread_sigmask(SIG_SETMASK, &all, &old);
            thread_ = std::thread([this] { run(); });
            pthread_sigmask(SIG_SETMASK, &old, nullptr);
        }
    }
    cv_.notify_one();
}

void Background::run() {
    for (;;) {
        Job job;
        {
            std::unique_lock<std::mutex> g(mu_);
            cv_.wait(g, [this] { return stopping_ || !jobs_.empty(); });
            if (stopping_) return;
            job = std::move(jobs_.front());
            jobs_.pop_front();
        }
        Continuation c;
        try {
            c = job();
        } catch (...) {
            c = nullptr;  // the job's own error handling failed: nothing to hand back
        }
        {
            std::lock_guard<std::mutex> g(mu_);
            done_.push_back(std::move(c));
        }
        waker_.signal();
    }
}

int Background::drain() {
    std::deque<Continuation> ready;
    {
        std::lock_guard<std::mutex> g(mu_);
        ready.swap(done_);
    }
    int n = 0;
    for (auto &c : ready) {
        --pending_;
        ++n;
        if (c) c();
    }
    return n;
}

}  // namespace pgha
