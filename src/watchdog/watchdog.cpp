// Linux watchdog device and its FIFO emulation; see watchdog.hpp.
#include "core/no_postgres.hpp"

#include "watchdog/watchdog.hpp"

#include <fcntl.h>
#include <linux/watchdog.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

namespace pgha {

namespace {

constexpr int kMaxTimeout = 65535;  // WDIOC_SETTIMEOUT takes an int; drivers cap far below

std::string errno_text(int err) { return std::strerror(err); }

std::string quoted(const std::string &path) { return "\"" + path + "\""; }

const char *file_kind(mode_t mode) {
    if (S_ISREG(mode)) return "a regular file";
    if (S_ISDIR(mode)) return "a directory";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISSOCK(mode)) return "a socket";
    if (S_ISLNK(mode)) return "a symbolic link";
    return "an unsupported file type";
}

// Blocks SIGPIPE in this thread for its lifetime. If a write in between failed
// with EPIPE, it raised a thread-directed SIGPIPE that is now pending:
// consume() takes it (unless one was already pending before, which is not
// ours to swallow) so that restoring the mask cannot deliver it.
class SigpipeGuard {
public:
    SigpipeGuard() {
        sigemptyset(&pipe_set_);
        sigaddset(&pipe_set_, SIGPIPE);
        blocked_ = pthread_sigmask(SIG_BLOCK, &pipe_set_, &old_) == 0;
        sigset_t pending;
        sigemptyset(&pending);
        was_pending_ = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1;
    }
    ~SigpipeGuard() {
        if (blocked_) pthread_sigmask(SIG_SETMASK, &old_, nullptr);
    }
    SigpipeGuard(const SigpipeGuard &) = delete;
    SigpipeGuard &operator=(const SigpipeGuard &) = delete;

    void consume() {
        if (!blocked_ || was_pending_) return;
        const struct timespec zero = {0, 0};
        int saved = errno;
        while (sigtimedwait(&pipe_set_, nullptr, &zero) < 0 && errno == EINTR) {
        }
        errno = saved;
    }

private:
    sigset_t pipe_set_;
    sigset_t old_;
    bool blocked_ = false;
    bool was_pending_ = false;
};

std::string lower_trimmed(const std::string &text) {
    std::size_t b = 0, e = text.size();
    while (b < e && std::isspace(static_cast<unsigned char>(text[b]))) ++b;
    while (e > b && std::isspace(static_cast<unsigned char>(text[e - 1]))) --e;
    std::string out;
    for (std::size_t i = b; i < e; ++i)
        out += static_cast<char>(std::tolower(static_cast<unsigned char>(text[i])));
    return out;
}

}  // namespace

bool parse_watchdog_mode(const std::string &text, WatchdogMode &out) {
    const std::string t = lower_trimmed(text);
    if (t == "off" || t == "false" || t == "no" || t == "disable" || t == "disabled") {
        out = WatchdogMode::Off;
    } else if (t == "automatic" || t == "auto" || t == "true" || t == "yes" || t == "on") {
        out = WatchdogMode::Automatic;
    } else if (t == "required" || t == "require") {
        out = WatchdogMode::Required;
    } else {
        return false;
    }
    return true;
}

const char *to_string(WatchdogMode mode) {
    switch (mode) {
        case WatchdogMode::Off: return "off";
        case WatchdogMode::Automatic: return "automatic";
        case WatchdogMode::Required: return "required";
    }
    return "unknown";
}

int watchdog_timeout_for(int ttl_s, int safety_margin_s) {
    if (ttl_s <= 0 || safety_margin_s < -1) return 0;
    long timeout = safety_margin_s == -1 ? ttl_s / 2 : static_cast<long>(ttl_s) - safety_margin_s;
    if (timeout < 1 || timeout > kMaxTimeout) return 0;
    return static_cast<int>(timeout);
}

Watchdog::Watchdog(std::string device, WatchdogMode mode, int safety_margin_s)
    : device_(device.empty() ? std::string(kDefaultDevice) : std::move(device)),
      mode_(mode),
      safety_margin_s_(safety_margin_s) {}

Watchdog::~Watchdog() { disable(); }

bool Watchdog::activate(int ttl_s, std::string &message, int loop_wait_s) {
    message.clear();
    if (mode_ == WatchdogMode::Off) return true;

    const int want = watchdog_timeout_for(ttl_s, safety_margin_s_);
    if (active()) {
        if (want == asked_timeout_s_ && (loop_wait_s <= 0 || timeout_s_ >= loop_wait_s)) return true;
    } else if (failed_ && mode_ == WatchdogMode::Automatic && ttl_s == failed_ttl_s_ &&
               loop_wait_s == failed_loop_wait_s_) {
        return true;  // already reported; retry only when the timing changes or after disable()
    }

    if (want == 0)
        return activation_failed(message,
                                 "no usable watchdog timeout for ttl " + std::to_string(ttl_s) +
                                     " s and safety_margin " + std::to_string(safety_margin_s_) +
                                     " s (it must come to 1.." + std::to_string(kMaxTimeout) +
                                     " s)",
                                 ttl_s, loop_wait_s);
    if (loop_wait_s > 0 && want < loop_wait_s)
        return activation_failed(message,
                                 "watchdog timeout " + std::to_string(want) +
                                     " s is shorter than loop_wait " + std::to_string(loop_wait_s) +
                                     " s: it would reset a healthy host (raise ttl or lower "
                                     "safety_margin)",
                                 ttl_s, loop_wait_s);

    std::string error;
    if (!active() && !open_device(error)) return activation_failed(message, error, ttl_s, loop_wait_s);
    if (!set_timeout(want, error)) return activation_failed(message, error, ttl_s, loop_wait_s);
    asked_timeout_s_ = want;

    if (loop_wait_s > 0 && timeout_s_ < loop_wait_s)
        return activation_failed(message,
                                 "watchdog device " + quoted(device_) + " accepted a timeout of " +
                                     std::to_string(timeout_s_) + " s, shorter than loop_wait " +
                                     std::to_string(loop_wait_s) + " s",
                                 ttl_s, loop_wait_s);

    std::string warning;
    if (timeout_s_ > want) {
        const std::string reason = "watchdog device " + quoted(device_) + " accepted a timeout of " +
                                   std::to_string(timeout_s_) + " s, longer than the " +
                                   std::to_string(want) +
                                   " s asked for: the host could outlive the leader lease";
        if (mode_ == WatchdogMode::Required) return activation_failed(message, reason, ttl_s, loop_wait_s);
        warning = reason;
    }
    if (!can_disarm_) {
        if (!warning.empty()) warning += "; ";
        warning += "watchdog device " + quoted(device_) +
                   " does not support magic close: the host will be reset after leadership ends";
    }
    failed_ = false;
    message = warning;
    return true;
}

bool Watchdog::activation_failed(std::string &message, const std::string &reason, int ttl_s,
                                 int loop_wait_s) {
    std::string ignored;
    disable(ignored);
    if (mode_ == WatchdogMode::Required) {
        message = reason;
        return false;
    }
    message = reason + "; continuing without a watchdog (mode automatic)";
    failed_ = true;
    failed_ttl_s_ = ttl_s;
    failed_loop_wait_s_ = loop_wait_s;
    return true;
}

bool Watchdog::keepalive(std::string &message) {
    message.clear();
    if (mode_ == WatchdogMode::Off) return true;
    if (!active()) {
        if (mode_ != WatchdogMode::Required) return true;
        message = "watchdog device " + quoted(device_) + " is not armed (mode required)";
        return false;
    }
    std::string error;
    if (ping(error)) return true;
    message = error;
    return mode_ != WatchdogMode::Required;
}

bool Watchdog::disable(std::string &message) {
    message.clear();
    if (!active()) {
        failed_ = false;
        return true;
    }
    bool ok = true;
    if (!can_disarm_) {
        // Patroni's courtesy: a last keepalive gives the operator a full timeout.
        std::string ignored;
        ping(ignored);
        message = "watchdog device " + quoted(device_) +
                  " cannot be disarmed: the host will be reset in " + std::to_string(timeout_s_) + " s";
        ok = false;
    } else {
        const char *magic = emulated_ ? "V\n" : "V";
        std::string error;
        if (!write_all(magic, std::strlen(magic), error)) {
            message = error + "; not disarmed: the host may be reset in " + std::to_string(timeout_s_) + " s";
            ok = false;
        }
    }
    close_fd();
    failed_ = false;
    return ok;
}

void Watchdog::disable() {
    std::string ignored;
    disable(ignored);
}

bool Watchdog::open_device(std::string &error) {
    struct stat st;
    if (stat(device_.c_str(), &st) != 0) {
        error = "could not access watchdog device " + quoted(device_) + ": " + errno_text(errno);
        return false;
    }
    if (!S_ISFIFO(st.st_mode) && !S_ISCHR(st.st_mode)) {
        error = quoted(device_) + " is not a watchdog device (it is " + file_kind(st.st_mode) + ")";
        return false;
    }
    // O_NONBLOCK always: a FIFO without a reader then fails (ENXIO) instead of
    // blocking, even if the path turned into a FIFO since the stat().
    int fd = open(device_.c_str(), O_WRONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        int err = errno;
        if (err == ENXIO && S_ISFIFO(st.st_mode))
            error = "no watchdog emulator is reading " + device_;
        else if (err == EBUSY)
            error = "watchdog device " + quoted(device_) +
                    " is busy (another process, such as a watchdog daemon or systemd, holds it open)";
        else
            error = "could not open watchdog device " + quoted(device_) + ": " + errno_text(err);
        return false;
    }
    if (fstat(fd, &st) != 0 || (!S_ISFIFO(st.st_mode) && !S_ISCHR(st.st_mode))) {
        close(fd);
        error = quoted(device_) + " is not a watchdog device";
        return false;
    }
    fd_ = fd;
    emulated_ = S_ISFIFO(st.st_mode);
    can_disarm_ = true;
    can_set_timeout_ = true;
    timeout_s_ = 60;  // Linux drivers' usual default until set; the emulator's too
    asked_timeout_s_ = 0;
    if (!emulated_) {
        // A real device: blocking writes are fine and what drivers expect.
        int flags = fcntl(fd, F_GETFL);
        if (flags >= 0) fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
        struct watchdog_info info;
        std::memset(&info, 0, sizeof info);
        if (ioctl(fd, WDIOC_GETSUPPORT, &info) == 0) {
            can_disarm_ = (info.options & WDIOF_MAGICCLOSE) != 0;
            can_set_timeout_ = (info.options & WDIOF_SETTIMEOUT) != 0;
        }
        // If GETSUPPORT fails, try the operations and report their errors.
    }
    return true;
}

bool Watchdog::set_timeout(int timeout_s, std::string &error) {
    if (emulated_) {
        const std::string line = "T" + std::to_string(timeout_s) + "\n";
        if (!write_all(line.data(), line.size(), error)) return false;
        timeout_s_ = timeout_s;
        return true;
    }
    int value = timeout_s;
    if (can_set_timeout_) {
        // The driver writes back the timeout it accepted (hardware granularity).
        if (ioctl(fd_, WDIOC_SETTIMEOUT, &value) != 0) {
            error = "could not set a timeout of " + std::to_string(timeout_s) +
                    " s on watchdog device " + quoted(device_) + ": " + errno_text(errno);
            return false;
        }
    } else if (ioctl(fd_, WDIOC_GETTIMEOUT, &value) != 0) {
        error = "watchdog device " + quoted(device_) +
                " cannot set its timeout and could not report it: " + errno_text(errno);
        return false;
    }
    timeout_s_ = value;
    return true;
}

bool Watchdog::ping(std::string &error) {
    if (emulated_) return write_all("k\n", 2, error);
    int dummy = 0;
    if (ioctl(fd_, WDIOC_KEEPALIVE, &dummy) == 0) return true;
    if (errno != EOPNOTSUPP && errno != ENOTTY && errno != EINVAL) {
        error = "could not send a keepalive to watchdog device " + quoted(device_) + ": " +
                errno_text(errno);
        return false;
    }
    return write_all("1", 1, error);  // drivers without KEEPALIVEPING: any write pings
}

bool Watchdog::write_all(const char *data, std::size_t len, std::string &error) {
    SigpipeGuard guard;
    while (len > 0) {
        ssize_t n = write(fd_, data, len);
        if (n > 0) {
            data += n;
            len -= static_cast<std::size_t>(n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        int err = n < 0 ? errno : EIO;
        if (err == EPIPE) guard.consume();
        if (emulated_ && err == EPIPE)
            error = "the watchdog emulator stopped reading " + device_;
        else if (emulated_ && err == EAGAIN)
            error = "the watchdog emulator is not reading " + device_ + " (pipe full)";
        else
            error = "could not write to watchdog device " + quoted(device_) + ": " + errno_text(err);
        return false;
    }
    return true;
}

void Watchdog::close_fd() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
    emulated_ = false;
    timeout_s_ = 0;
    asked_timeout_s_ = 0;
}

}  // namespace pgha
