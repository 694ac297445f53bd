"""The emulated watchdog (watchdog_emulator.py) against a throwaway network
namespace holding a `sleep 300` (the "host"). Needs root and `ip`; no
PostgreSQL or ZooKeeper. Every wait is bounded."""
import os
import shutil
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
EMULATOR = os.path.join(HERE, "watchdog_emulator.py")
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
TIMEOUT = 2  # watchdog timeout the test writers set, seconds

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                                reason="needs root and iproute2 (network namespaces)")


def wait_until(pred, limit, step=0.05):
    end = time.monotonic() + limit
    while True:
        if pred():
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(step)


def netns_pids(ns):
    res = subprocess.run(["ip", "netns", "pids", ns], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, timeout=10, check=False)
    return [int(p) for p in res.stdout.split()]


@pytest.fixture
def netns():
    name = "pghawd-test-%d" % os.getpid()
    subprocess.run(["ip", "netns", "del", name], stderr=subprocess.DEVNULL, timeout=10)
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    try:
        yield name
    finally:
        for pid in netns_pids(name):
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        subprocess.run(["ip", "netns", "del", name], timeout=10)


class Host:
    """Processes started in the namespace; all killed at teardown."""

    def __init__(self, ns):
        self.ns = ns
        self.procs = []

    def start_sleep(self):
        # `ip netns exec` execs the command: the Popen pid is the sleep itself.
        p = subprocess.Popen(["ip", "netns", "exec", self.ns, "sleep", "300"])
        self.procs.append(p)
        assert wait_until(lambda: p.pid in netns_pids(self.ns), 10), "sleep not in the namespace"
        return p

    def cleanup(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(10)


@pytest.fixture
def host(netns):
    h = Host(netns)
    try:
        yield h
    finally:
        h.cleanup()


class Writer:
    """What pg_ha's Watchdog does on an emulated device."""

    def __init__(self, fifo, limit=10):
        self.fd = -1
        end = time.monotonic() + limit
        while self.fd < 0:
            try:
                self.fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError as e:  # ENXIO: the emulator is not reading (yet)
                if time.monotonic() >= end:
                    raise AssertionError("emulator never opened %s: %s" % (fifo, e))
                time.sleep(0.05)
        self.last_write = None

    def send(self, line):
        os.write(self.fd, (line + "\n").encode())
        self.last_write = time.monotonic()

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Emulator:
    def __init__(self, tmp_path, ns, extra):
        self.fifo = str(tmp_path / "watchdog")
        self.log_path = str(tmp_path / "emulator.log")
        self.ns = ns
        self.writers = []
        self.proc = subprocess.Popen([PYTHON, EMULATOR, "--fifo", self.fifo, "--netns", ns,
                                      "--log", self.log_path] + extra)

    def writer(self):
        w = Writer(self.fifo)
        self.writers.append(w)
        return w

    def log(self):
        try:
            with open(self.log_path, encoding="utf-8") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def stop(self):
        for w in self.writers:
            w.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def make_emulator(tmp_path, netns):
    made = []

    def factory(*extra):
        e = Emulator(tmp_path, netns, list(extra))
        made.append(e)
        return e

    yield factory
    for e in made:
        e.stop()
        sys.stderr.write("\n--- emulator log ---\n%s" % e.log())


def assert_alive_for(proc, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        assert proc.poll() is None, "host process died (rc %s)" % proc.returncode
        time.sleep(0.1)


def assert_killed_within(proc, writer, limit):
    """The process dies by SIGKILL, no earlier than TIMEOUT after the last write
    and no later than `limit` after it."""
    assert wait_until(lambda: proc.poll() is not None, limit + 2, step=0.02), "host process survived"
    died = time.monotonic()
    assert proc.returncode == -9
    elapsed = died - writer.last_write
    assert TIMEOUT - 0.2 <= elapsed <= limit, "killed %.2f s after the last write" % elapsed


def test_fifo_created_with_mode_and_owner(make_emulator):
    emu = make_emulator("--owner", "nobody")
    assert wait_until(lambda: os.path.exists(emu.fifo), 10)
    st = os.stat(emu.fifo)
    assert oct(st.st_mode & 0o777) == oct(0o660)
    import pwd
    assert st.st_uid == pwd.getpwnam("nobody").pw_uid


def test_keepalives_keep_the_host_alive(host, make_emulator):
    sleeper = host.start_sleep()
    emu = make_emulator()
    w = emu.writer()
    w.send("T%d" % TIMEOUT)
    for _ in range(10):  # 5 s: two and a half timeouts
        time.sleep(0.5)
        assert sleeper.poll() is None
        w.send("k")
    assert "fired" not in emu.log()
    assert "timeout set to %d s" % TIMEOUT in emu.log()
    w.send("V")
    w.close()


def test_magic_close_disarms(host, make_emulator):
    sleeper = host.start_sleep()
    emu = make_emulator()
    w = emu.writer()
    w.send("T%d" % TIMEOUT)
    w.send("k")
    w.send("V")
    w.close()
    assert wait_until(lambda: "disarmed (magic close)" in emu.log(), 5), emu.log()
    assert_alive_for(sleeper, TIMEOUT + 1.5)
    assert "fired" not in emu.log()
    # The device can be opened again after the magic close.
    w2 = emu.writer()
    w2.send("T%d" % TIMEOUT)
    w2.send("V")
    w2.close()
    assert wait_until(lambda: emu.log().count("disarmed (magic close)") == 2, 5), emu.log()
    assert_alive_for(sleeper, TIMEOUT + 1)


def test_silence_resets_the_host(host, netns, make_emulator):
    sleeper = host.start_sleep()
    emu = make_emulator()
    w = emu.writer()
    w.send("T%d" % TIMEOUT)
    w.send("k")
    # Writer stays open but silent, like a hung worker.
    assert_killed_within(sleeper, w, TIMEOUT + 1)
    assert "watchdog fired: resetting host %s" % netns in emu.log()
    # The reset is over (no process left in the namespace) at this line.
    assert wait_until(lambda: "disarmed after reset" in emu.log(), 5), emu.log()
    assert netns_pids(netns) == []
    # Disarmed after the reset: a new host process survives while nobody writes,
    # and a new writer can arm and disarm it again.
    w.close()
    sleeper2 = host.start_sleep()
    assert_alive_for(sleeper2, TIMEOUT + 1)
    w2 = emu.writer()
    w2.send("T%d" % TIMEOUT)
    w2.send("V")
    w2.close()
    assert_alive_for(sleeper2, TIMEOUT + 1)
    assert emu.log().count("watchdog fired") == 1


def test_close_without_magic_keeps_the_timer_running(host, make_emulator):
    sleeper = host.start_sleep()
    emu = make_emulator()
    w = emu.writer()
    w.send("T%d" % TIMEOUT)
    w.send("k")
    w.close()  # no "V": Linux keeps the timer running
    assert_killed_within(sleeper, w, TIMEOUT + 1)
    assert "writer closed without magic close" in emu.log()


def test_default_timeout_until_a_timeout_is_set(host, make_emulator):
    sleeper = host.start_sleep()
    emu = make_emulator("--default-timeout", str(TIMEOUT))
    w = emu.writer()
    w.send("k")
    assert_killed_within(sleeper, w, TIMEOUT + 1)


def test_sigterm_exits_cleanly(make_emulator):
    emu = make_emulator()
    w = emu.writer()
    w.send("T30")
    assert wait_until(lambda: "timeout set to 30 s" in emu.log(), 5), emu.log()
    emu.proc.terminate()
    assert emu.proc.wait(5) == 0
    assert "exiting on signal 15 while armed" in emu.log()
