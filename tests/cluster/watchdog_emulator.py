#!/usr/bin/python3
"""Emulated hardware watchdog for one emulated host (a network namespace).

    watchdog_emulator.py --fifo PATH --netns NS [--owner USER] [--log FILE]
                         [--default-timeout SECONDS]

pg_ha's watchdog module (src/watchdog/watchdog.hpp) treats a device path that
is a FIFO as this emulator and writes lines instead of ioctls:

    "T<seconds>\\n"   set the timeout (and reset the timer)
    "k\\n"            keepalive
    "V\\n" + close    magic close: disarm
    close without V  the timer keeps running (Linux semantics)
    anything else    logged; like any write, it resets the timer

Linux semantics as far as a FIFO allows: the timer starts with the first byte
a writer sends (the client sends "T" right after opening; an open without a
write cannot be seen through a FIFO), with --default-timeout (60 s, as
softdog) until a "T" line arrives; like a Linux driver, a timeout set
stays in effect for later opens until the host is reset. Every write resets
the timer. "V" as the last line
before the last writer closes disarms it. When the timer runs out the host is
"reset": the emulator logs "watchdog fired: resetting host NS" and SIGKILLs
every process in network namespace NS (`ip netns pids NS`, repeated until none
is left, bounded), then waits, disarmed, for a new writer. The FIFO is
re-opened after each writer closes, so the next open of the device works.

The FIFO is created if missing (mode 0660, owned by --owner so that the
postgres server can open it for writing; the directories above it must let
that user through). The emulator itself must run outside NS (it would kill
itself otherwise; its own pid is skipped anyway). Every arm, timeout change,
disarm and fire is logged with a timestamp, one flushed line each. SIGTERM or
SIGINT ends it cleanly (exit status 0). Waits are select() calls of at most
one second, so there is no busy loop. Standard library only.
"""
import argparse
import datetime
import os
import pwd
import select
import signal
import stat
import subprocess
import sys
import time

MAX_WAIT = 1.0          # longest select() wait, seconds
KILL_ROUNDS = 20        # `ip netns pids` + SIGKILL rounds when firing
KILL_ROUND_PAUSE = 0.1


class Emulator:
    def __init__(self, fifo, netns, log, default_timeout):
        self.fifo = fifo
        self.netns = netns
        self.log_file = log
        self.default_timeout = default_timeout
        self.stop_signal = None
        self.fd = -1
        self.armed = False
        self.timeout = default_timeout
        self.deadline = 0.0
        self.expect_close = False
        self.buf = b""
        self.last_empty_eof = 0.0

    # -- logging -----------------------------------------------------------
    def log(self, msg):
        now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        self.log_file.write("%s watchdog_emulator[%s]: %s\n" % (now, self.netns, msg))
        self.log_file.flush()

    # -- FIFO --------------------------------------------------------------
    def open_reader(self):
        """(Re)open the read end. The new descriptor is opened before the old
        one is closed, so a writer never finds the FIFO without a reader."""
        new = os.open(self.fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd >= 0:
            os.close(self.fd)
        self.fd = new

    def drain(self):
        """Discard bytes already queued (sent before the host was reset)."""
        while True:
            try:
                data = os.read(self.fd, 4096)
            except BlockingIOError:
                return
            if not data:
                self.open_reader()
                return

    # -- protocol ----------------------------------------------------------
    def on_data(self, data):
        now = time.monotonic()
        if not self.armed:
            self.armed = True
            self.log("armed by a writer (timeout %g s)" % self.timeout)
        self.buf += data
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            self.on_line(line)
        self.deadline = now + self.timeout

    def on_line(self, line):
        text = line.decode("ascii", "replace").strip()
        if text == "k":
            self.expect_close = False
        elif text == "V":
            self.expect_close = True
        elif text.startswith("T") and text[1:].isdigit() and int(text[1:]) >= 1:
            self.expect_close = False
            new = int(text[1:])
            if new != self.timeout:
                self.log("timeout set to %d s (was %g s)" % (new, self.timeout))
            self.timeout = new
        else:
            self.expect_close = False
            self.log("unknown line %r (counted as a keepalive)" % text)

    def on_writer_closed(self):
        if self.buf:
            self.on_line(self.buf)  # a last line without "\n"
            self.buf = b""
        if self.armed:
            if self.expect_close:
                self.armed = False
                self.log("disarmed (magic close)")
            else:
                left = max(0.0, self.deadline - time.monotonic())
                self.log("writer closed without magic close: timer keeps running, "
                         "fires in %.1f s" % left)
        else:
            now = time.monotonic()
            if now - self.last_empty_eof < 0.05:
                time.sleep(0.05)  # never spin, whatever the kernel reports
            self.last_empty_eof = now
        self.expect_close = False
        self.open_reader()

    # -- firing ------------------------------------------------------------
    def netns_pids(self):
        try:
            res = subprocess.run(["ip", "netns", "pids", self.netns], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, timeout=5, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            self.log("could not list the processes of %s: %s" % (self.netns, e))
            return None
        if res.returncode != 0:
            self.log("could not list the processes of %s: %s"
                     % (self.netns, res.stderr.decode(errors="replace").strip()))
            return None
        me = os.getpid()
        return [int(p) for p in res.stdout.split() if p.isdigit() and int(p) != me]

    def fire(self):
        self.log("watchdog fired: resetting host %s (no keepalive for %g s)"
                 % (self.netns, self.timeout))
        killed = set()
        for _ in range(KILL_ROUNDS):
            pids = self.netns_pids()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.add(pid)
                except ProcessLookupError:
                    pass
                except OSError as e:
                    self.log("could not kill %d: %s" % (pid, e))
            time.sleep(KILL_ROUND_PAUSE)
        else:
            self.log("processes still left in %s after %d rounds" % (self.netns, KILL_ROUNDS))
        self.log("killed %d process(es) in %s: %s"
                 % (len(killed), self.netns, " ".join(str(p) for p in sorted(killed)) or "-"))
        self.armed = False
        self.expect_close = False
        self.timeout = self.default_timeout  # a reset restores the driver's default
        self.buf = b""
        self.drain()
        self.log("disarmed after reset; waiting for a new writer")

    # -- main loop ---------------------------------------------------------
    def run(self):
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)

        def on_signal(signum, _frame):
            self.stop_signal = signum

        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

        self.open_reader()
        self.log("listening on %s (default timeout %g s)" % (self.fifo, self.default_timeout))
        while self.stop_signal is None:
            wait = MAX_WAIT
            if self.armed:
                wait = max(0.0, min(wait, self.deadline - time.monotonic()))
            readable, _, _ = select.select([self.fd, wake_r], [], [], wait)
            if wake_r in readable:
                try:
                    while os.read(wake_r, 64):
                        pass
                except BlockingIOError:
                    pass
            if self.fd in readable and self.stop_signal is None:
                try:
                    data = os.read(self.fd, 4096)
                except BlockingIOError:
                    data = None
                if data:
                    self.on_data(data)
                elif data == b"":
                    self.on_writer_closed()
            if self.armed and time.monotonic() >= self.deadline and self.stop_signal is None:
                self.fire()
        self.log("exiting on signal %d%s" % (self.stop_signal,
                                              " while armed" if self.armed else ""))
        os.close(self.fd)
        return 0


def prepare_fifo(path, owner):
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        os.mkfifo(path, 0o660)
        st = os.lstat(path)
    if not stat.S_ISFIFO(st.st_mode):
        raise SystemExit("watchdog_emulator: %s exists and is not a FIFO" % path)
    os.chmod(path, 0o660)
    if owner:
        pw = pwd.getpwnam(owner)
        os.chown(path, pw.pw_uid, pw.pw_gid)


def main(argv=None):
    ap = argparse.ArgumentParser(description="emulated hardware watchdog for a network namespace")
    ap.add_argument("--fifo", required=True, help="FIFO pg_ha uses as its watchdog device")
    ap.add_argument("--netns", required=True, help="network namespace to reset when the timer fires")
    ap.add_argument("--owner", help="user owning the FIFO (e.g. postgres)")
    ap.add_argument("--log", help="log file (appended); default stderr")
    ap.add_argument("--default-timeout", type=float, default=60.0,
                    help="timeout until a T line sets one (default 60)")
    args = ap.parse_args(argv)
    if args.default_timeout <= 0:
        ap.error("--default-timeout must be positive")
    try:
        prepare_fifo(args.fifo, args.owner)
    except (OSError, KeyError) as e:
        sys.stderr.write("watchdog_emulator: cannot prepare %s: %s\n" % (args.fifo, e))
        return 2
    log = open(args.log, "a", encoding="utf-8") if args.log else sys.stderr
    try:
        return Emulator(args.fifo, args.netns, log, args.default_timeout).run()
    finally:
        if log is not sys.stderr:
            log.close()


if __name__ == "__main__":
    sys.exit(main())
