// Linux watchdog device (/dev/watchdog) for the leader, with Patroni's
// semantics (patroni/watchdog/base.py, linux.py):
//
//   mode       off        never touch a device
//              automatic  use the device when it works; otherwise lead
//                         without one (the caller logs the reason)
//              required   do not take or keep leadership without a working
//                         device whose timeout is no longer than asked for
//   timeout  = ttl - safety_margin  (safety_margin -1: ttl / 2)
//
// While the node leads, the worker's loop calls keepalive() once per loop; if
// the loop stalls past the timeout the device resets the host, so a hung
// leader cannot outlive its lease (the second line of defence after the commit-time lease).
//
// Real device: open(O_WRONLY|O_CLOEXEC), WDIOC_SETTIMEOUT (the driver writes
// back the timeout it accepted; larger than asked is unsafe), WDIOC_KEEPALIVE
// (or a one-byte write when the driver lacks KEEPALIVEPING), magic close =
// write "V" then close(). Closing without "V" leaves the timer running.
//
// Emulated device (tests only; tests/cluster/watchdog_emulator.py): when the
// device path is a FIFO, the same operations become lines written to it:
//
//   "T<seconds>\n"   set the timeout (also resets the timer)
//   "k\n"            keepalive
//   "V\n" + close    magic close: disarm
//   close without V  the timer keeps running; when it runs out the emulator
//                    SIGKILLs every process in the host's network namespace
//
// The timer starts when the first byte arrives (the client sends "T" right
// after opening; the emulator's default timeout is 60 s, as softdog's). The
// FIFO is opened O_WRONLY|O_NONBLOCK: with no emulator reading, open() fails
// (ENXIO) instead of blocking, and a stalled emulator makes a write fail
// (EAGAIN) instead of blocking the worker.
//
// SIGPIPE: a write to a FIFO whose reader has gone fails with EPIPE and also
// raises SIGPIPE, whose default action kills the process. Every write blocks
// SIGPIPE in the calling thread (pthread_sigmask), and when the write failed
// with EPIPE and no SIGPIPE was pending before, consumes the one it raised
// (sigtimedwait with a zero timeout) before restoring the mask. This works
// whatever the process's SIGPIPE disposition is (a PostgreSQL background
// worker ignores it; unit tests keep the default).
//
// Not thread-safe: one thread (the worker's main loop) owns a Watchdog.
#pragma once
#include "core/no_postgres.hpp"

#include <cstddef>
#include <string>

namespace pgha {

enum class WatchdogMode { Off, Automatic, Required };

// "off" (also Patroni's false/no/disable/disabled), "automatic" (auto,
// true/yes/on) or "required" (require); case-insensitive. False for anything
// else (Patroni warns and turns the watchdog off; the caller decides).
bool parse_watchdog_mode(const std::string &text, WatchdogMode &out);
const char *to_string(WatchdogMode mode);  // "off", "automatic", "required"

// Patroni's rule: ttl - safety_margin, or ttl / 2 when safety_margin is -1.
// Returns 0 when that leaves no usable timeout (below 1 s, or above 65535 s,
// the largest a Linux driver takes), and for safety_margin < -1.
int watchdog_timeout_for(int ttl_s, int safety_margin_s);

// The shortest timeout a leader arms the device with (s): a loop that runs
// late under load must not reset a healthy host. The device takes whole
// seconds, so a ttl under this many seconds leads without a watchdog
// (automatic mode) or not at all (required).
constexpr int kMinLeaderWatchdogTimeout = 2;

class Watchdog {
public:
    static constexpr const char *kDefaultDevice = "/dev/watchdog";
    static constexpr int kDefaultSafetyMargin = 5;

    Watchdog(std::string device, WatchdogMode mode, int safety_margin_s = kDefaultSafetyMargin);
    ~Watchdog();  // magic close when armed
    Watchdog(const Watchdog &) = delete;
    Watchdog &operator=(const Watchdog &) = delete;

    // Call when the node takes leadership and again whenever ttl or loop_wait
    // change. Opens the device and sets the timeout for ttl_s; when already
    // armed with the same timeout, does nothing; with another timeout, sets
    // the new one. loop_wait_s (0: not checked) rejects a timeout shorter than
    // one loop, which would reset a healthy host (Patroni's check).
    //
    // Returns whether the node may lead: false only in required mode (the
    // device is then closed). `message` is cleared, then set to the reason on
    // false, or to a warning to log on true (automatic mode leading without a
    // device, a device that cannot be disarmed, a driver that took a longer
    // timeout). After a failure in automatic mode, later calls with the same
    // ttl/loop_wait do not retry (no log spam) until disable() or a change.
    bool activate(int ttl_s, std::string &message, int loop_wait_s = 0);

    // One keepalive; call once per loop while leading. Returns false when it
    // failed in required mode, or when required mode is not armed; in
    // automatic mode a failure returns true with the reason in `message`.
    // Off / automatic without a device: true, nothing done.
    bool keepalive(std::string &message);

    // Magic close ("V", close) when armed; call when leadership ends. False
    // with the reason when "V" could not be written (a real device then
    // resets the host after timeout_s()); the descriptor is closed anyway.
    bool disable(std::string &message);
    void disable();

    bool active() const { return fd_ >= 0; }               // device open and armed
    int timeout_s() const { return active() ? timeout_s_ : 0; }  // timeout in effect
    bool emulated() const { return active() && emulated_; }      // armed on a FIFO
    WatchdogMode mode() const { return mode_; }
    const std::string &device() const { return device_; }

private:
    bool activation_failed(std::string &message, const std::string &reason, int ttl_s,
                           int loop_wait_s);
    bool open_device(std::string &error);
    bool set_timeout(int timeout_s, std::string &error);
    bool ping(std::string &error);
    bool write_all(const char *data, std::size_t len, std::string &error);
    void close_fd();

    std::string device_;
    WatchdogMode mode_;
    int safety_margin_s_;
    int fd_ = -1;
    bool emulated_ = false;
    bool can_disarm_ = true;       // the driver supports magic close
    bool can_set_timeout_ = true;  // the driver supports WDIOC_SETTIMEOUT
    int timeout_s_ = 0;       // timeout the device accepted
    int asked_timeout_s_ = 0; // timeout asked for (from ttl)
    // Last failed activation in automatic mode (no retry with the same input).
    bool failed_ = false;
    int failed_ttl_s_ = 0;
    int failed_loop_wait_s_ = 0;
};

}  // namespace pgha
