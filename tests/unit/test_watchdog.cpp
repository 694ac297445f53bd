// watchdog/watchdog: Patroni's mode and timeout rules, and the emulated device
// (a FIFO read by a thread that records the protocol lines).
#include "core/no_postgres.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "watchdog/watchdog.hpp"

using namespace pgha;

namespace {

class TempDir {
public:
    TempDir() {
        char tmpl[] = "/tmp/pgha_wd_XXXXXX";
        const char *p = mkdtemp(tmpl);
        path_ = p ? p : "";
    }
    ~TempDir() {
        if (!path_.empty()) std::system(("rm -rf '" + path_ + "'").c_str());
    }
    const std::string &path() const { return path_; }

private:
    std::string path_;
};

// Reads a FIFO like the emulator: everything the writers send, until the
// last writer closes (EOF) or stop(). The FIFO is opened for reading in the
// constructor, so the Watchdog's non-blocking open finds a reader.
class FifoReader {
public:
    explicit FifoReader(const std::string &path) {
        fd_ = open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        if (pipe(stop_) != 0) stop_[0] = stop_[1] = -1;
        if (fd_ >= 0) thread_ = std::thread([this] { run(); });
    }
    ~FifoReader() {
        stop();
        if (fd_ >= 0) close(fd_);
        if (stop_[0] >= 0) close(stop_[0]);
        if (stop_[1] >= 0) close(stop_[1]);
    }
    bool ok() const { return fd_ >= 0 && stop_[0] >= 0; }

    // Closes the read end early (the writer then sees EPIPE).
    void stop() {
        if (thread_.joinable()) {
            if (write(stop_[1], "x", 1) != 1) {
            }
            thread_.join();
        }
    }
    void close_now() {
        stop();
        if (fd_ >= 0) close(fd_);
        fd_ = -1;
    }

    // Waits (bounded) until pred(data, eof) holds; returns whether it did.
    bool wait_for(const std::function<bool(const std::string &, bool)> &pred,
                  std::chrono::milliseconds limit = std::chrono::milliseconds(3000)) {
        std::unique_lock<std::mutex> lock(mu_);
        return cv_.wait_for(lock, limit, [&] { return pred(data_, eof_); });
    }
    bool wait_data(const std::string &expected) {
        return wait_for([&](const std::string &d, bool) { return d == expected; });
    }
    bool wait_eof() {
        return wait_for([](const std::string &, bool eof) { return eof; });
    }
    std::string data() {
        std::lock_guard<std::mutex> lock(mu_);
        return data_;
    }

private:
    void run() {
        for (;;) {
            struct pollfd fds[2] = {{fd_, POLLIN, 0}, {stop_[0], POLLIN, 0}};
            int n = poll(fds, 2, 5000);
            if (n < 0) continue;
            if (fds[1].revents) return;
            if (n == 0) continue;
            char buf[256];
            ssize_t r = read(fd_, buf, sizeof buf);
            std::lock_guard<std::mutex> lock(mu_);
            if (r > 0) {
                data_.append(buf, static_cast<std::size_t>(r));
            } else if (r == 0) {
                eof_ = true;  // every writer closed (Linux reports no EOF before the first writer)
                cv_.notify_all();
                return;
            }
            cv_.notify_all();
        }
    }

    int fd_ = -1;
    int stop_[2] = {-1, -1};
    std::thread thread_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::string data_;
    bool eof_ = false;
};

class EmulatedWatchdog : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_FALSE(dir_.path().empty());
        fifo_ = dir_.path() + "/watchdog";
        ASSERT_EQ(mkfifo(fifo_.c_str(), 0600), 0);
    }
    TempDir dir_;
    std::string fifo_;
};

bool sigpipe_pending() {
    sigset_t pending;
    sigemptyset(&pending);
    sigpending(&pending);
    return sigismember(&pending, SIGPIPE) == 1;
}

}  // namespace

TEST(WatchdogMode, ParsesPatroniSpellings) {
    WatchdogMode m = WatchdogMode::Required;
    for (const char *s : {"off", "OFF", "false", "no", "disable", "disabled", " off "}) {
        ASSERT_TRUE(parse_watchdog_mode(s, m)) << s;
        EXPECT_EQ(m, WatchdogMode::Off) << s;
    }
    for (const char *s : {"automatic", "auto", "Automatic", "true", "yes", "on"}) {
        ASSERT_TRUE(parse_watchdog_mode(s, m)) << s;
        EXPECT_EQ(m, WatchdogMode::Automatic) << s;
    }
    for (const char *s : {"required", "require", "REQUIRED"}) {
        ASSERT_TRUE(parse_watchdog_mode(s, m)) << s;
        EXPECT_EQ(m, WatchdogMode::Required) << s;
    }
    m = WatchdogMode::Required;
    EXPECT_FALSE(parse_watchdog_mode("", m));
    EXPECT_FALSE(parse_watchdog_mode("sometimes", m));
    EXPECT_EQ(m, WatchdogMode::Required);  // untouched on failure
    EXPECT_STREQ(to_string(WatchdogMode::Off), "off");
    EXPECT_STREQ(to_string(WatchdogMode::Automatic), "automatic");
    EXPECT_STREQ(to_string(WatchdogMode::Required), "required");
}

TEST(WatchdogTimeout, PatroniRule) {
    EXPECT_EQ(watchdog_timeout_for(30, 5), 25);
    EXPECT_EQ(watchdog_timeout_for(30, 0), 30);
    EXPECT_EQ(watchdog_timeout_for(30, -1), 15);  // -1: ttl / 2
    EXPECT_EQ(watchdog_timeout_for(31, -1), 15);
    EXPECT_EQ(watchdog_timeout_for(6, 5), 1);
    // Too small a ttl leaves no usable timeout.
    EXPECT_EQ(watchdog_timeout_for(5, 5), 0);
    EXPECT_EQ(watchdog_timeout_for(3, 5), 0);
    EXPECT_EQ(watchdog_timeout_for(1, -1), 0);
    EXPECT_EQ(watchdog_timeout_for(0, 0), 0);
    EXPECT_EQ(watchdog_timeout_for(-10, 5), 0);
    // Other negative margins would make the timeout outlive the ttl.
    EXPECT_EQ(watchdog_timeout_for(30, -2), 0);
    EXPECT_EQ(watchdog_timeout_for(70000, 5), 0);  // beyond any driver
}

TEST_F(EmulatedWatchdog, ActivateKeepaliveDisable) {
    FifoReader reader(fifo_);
    ASSERT_TRUE(reader.ok());
    Watchdog wd(fifo_, WatchdogMode::Required, 5);
    EXPECT_FALSE(wd.active());
    std::string msg = "stale";
    ASSERT_TRUE(wd.activate(30, msg, 10)) << msg;
    EXPECT_EQ(msg, "");
    EXPECT_TRUE(wd.active());
    EXPECT_TRUE(wd.emulated());
    EXPECT_EQ(wd.timeout_s(), 25);
    EXPECT_TRUE(reader.wait_data("T25\n")) << reader.data();

    ASSERT_TRUE(wd.keepalive(msg)) << msg;
    ASSERT_TRUE(wd.keepalive(msg)) << msg;
    EXPECT_TRUE(reader.wait_data("T25\nk\nk\n")) << reader.data();

    // Same ttl: nothing sent. New ttl: the new timeout.
    ASSERT_TRUE(wd.activate(30, msg, 10)) << msg;
    ASSERT_TRUE(wd.activate(40, msg, 10)) << msg;
    EXPECT_EQ(wd.timeout_s(), 35);
    EXPECT_TRUE(reader.wait_data("T25\nk\nk\nT35\n")) << reader.data();

    ASSERT_TRUE(wd.disable(msg)) << msg;
    EXPECT_FALSE(wd.active());
    EXPECT_EQ(wd.timeout_s(), 0);
    EXPECT_TRUE(reader.wait_eof());
    EXPECT_EQ(reader.data(), "T25\nk\nk\nT35\nV\n");
    // Disabled: nothing more to do, and required mode reports it is not armed.
    EXPECT_TRUE(wd.disable(msg));
    EXPECT_FALSE(wd.keepalive(msg));
    EXPECT_NE(msg.find("not armed"), std::string::npos) << msg;
}

TEST_F(EmulatedWatchdog, SafetyMarginMinusOneHalvesTtl) {
    FifoReader reader(fifo_);
    ASSERT_TRUE(reader.ok());
    Watchdog wd(fifo_, WatchdogMode::Automatic, -1);
    std::string msg;
    ASSERT_TRUE(wd.activate(30, msg)) << msg;
    EXPECT_EQ(msg, "");
    EXPECT_EQ(wd.timeout_s(), 15);
    EXPECT_TRUE(reader.wait_data("T15\n")) << reader.data();
}

TEST_F(EmulatedWatchdog, DestructorDisarms) {
    FifoReader reader(fifo_);
    ASSERT_TRUE(reader.ok());
    {
        Watchdog wd(fifo_, WatchdogMode::Required, 5);
        std::string msg;
        ASSERT_TRUE(wd.activate(20, msg)) << msg;
        ASSERT_TRUE(wd.keepalive(msg)) << msg;
    }
    EXPECT_TRUE(reader.wait_eof());
    EXPECT_EQ(reader.data(), "T15\nk\nV\n");
}

TEST_F(EmulatedWatchdog, OffModeTouchesNothing) {
    Watchdog wd(dir_.path() + "/missing", WatchdogMode::Off, 5);
    std::string msg;
    EXPECT_TRUE(wd.activate(30, msg));
    EXPECT_EQ(msg, "");
    EXPECT_FALSE(wd.active());
    EXPECT_TRUE(wd.keepalive(msg));
    EXPECT_EQ(msg, "");
}

TEST_F(EmulatedWatchdog, MissingPath) {
    const std::string missing = dir_.path() + "/missing";
    Watchdog req(missing, WatchdogMode::Required, 5);
    std::string msg;
    EXPECT_FALSE(req.activate(30, msg));
    EXPECT_NE(msg.find(missing), std::string::npos) << msg;
    EXPECT_NE(msg.find("No such file"), std::string::npos) << msg;
    EXPECT_FALSE(req.active());
    EXPECT_FALSE(req.keepalive(msg));

    Watchdog aut(missing, WatchdogMode::Automatic, 5);
    EXPECT_TRUE(aut.activate(30, msg));
    EXPECT_NE(msg.find("No such file"), std::string::npos) << msg;
    EXPECT_NE(msg.find("continuing without a watchdog"), std::string::npos) << msg;
    EXPECT_FALSE(aut.active());
    EXPECT_TRUE(aut.keepalive(msg));
    EXPECT_EQ(msg, "");
    // Not retried (nor reported again) with the same timing...
    EXPECT_TRUE(aut.activate(30, msg));
    EXPECT_EQ(msg, "");
    // ...but retried when it changes, or after disable().
    EXPECT_TRUE(aut.activate(31, msg));
    EXPECT_NE(msg.find("No such file"), std::string::npos) << msg;
    aut.disable();
    EXPECT_TRUE(aut.activate(31, msg));
    EXPECT_NE(msg.find("No such file"), std::string::npos) << msg;
}

TEST_F(EmulatedWatchdog, RegularFileIsRejected) {
    const std::string file = dir_.path() + "/plain";
    int fd = open(file.c_str(), O_WRONLY | O_CREAT, 0600);
    ASSERT_GE(fd, 0);
    close(fd);
    Watchdog wd(file, WatchdogMode::Required, 5);
    std::string msg;
    EXPECT_FALSE(wd.activate(30, msg));
    EXPECT_NE(msg.find("not a watchdog device"), std::string::npos) << msg;
    EXPECT_NE(msg.find("regular file"), std::string::npos) << msg;
    EXPECT_FALSE(wd.active());
    struct stat st;
    ASSERT_EQ(stat(file.c_str(), &st), 0);
    EXPECT_EQ(st.st_size, 0);  // nothing written
}

TEST_F(EmulatedWatchdog, NoEmulatorReading) {
    Watchdog wd(fifo_, WatchdogMode::Required, 5);
    std::string msg;
    EXPECT_FALSE(wd.activate(30, msg));  // returns at once, does not block
    EXPECT_EQ(msg, "no watchdog emulator is reading " + fifo_);
    EXPECT_FALSE(wd.active());
}

TEST_F(EmulatedWatchdog, EmulatorGoneIsAnErrorNotASignal) {
    // Default SIGPIPE disposition here: a raw write would kill the test binary.
    FifoReader reader(fifo_);
    ASSERT_TRUE(reader.ok());
    Watchdog req(fifo_, WatchdogMode::Required, 5);
    std::string msg;
    ASSERT_TRUE(req.activate(30, msg)) << msg;
    ASSERT_TRUE(reader.wait_data("T25\n"));
    reader.close_now();
    EXPECT_FALSE(req.keepalive(msg));
    EXPECT_EQ(msg, "the watchdog emulator stopped reading " + fifo_);
    EXPECT_FALSE(sigpipe_pending());
    EXPECT_FALSE(req.disable(msg));  // "V" cannot be written either
    EXPECT_NE(msg.find("not disarmed"), std::string::npos) << msg;
    EXPECT_FALSE(req.active());
    EXPECT_FALSE(sigpipe_pending());
}

TEST_F(EmulatedWatchdog, AutomaticKeepaliveFailureIsAWarning) {
    FifoReader reader(fifo_);
    ASSERT_TRUE(reader.ok());
    Watchdog wd(fifo_, WatchdogMode::Automatic, 5);
    std::string msg;
    ASSERT_TRUE(wd.activate(30, msg)) << msg;
    ASSERT_TRUE(reader.wait_data("T25\n"));
    reader.close_now();
    EXPECT_TRUE(wd.keepalive(msg));
    EXPECT_EQ(msg, "the watchdog emulator stopped reading " + fifo_);
    EXPECT_FALSE(sigpipe_pending());
}

TEST_F(EmulatedWatchdog, AlreadyPendingSigpipeIsLeftAlone) {
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &set, &old), 0);
    ASSERT_EQ(pthread_kill(pthread_self(), SIGPIPE), 0);
    ASSERT_TRUE(sigpipe_pending());
    {
        FifoReader reader(fifo_);
        ASSERT_TRUE(reader.ok());
        Watchdog wd(fifo_, WatchdogMode::Required, 5);
        std::string msg;
        ASSERT_TRUE(wd.activate(30, msg)) << msg;
        reader.close_now();
        EXPECT_FALSE(wd.keepalive(msg));
    }
    EXPECT_TRUE(sigpipe_pending());  // still the caller's
    const struct timespec zero = {0, 0};
    EXPECT_EQ(sigtimedwait(&set, nullptr, &zero), SIGPIPE);
    EXPECT_FALSE(sigpipe_pending());
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

TEST_F(EmulatedWatchdog, TooSmallTtl) {
    FifoReader reader(fifo_);
    ASSERT_TRUE(reader.ok());
    std::string msg;
    Watchdog req(fifo_, WatchdogMode::Required, 5);
    EXPECT_FALSE(req.activate(5, msg));
    EXPECT_NE(msg.find("no usable watchdog timeout"), std::string::npos) << msg;
    EXPECT_FALSE(req.active());
    // A timeout shorter than one loop would reset a healthy host.
    EXPECT_FALSE(req.activate(12, msg, 10));
    EXPECT_NE(msg.find("shorter than loop_wait"), std::string::npos) << msg;
    EXPECT_FALSE(req.active());

    Watchdog aut(fifo_, WatchdogMode::Automatic, 5);
    EXPECT_TRUE(aut.activate(5, msg));
    EXPECT_NE(msg.find("continuing without a watchdog"), std::string::npos) << msg;
    EXPECT_FALSE(aut.active());
    EXPECT_EQ(reader.data(), "");  // the device was never opened
}

TEST_F(EmulatedWatchdog, TtlDroppingBelowUsableDisarms) {
    FifoReader reader(fifo_);
    ASSERT_TRUE(reader.ok());
    Watchdog wd(fifo_, WatchdogMode::Required, 5);
    std::string msg;
    ASSERT_TRUE(wd.activate(30, msg)) << msg;
    EXPECT_FALSE(wd.activate(4, msg));
    EXPECT_FALSE(wd.active());
    EXPECT_TRUE(reader.wait_eof());
    EXPECT_EQ(reader.data(), "T25\nV\n");
}
