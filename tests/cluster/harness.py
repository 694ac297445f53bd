"""Multi-node test harness for pg_ha: network namespaces, ZooKeeper, HAProxy, PostgreSQL.

Importable on its own (no pytest dependency): the cluster tests, the demo script
and the benchmarks all build on it. Needs root (network namespaces, nftables,
runuser) and Debian's python3 (psycopg2, kazoo).

Topology (addresses are fixed so configs and logs are easy to read):

    root namespace: bridge pghabr0 10.47.0.1/24  (the test process talks to every host)
      pgha-zk1   10.47.0.2    zoo1        ZooKeeper (standalone, or server 1 of 3)
      pgha-zk2   10.47.0.3    zoo2        ZooKeeper server 2 (ensemble only)
      pgha-zk3   10.47.0.4    zoo3        ZooKeeper server 3 (ensemble only)
      pgha-nN    10.47.0.1N   pg-N        PostgreSQL + pg_ha (docker/entrypoint.sh)
      pgha-proxy 10.47.0.100  haproxy     HAProxy with docker/haproxy.cfg, unchanged

Each host is a network namespace joined to the bridge by a veth pair. Namespaces
have only loopback and their 10.47.0.x address: no default route, no DNS server
(resolv.conf points at 127.0.0.1 so stray lookups fail fast), IPv6 off on the
veth. Names resolve through /etc/netns/<ns>/hosts.

Typical use:

    with Cluster() as c:          # cleans leftovers, builds the network
        c.start_zookeeper()
        c.start_haproxy()
        c.start_nodes()
        primary = c.wait_healthy(timeout=180)
        primary.sql("create table t(x int)")
"""

import base64
import contextlib
import csv
import http.client
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

try:  # optional at import time so plumbing-only users get a clear error later
    import psycopg2
    import psycopg2.errors  # noqa: F401  (makes psycopg2.errors available)
except ImportError:  # pragma: no cover
    psycopg2 = None

try:
    from kazoo.client import KazooClient
    from kazoo.retry import KazooRetry
except ImportError:  # pragma: no cover
    KazooClient = None
    KazooRetry = None


# --------------------------------------------------------------------------
# constants

HERE = Path(__file__).resolve().parent
REPO_DIR = HERE.parent.parent
ENTRYPOINT = REPO_DIR / "docker" / "entrypoint.sh"
HAPROXY_CFG = REPO_DIR / "docker" / "haproxy.cfg"
REAPER = HERE / "reaper.py"
WATCHDOG_EMULATOR = HERE / "watchdog_emulator.py"

# PGHA_NET_ID (0-9) gives a separate network, namespaces and run directory so
# that several harness runs can share one machine; 0 is the default layout.
NET_ID = int(os.environ.get("PGHA_NET_ID", "0"))
if not 0 <= NET_ID <= 9:
    raise SystemExit("PGHA_NET_ID must be 0..9")
BASE_ROOT = Path(os.environ.get("PGHA_TEST_BASE", "/tmp/pgha-test" + (str(NET_ID) if NET_ID else "")))
KEEP_RUN_DIRS = 10          # older run directories are pruned at setup

NS_PREFIX = "pgha-" if NET_ID == 0 else "pgha%d-" % NET_ID
BRIDGE = "pghabr%d" % NET_ID
SUBNET_PREFIX = "10.47.%d." % NET_ID
BRIDGE_IP = SUBNET_PREFIX + "1"
PREFIXLEN = 24

def _pg_config(what):
    try:
        return subprocess.run(["pg_config", "--" + what], capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


# The PostgreSQL under test: $PGHA_PG_BINDIR (and $PGHA_PG_PKGLIBDIR), else
# what pg_config says (scripts/test.sh --pg N runs the suite inside a root
# file system whose pg_config is that major's).
PG_BIN = Path(os.environ.get("PGHA_PG_BINDIR") or _pg_config("bindir") or "/nonexistent-pg_config-bindir")
PG_HA_SO = Path(os.environ.get("PGHA_PG_PKGLIBDIR") or _pg_config("pkglibdir") or str(PG_BIN.parent / "lib")) / "pg_ha.so"
PG_HACTL = Path(os.environ.get("PGHA_TEST_HACTL", "/usr/local/bin/pg_hactl"))  # the pg_hactl the tests run


def pg_major():
    """The major version of the PostgreSQL under test (15, 17, 18, ...)."""
    out = subprocess.run([str(PG_BIN / "postgres"), "--version"], capture_output=True, text=True,
                         timeout=10).stdout
    return int(re.search(r"(\d+)", out.split("(PostgreSQL)")[-1]).group(1))

PG_PORT = 5432
API_PORT = 8008
# The REST API refuses unsafe methods without credentials (issue 10): every
# cluster's nodes get these (PGHA_RESTAPI_*; Cluster(restapi_auth=False) for
# a default-configured, closed API), PgNode.http() sends them with unsafe
# methods, and members may send them to each other over the test network's
# plain http (pg_ha.restapi_allow_http_credentials).
REST_USER = "pgha-test"
REST_PASSWORD = "rest s3cret"


def rest_auth_header(user=REST_USER, password=REST_PASSWORD):
    """{"Authorization": "Basic ..."} for the harness's REST credentials."""
    return {"Authorization": "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()}
ZK_CLIENT_PORT = 2181
HAPROXY_READ_PORT = 5432
HAPROXY_WRITE_PORT = 5433
HAPROXY_STATS_PORT = 7000

SUPERUSER = "postgres"
SUPERUSER_PASSWORD = "postgres"
REPLICATION_PASSWORD = "rep-pass"
REWIND_PASSWORD = "rewind-pass"
ADMIN_PASSWORD = "admin"

SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOST_MARKER = "PGHA_TEST_HOST"      # set in the environment of every spawned host process
SUPERVISOR_MAX_RUNS = 100
NFT_TABLE = "pgha_partition%s" % (NET_ID or "")

# Java bits of Debian's zookeeper package. The jar's manifest Class-Path pulls
# in its dependencies; slf4j-simple gives it a console logger.
ZK_CLASSPATH = ":".join([
    "/usr/share/java/zookeeper.jar",
    "/usr/share/java/slf4j-simple.jar",
])
ZK_MAIN = "org.apache.zookeeper.server.quorum.QuorumPeerMain"


def zk_host_spec(i):
    """(hostname, namespace, ip) of ZooKeeper server i (1-based)."""
    return "zoo%d" % i, "%szk%d" % (NS_PREFIX, i), SUBNET_PREFIX + str(1 + i)


def node_host_spec(i):
    """(hostname, namespace, ip) of PostgreSQL node i (1-based, up to 9)."""
    if not 1 <= i <= 9:
        raise ValueError("node index must be 1..9")
    return "pg-%d" % i, "%sn%d" % (NS_PREFIX, i), SUBNET_PREFIX + str(10 + i)


PROXY_HOST_SPEC = ("haproxy", NS_PREFIX + "proxy", SUBNET_PREFIX + "100")


# --------------------------------------------------------------------------
# errors and waiting

class HarnessError(Exception):
    """The harness could not do what it was asked (setup, process control...)."""


class WaitTimeout(AssertionError):
    """wait_for() gave up. An AssertionError so pytest reports it as a test failure."""


def _describe(value, limit=4000):
    if isinstance(value, BaseException):
        text = "%s: %s" % (type(value).__name__, value)
    else:
        text = repr(value)
    if len(text) > limit:
        text = text[:limit] + "... [%d more chars]" % (len(text) - limit)
    return text


def wait_for(predicate, timeout=30.0, interval=0.5, description=None, state=None):
    """Call predicate() until it returns a truthy value, and return that value.

    An exception raised by predicate counts as "not yet" and is remembered. On
    timeout raise WaitTimeout saying what was awaited (description), how long,
    the last observed value or exception, and state() if given (a callable
    returning extra diagnostics, e.g. Cluster.diagnostics). Bounded both in time
    and in the number of attempts.
    """
    description = description or getattr(predicate, "__name__", "condition")
    start = time.monotonic()
    deadline = start + timeout
    max_attempts = int(timeout / max(interval, 0.01)) + 50
    last = None
    attempts = 0
    while attempts < max_attempts:
        attempts += 1
        try:
            value = predicate()
        except Exception as exc:  # noqa: BLE001 - every failure is "not yet"
            value = None
            last = exc
        else:
            if value:
                return value
            last = value
        now = time.monotonic()
        if now >= deadline:
            break
        time.sleep(min(interval, max(0.0, deadline - now)))
    msg = ["timed out after %.1fs (%d attempts) waiting for: %s"
           % (time.monotonic() - start, attempts, description),
           "last observed: " + _describe(last)]
    if state is not None:
        try:
            extra = state() if callable(state) else state
        except Exception as exc:  # noqa: BLE001
            extra = "(diagnostics failed: %s)" % _describe(exc)
        msg.append(str(extra))
    raise WaitTimeout("\n".join(msg))


# --------------------------------------------------------------------------
# small process helpers

def run(argv, check=True, timeout=60, input=None, env=None):
    """Run a command to completion (bounded by timeout); return CompletedProcess (text)."""
    try:
        proc = subprocess.run(argv, input=input, capture_output=True, text=True,
                              timeout=timeout, env=env)
    except subprocess.TimeoutExpired as exc:
        raise HarnessError("command timed out after %ss: %s" % (timeout, " ".join(map(str, argv)))) from exc
    if check and proc.returncode != 0:
        raise HarnessError("command failed (rc=%d): %s\nstdout: %s\nstderr: %s"
                           % (proc.returncode, " ".join(map(str, argv)),
                              proc.stdout.strip(), proc.stderr.strip()))
    return proc


def _ns_list():
    out = run(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _ns_pids(ns):
    proc = run(["ip", "netns", "pids", ns], check=False, timeout=20)
    return [int(p) for p in proc.stdout.split() if p.isdigit()]


def _kill_pids(pids, sig=signal.SIGKILL):
    for pid in pids:
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _kill_ns_processes(ns, timeout=15.0):
    """SIGKILL every process in namespace ns until none is left (bounded).

    A power cut stops every process at the same instant. Killing them one
    after the other would let a survivor act on the others' deaths (a
    pg_ha worker that sees its postmaster die leaves ZooKeeper cleanly), so
    every process is stopped (SIGSTOP) first, until listing the namespace
    shows none that is not stopped yet, and only then killed."""
    deadline = time.monotonic() + timeout
    stopped = set()
    for _ in range(20):
        fresh = [p for p in _ns_pids(ns) if p not in stopped]
        if not fresh or time.monotonic() > deadline:
            break
        _kill_pids(fresh, signal.SIGSTOP)
        stopped.update(fresh)
    for _ in range(int(timeout / 0.05) + 10):
        pids = _ns_pids(ns)
        if not pids:
            return
        _kill_pids(pids)
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    left = _ns_pids(ns)
    if left:
        raise HarnessError("processes survive SIGKILL in %s: %s" % (ns, left))


def _marked_pids():
    """PIDs of processes carrying the harness marker in their environment."""
    pids = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open("/proc/%s/environ" % entry, "rb") as f:
                env = f.read()
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if (HOST_MARKER + "=" + NS_PREFIX).encode() in env and b"reaper.py" not in cmdline:
            pids.append(int(entry))
    return pids


def _link_names():
    out = run(["ip", "-o", "link", "show"], check=False).stdout
    names = []
    for line in out.splitlines():
        m = re.match(r"\d+:\s+([^:@\s]+)", line)
        if m:
            names.append(m.group(1))
    return names


def cleanup_leftovers():
    """Remove everything an earlier (possibly crashed) run may have left behind:
    processes in pgha-* namespaces (and marked stragglers outside them), the
    namespaces, their veths, the bridge, and /etc/netns/pgha-* files."""
    for ns in _ns_list():
        if ns.startswith(NS_PREFIX):
            _kill_ns_processes(ns)
    stragglers = _marked_pids()
    if stragglers:
        _kill_pids(stragglers)
        wait_for(lambda: not [p for p in _marked_pids() if p in stragglers], timeout=10,
                 interval=0.1, description="stray harness processes to die")
    for ns in _ns_list():
        if ns.startswith(NS_PREFIX):
            run(["ip", "netns", "delete", ns], check=False)
    for name in _link_names():
        if name.startswith("v" + NS_PREFIX) or name == BRIDGE:
            run(["ip", "link", "delete", name], check=False)
    netns_etc = Path("/etc/netns")
    if netns_etc.is_dir():
        for d in netns_etc.iterdir():
            if d.name.startswith(NS_PREFIX):
                shutil.rmtree(d, ignore_errors=True)
        with contextlib.suppress(OSError):
            netns_etc.rmdir()        # only if empty: other users' entries stay


def _prune_run_dirs(keep=KEEP_RUN_DIRS):
    if not BASE_ROOT.is_dir():
        return
    dirs = sorted((d for d in BASE_ROOT.iterdir() if d.is_dir()), key=lambda d: d.stat().st_mtime)
    for d in dirs[:-keep] if keep else dirs:
        shutil.rmtree(d, ignore_errors=True)


def _tail(path, lines=40, max_bytes=256 * 1024):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read().decode("utf-8", "replace")
    except OSError as exc:
        return "(cannot read %s: %s)" % (path, exc)
    return "\n".join(data.splitlines()[-lines:])


def _chown_postgres(path):
    import pwd
    pw = pwd.getpwnam("postgres")
    os.chown(path, pw.pw_uid, pw.pw_gid)


def spawn_root(argv, log_path, marker, env=None):
    """Start a long-running process in the root namespace under reaper.py (e.g.
    the watchdog emulator, which must survive the host it resets). `marker`
    (starting with NS_PREFIX) tags it so cleanup_leftovers() kills it."""
    if not marker.startswith(NS_PREFIX):
        raise ValueError("marker must start with %s" % NS_PREFIX)
    full_env = dict(env if env is not None else {"PATH": SAFE_PATH, "LANG": "C.UTF-8"})
    full_env[HOST_MARKER] = marker
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, str(REAPER)] + [str(a) for a in argv],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=full_env, start_new_session=True, close_fds=True)


def extension_installed():
    """True once `make install` has put pg_ha.so and pg_hactl in place."""
    return PG_HA_SO.exists() and PG_HACTL.exists()


# --------------------------------------------------------------------------
# hosts and network

class Host:
    """One "machine": a network namespace with a veth on the bridge."""

    def __init__(self, hostname, ns, ip):
        self.hostname = hostname
        self.ns = ns
        self.ip = ip
        self.veth = "v" + ns            # root side of the pair; inside it is "eth0"
        assert len(self.veth) <= 15, self.veth
        self.procs = []                 # Popen objects of reapers we started
        self.partitioned = None         # None, "link" or "nft"

    def __repr__(self):
        return "Host(%s %s %s)" % (self.hostname, self.ns, self.ip)

    # -- processes
    def exec(self, argv, check=True, timeout=60, input=None, env=None):
        """Run argv inside the namespace to completion."""
        return run(["ip", "netns", "exec", self.ns] + [str(a) for a in argv],
                   check=check, timeout=timeout, input=input, env=env)

    def spawn(self, argv, log_path, env=None):
        """Start a long-running process inside the namespace, stdout+stderr
        appended to log_path, under reaper.py (see there why). Returns Popen."""
        full_env = dict(env if env is not None else {"PATH": SAFE_PATH, "LANG": "C.UTF-8"})
        full_env[HOST_MARKER] = self.ns
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, str(REAPER), "ip", "netns", "exec", self.ns] + [str(a) for a in argv],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=full_env, start_new_session=True, close_fds=True)
        self.procs.append(proc)
        return proc

    def pids(self):
        """PIDs of every process living in this namespace."""
        return _ns_pids(self.ns)

    def signal_all(self, sig):
        _kill_pids(self.pids(), sig)

    def kill_all(self, timeout=15.0):
        """SIGKILL every process in the namespace ("pull the plug"), then reap."""
        _kill_ns_processes(self.ns, timeout=timeout)
        self.reap(timeout=5.0)

    def reap(self, timeout=5.0):
        """Collect exited reapers; keep the running ones."""
        deadline = time.monotonic() + timeout
        alive = []
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.01, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                alive.append(proc)
        self.procs = alive

    # -- partitions
    def isolate(self, method="nft", peers=None, allow_observer=True):
        """Cut this host off the network.

        method "link": the root side of the veth goes down (no carrier; all
        traffic including the test process's is cut; senders see unreachable).
        method "nft": nftables rules inside the namespace silently drop
        packets on eth0; peers (list of Host or IP strings) restricts the cut to
        those addresses (a partial partition); allow_observer keeps the test
        process (10.47.0.1) able to talk to the host, e.g. to watch it fence.
        """
        if self.partitioned:
            self.heal()
        if method == "link":
            run(["ip", "link", "set", self.veth, "down"])
        elif method == "nft":
            self.exec(["nft", "-f", "-"], input=self._nft_rules(peers, allow_observer))
        else:
            raise ValueError("method must be 'link' or 'nft'")
        self.partitioned = method

    def _nft_rules(self, peers, allow_observer):
        lines = ["table inet %s {" % NFT_TABLE]
        for chain, hook, iface, addr in (("input", "input", "iifname", "saddr"),
                                          ("output", "output", "oifname", "daddr")):
            lines.append("  chain %s {" % chain)
            lines.append("    type filter hook %s priority -50; policy accept;" % hook)
            lines.append('    %s "lo" accept' % iface)
            if allow_observer:
                lines.append("    ip %s %s accept" % (addr, BRIDGE_IP))
            if peers:
                ips = ", ".join(p.ip if isinstance(p, Host) else str(p) for p in peers)
                lines.append("    ip %s { %s } drop" % (addr, ips))
            else:
                lines.append('    %s "eth0" drop' % iface)
            lines.append("  }")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def heal(self):
        """Undo isolate()."""
        run(["ip", "link", "set", self.veth, "up"], check=False)
        self.exec(["nft", "delete", "table", "inet", NFT_TABLE], check=False)
        self.partitioned = None


class Network:
    """The bridge, the namespaces and their veths, and /etc/netns/<ns>/ files."""

    def __init__(self, hosts):
        self.hosts = list(hosts)
        self.up = False

    def hosts_file(self):
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
                 "127.0.1.1\t%s" % socket.gethostname(),
                 "%s\tpgha-harness" % BRIDGE_IP]
        lines += ["%s\t%s" % (h.ip, h.hostname) for h in self.hosts]
        return "\n".join(lines) + "\n"

    def setup(self):
        cleanup_leftovers()
        run(["ip", "link", "add", BRIDGE, "type", "bridge", "stp_state", "0"])
        _write_sysctl("net/ipv6/conf/%s/disable_ipv6" % BRIDGE, "1")
        run(["ip", "addr", "add", "%s/%d" % (BRIDGE_IP, PREFIXLEN), "dev", BRIDGE])
        run(["ip", "link", "set", BRIDGE, "up"])
        hosts_text = self.hosts_file()
        for h in self.hosts:
            etc = Path("/etc/netns") / h.ns
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "hosts").write_text(hosts_text)
            # No DNS server: anything not in hosts fails fast on loopback.
            (etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
            run(["ip", "netns", "add", h.ns])
            run(["ip", "link", "add", h.veth, "type", "veth", "peer", "name", "eth0", "netns", h.ns])
            _write_sysctl("net/ipv6/conf/%s/disable_ipv6" % h.veth, "1")
            run(["ip", "link", "set", h.veth, "master", BRIDGE, "up"])
            h.exec(["sysctl", "-q", "-w", "net.ipv6.conf.eth0.disable_ipv6=1"])
            h.exec(["ip", "addr", "add", "%s/%d" % (h.ip, PREFIXLEN), "dev", "eth0"])
            h.exec(["ip", "link", "set", "eth0", "up"])
            h.exec(["ip", "link", "set", "lo", "up"])
        self.up = True

    def teardown(self):
        for h in self.hosts:
            with contextlib.suppress(HarnessError):
                h.kill_all()
            h.reap(timeout=5.0)
        cleanup_leftovers()
        self.up = False


def _write_sysctl(key, value):
    with contextlib.suppress(OSError):
        Path("/proc/sys", key).write_text(value)


# --------------------------------------------------------------------------
# ZooKeeper

class ZooKeeperServer:
    """One ZooKeeper server (Debian's package) in its own namespace."""

    def __init__(self, host, myid, base_dir, ensemble, tick_time=2000,
                 min_session_timeout=1000, max_session_timeout=None):
        self.host = host
        self.myid = myid
        self.dir = Path(base_dir) / ("zk%d" % myid)
        self.data_dir = self.dir / "data"
        self.cfg_path = self.dir / "zoo.cfg"
        self.log_path = self.dir / "log"
        self.ensemble = list(ensemble)      # Hosts of every server (1 = standalone)
        self.tick_time = tick_time
        self.min_session_timeout = min_session_timeout
        self.max_session_timeout = max_session_timeout or 20 * tick_time
        self.proc = None

    def __repr__(self):
        return "ZooKeeperServer(%s %s)" % (self.host.hostname, self.host.ip)

    @property
    def address(self):
        return "%s:%d" % (self.host.ip, ZK_CLIENT_PORT)

    def write_config(self):
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lines = [
            "tickTime=%d" % self.tick_time,
            # in ticks: at least 10 / 5, and at least 5 s / 2 s with short ticks
            "initLimit=%d" % max(10, -(-5000 // self.tick_time)),
            "syncLimit=%d" % max(5, -(-2000 // self.tick_time)),
            "dataDir=%s" % self.data_dir,
            "clientPort=%d" % ZK_CLIENT_PORT,
            "minSessionTimeout=%d" % self.min_session_timeout,
            "maxSessionTimeout=%d" % self.max_session_timeout,
            "maxClientCnxns=0",
            "admin.enableServer=false",
            "4lw.commands.whitelist=srvr,ruok,stat,mntr,cons,dump",
        ]
        if len(self.ensemble) > 1:
            for i, h in enumerate(self.ensemble, start=1):
                lines.append("server.%d=%s:2888:3888" % (i, h.hostname))
            (self.data_dir / "myid").write_text("%d\n" % self.myid)
        self.cfg_path.write_text("\n".join(lines) + "\n")

    def start(self, wait=True, timeout=60.0):
        if self.is_running():
            return
        self.write_config()
        argv = ["/usr/bin/java", "-Xmx256m", "-Xms32m", "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1", "-Xss512k",
                "-Djava.net.preferIPv4Stack=true",
                "-Dzookeeper.admin.enableServer=false",
                "-Dzookeeper.jmx.log4j.disable=true",
                "-Dorg.slf4j.simpleLogger.defaultLogLevel=info",
                "-Dorg.slf4j.simpleLogger.showDateTime=true",
                "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd HH:mm:ss.SSS"]
        if os.environ.get("PGHA_ZK_TRACE_REQUESTS"):
            # One log line per request, pings included (bench/zk_load.py --breakdown).
            argv.append("-Dorg.slf4j.simpleLogger.log.org.apache.zookeeper.server.FinalRequestProcessor=debug")
        argv += ["-cp", "%s:%s" % (self.dir, ZK_CLASSPATH),
                ZK_MAIN, str(self.cfg_path)]
        self.proc = self.host.spawn(argv, self.log_path)
        if wait:
            self.wait_serving(timeout)

    def is_running(self):
        return bool(self.host.pids())

    def four_letter(self, cmd, timeout=2.0):
        """Send a four-letter command (srvr, ruok, mntr...) and return the reply ("" on error)."""
        try:
            with socket.create_connection((self.host.ip, ZK_CLIENT_PORT), timeout=timeout) as s:
                s.sendall(cmd.encode())
                chunks = []
                for _ in range(1000):
                    data = s.recv(65536)
                    if not data:
                        break
                    chunks.append(data)
                return b"".join(chunks).decode("utf-8", "replace")
        except OSError:
            return ""

    def mode(self):
        """'standalone', 'leader', 'follower' or None when not serving."""
        m = re.search(r"^Mode: (\w+)", self.four_letter("srvr"), re.M)
        return m.group(1) if m else None

    def client_ips(self):
        """IPs of the clients connected to this server ('cons'; the four-letter
        probe itself shows up as the bridge address)."""
        return sorted(set(re.findall(r"^\s*/([0-9.]+):\d+\[", self.four_letter("cons"), re.M)))

    def wait_serving(self, timeout=60.0):
        return wait_for(self.mode, timeout=timeout, interval=0.25,
                        description="%r to serve clients" % self,
                        state=lambda: "zk log:\n" + _tail(self.log_path, 30))

    def stop(self, kill=False, timeout=15.0):
        """Stop the server: SIGTERM (SIGKILL if kill=True or it lingers)."""
        if not kill:
            self.host.signal_all(signal.SIGTERM)
            with contextlib.suppress(WaitTimeout):
                wait_for(lambda: not self.host.pids(), timeout=timeout, interval=0.1,
                         description="%r to exit" % self)
        self.host.kill_all()
        self.proc = None

    def restart(self, downtime=0.0, kill=False, wait=True, timeout=60.0):
        self.stop(kill=kill)
        if downtime:
            time.sleep(downtime)
        self.start(wait=wait, timeout=timeout)


# --------------------------------------------------------------------------
# HAProxy

def _parse_haproxy_listeners(cfg_text):
    """{port: (listen section name, health-check uri)} from an haproxy.cfg."""
    result = {}
    name = port = uri = None
    for raw in cfg_text.splitlines() + ["listen __end__"]:
        line = raw.split("#", 1)[0].strip()
        m = re.match(r"(listen|frontend|backend|defaults|global)\b\s*(\S*)", line)
        if m:
            if name and port:
                result[port] = (name, uri)
            name = m.group(2) if m.group(1) == "listen" else None
            port = uri = None
            continue
        m = re.match(r"bind\s+\S*:(\d+)", line)
        if m:
            port = int(m.group(1))
        m = re.search(r"\buri\s+(\S+)", line)
        if m and line.startswith("http-check"):
            uri = m.group(1)
    return result


class HAProxy:
    """HAProxy in pgha-proxy running the repository's docker/haproxy.cfg as is."""

    def __init__(self, host, base_dir, config_path=HAPROXY_CFG):
        self.host = host
        self.config_path = Path(config_path)
        self.dir = Path(base_dir) / "haproxy"
        self.log_path = self.dir / "log"
        self.proc = None
        listeners = _parse_haproxy_listeners(self.config_path.read_text())
        self.write_backend = listeners.get(HAPROXY_WRITE_PORT, ("pg-test-primary", None))[0]
        self.read_backend = listeners.get(HAPROXY_READ_PORT, ("pg-test-replica", None))[0]

    def start(self, wait=True, timeout=20.0):
        if self.host.pids():
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        # -db: stay in the foreground, log to stderr; the file is used unchanged.
        self.proc = self.host.spawn(["/usr/sbin/haproxy", "-db", "-f", self.config_path], self.log_path)
        if wait:
            wait_for(self.stats, timeout=timeout, interval=0.2, description="haproxy stats page",
                     state=lambda: _tail(self.log_path, 20))

    def stop(self):
        self.host.kill_all()
        self.proc = None

    def stats(self):
        """Rows of the CSV stats page (list of dicts keyed by column name)."""
        conn = http.client.HTTPConnection(self.host.ip, HAPROXY_STATS_PORT, timeout=3)
        try:
            conn.request("GET", "/;csv")
            resp = conn.getresponse()
            body = resp.read().decode("utf-8", "replace")
        finally:
            conn.close()
        if resp.status != 200:
            raise HarnessError("haproxy stats: HTTP %d" % resp.status)
        body = body.lstrip("# ")
        return list(csv.DictReader(io.StringIO(body)))

    def server_states(self, backend):
        """{server name: status ("UP", "DOWN", "UP 1/3", "no check"...)} of one listen section."""
        return {r["svname"]: r["status"] for r in self.stats()
                if r["pxname"] == backend and r["svname"] not in ("FRONTEND", "BACKEND")}

    def up_servers(self, backend):
        return sorted(s for s, st in self.server_states(backend).items() if st == "UP")

    def wait_routing(self, primary, readers=None, timeout=60.0, state=None):
        """Wait until the write listener has exactly `primary` UP and the read
        listener has at least `readers` UP (names like "pg-1")."""
        primary = getattr(primary, "name", primary)
        readers = sorted(getattr(r, "name", r) for r in (readers or []))

        def routed():
            # "UP 1/3" (going down) still receives traffic: only a plain "UP"
            # primary and no other routable server on the write side will do.
            ws = self.server_states(self.write_backend)
            routable = sorted(s for s, st in ws.items() if st.startswith("UP"))
            r = self.up_servers(self.read_backend)
            ok = routable == [primary] and ws.get(primary) == "UP" and set(readers) <= set(r)
            return (ws, r) if ok else False

        return wait_for(routed, timeout=timeout, interval=0.5,
                        description="haproxy: %s UP=[%s], %s UP>=%s"
                        % (self.write_backend, primary, self.read_backend, readers),
                        state=state or (lambda: "haproxy stats: %s / %s" % (
                            self.server_states(self.write_backend),
                            self.server_states(self.read_backend))))

    def connect(self, write=True, **kw):
        """psycopg2 connection through the write (5433) or read (5432) listener."""
        return pg_connect(self.host.ip, HAPROXY_WRITE_PORT if write else HAPROXY_READ_PORT, **kw)


# --------------------------------------------------------------------------
# PostgreSQL access

def pg_connect(host, port=PG_PORT, user=SUPERUSER, password=SUPERUSER_PASSWORD, dbname="postgres",
               connect_timeout=3, statement_timeout_ms=None, autocommit=True, **kw):
    """psycopg2 connection with short timeouts (connect, TCP keepalive/user timeout)."""
    if psycopg2 is None:
        raise HarnessError("psycopg2 is missing: run the harness with Debian's /usr/bin/python3")
    params = dict(host=host, port=port, user=user, password=password, dbname=dbname,
                  connect_timeout=connect_timeout, application_name="pgha-test",
                  keepalives=1, keepalives_idle=2, keepalives_interval=1, keepalives_count=3,
                  tcp_user_timeout=5000)
    if statement_timeout_ms:
        params["options"] = "-c statement_timeout=%d" % statement_timeout_ms
    params.update(kw)
    conn = psycopg2.connect(**params)
    conn.autocommit = autocommit
    return conn


def query(conn, sql, params=None):
    """Execute on conn; return all rows (list of tuples) or None for statements without result."""
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall() if cur.description else None


def lsn_to_int(text):
    """'0/3000060' -> 50331744 (None stays None)."""
    if text is None:
        return None
    hi, lo = str(text).split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def connection_broken(conn):
    """True when a trivial query on conn fails (e.g. the server crash-restarted)."""
    try:
        query(conn, "select 1")
    except psycopg2.Error:
        return True
    return False


# --------------------------------------------------------------------------
# PostgreSQL nodes

SUPERVISOR_SCRIPT = """#!/bin/sh
# Emulates Docker's "restart: always" for one pg_ha node: rerun the entrypoint
# whenever it exits, one second apart, at most %(max)d times.
n=0
while [ "$n" -lt %(max)d ]; do
    n=$((n + 1))
    echo "pgha-supervisor: run $n: starting %(entrypoint)s at $(date '+%%F %%T.%%N')"
    %(entrypoint)s
    rc=$?
    echo "pgha-supervisor: run $n: entrypoint exited with status $rc at $(date '+%%F %%T.%%N')"
    sleep 1
done
echo "pgha-supervisor: giving up after $n runs"
"""


class PgNode:
    """One PostgreSQL + pg_ha host, run through docker/entrypoint.sh under a supervisor."""

    def __init__(self, index, host, base_dir, cluster_env):
        self.index = index
        self.host = host
        self.name = host.hostname            # "pg-1"
        self.ip = host.ip
        self.port = PG_PORT
        self.api_port = API_PORT
        self.dir = Path(base_dir) / self.name
        self.data_dir = self.dir / "data"
        self.config_file = self.dir / "pg_ha.conf"
        self.socket_dir = self.dir / "run"
        self.log_path = self.dir / "log"
        self.supervisor_path = self.dir / "supervise.sh"
        self.cluster_env = cluster_env       # shared dict, see Cluster.__init__
        self.extra_settings = ""             # this node's PGHA_EXTRA_SETTINGS lines
        self.extra_env = {}                  # e.g. {"PGHA_NOFAILOVER": "on"}
        self.supervisor = None
        self.watchdog = False                # run the watchdog emulator (Cluster(watchdog=True))
        self.watchdog_fifo = self.dir / "watchdog.fifo"
        self.watchdog_log = self.dir / "watchdog.log"
        self.watchdog_proc = None
        self.patroni_config = None           # a Patroni YAML file: boot --patroni-config (PGHA_PATRONI_CONFIG)
        self.password = None                 # the superuser's password when not SUPERUSER_PASSWORD

    def __repr__(self):
        return "PgNode(%s %s)" % (self.name, self.ip)

    # -- environment and lifecycle
    def env(self):
        if self.patroni_config:
            # Everything else comes from the YAML file (its data_dir is self.data_dir).
            env = {"PATH": SAFE_PATH, "LANG": "C.UTF-8", "HOME": "/root", "PGDATA": str(self.data_dir),
                   "PGHA_CONFIG_FILE": str(self.config_file), "PGHA_PATRONI_CONFIG": str(self.patroni_config)}
            env.update(self.cluster_env.get("env", {}))
            env.update(self.extra_env)
            return env
        extra = "\n".join(s for s in (self.cluster_env.get("extra_settings", ""), self.watchdog_settings(),
                                      self.extra_settings) if s)
        env = {
            "PATH": SAFE_PATH,
            "LANG": "C.UTF-8",
            "HOME": "/root",
            "PGDATA": str(self.data_dir),
            "PGHA_CONFIG_FILE": str(self.config_file),
            "PGHA_UNIX_SOCKET_DIR": str(self.socket_dir),
            "PGHA_NAME": self.name,
            "PGHA_SCOPE": self.cluster_env["scope"],
            "PGHA_NAMESPACE": self.cluster_env["namespace"],
            "PGHA_ZOOKEEPER_HOSTS": self.cluster_env["zookeeper_hosts"],
            "PGHA_CONNECT_ADDRESS": "%s:%d" % (self.ip, self.port),
            "PGHA_API_CONNECT_ADDRESS": "%s:%d" % (self.ip, self.api_port),
            # The default pg_hba.conf keeps the superuser off the network; the
            # test process and HAProxy connect as the superuser from here.
            "PGHA_SUPERUSER_NETWORKS": "%s0/%d" % (SUBNET_PREFIX, PREFIXLEN),
            # the entrypoint has no default passwords
            "PGHA_SUPERUSER_PASSWORD": SUPERUSER_PASSWORD,
            "PGHA_REPLICATION_PASSWORD": REPLICATION_PASSWORD,
            "PGHA_REWIND_PASSWORD": REWIND_PASSWORD,
            "PGHA_ADMIN_PASSWORD": ADMIN_PASSWORD,
        }
        if extra:
            env["PGHA_EXTRA_SETTINGS"] = extra
        if self.cluster_env.get("restapi_auth", True):
            env.update({"PGHA_RESTAPI_USERNAME": REST_USER, "PGHA_RESTAPI_PASSWORD": REST_PASSWORD,
                        "PGHA_RESTAPI_ALLOW_HTTP_CREDENTIALS": "on"})
        env.update(self.cluster_env.get("env", {}))
        env.update(self.extra_env)
        return env

    def watchdog_settings(self):
        """Settings lines pointing pg_ha at this node's emulated watchdog device."""
        if not self.watchdog:
            return ""
        return "pg_ha.watchdog_mode = 'required'\npg_ha.watchdog_device = '%s'" % self.watchdog_fifo

    def start_watchdog(self, timeout=15.0):
        """Start tests/cluster/watchdog_emulator.py for this node (root namespace,
        so it outlives the host it resets) unless it is running; waits for its FIFO."""
        if self.watchdog_proc is not None and self.watchdog_proc.poll() is None:
            return self.watchdog_proc
        if not WATCHDOG_EMULATOR.exists():
            raise HarnessError("%s is missing" % WATCHDOG_EMULATOR)
        self.dir.mkdir(parents=True, exist_ok=True)
        _chown_postgres(self.dir)
        self.watchdog_proc = spawn_root(
            [sys.executable, WATCHDOG_EMULATOR, "--fifo", self.watchdog_fifo, "--netns", self.host.ns,
             "--owner", "postgres", "--log", self.watchdog_log],
            self.dir / "watchdog.out", marker=self.host.ns + "-watchdog")
        wait_for(lambda: self.watchdog_fifo.exists() or self.watchdog_proc.poll() is not None,
                 timeout=timeout, interval=0.05, description="watchdog FIFO %s" % self.watchdog_fifo)
        if self.watchdog_proc.poll() is not None:
            raise HarnessError("watchdog emulator of %s exited (rc=%s): %s" % (
                self.name, self.watchdog_proc.returncode, _tail(self.dir / "watchdog.out", 20)))
        return self.watchdog_proc

    def watchdog_log_text(self):
        try:
            return self.watchdog_log.read_text(errors="replace")
        except OSError:
            return ""

    def start(self):
        """Start the host: the supervisor loop running docker/entrypoint.sh.
        Also "power the host back on" after kill_host() (or a watchdog reset)."""
        if self.supervisor_running():
            return
        for d in (self.dir, self.socket_dir):
            d.mkdir(parents=True, exist_ok=True)
            _chown_postgres(d)
        if self.watchdog:
            self.start_watchdog()
        self.supervisor_path.write_text(SUPERVISOR_SCRIPT % {
            "max": SUPERVISOR_MAX_RUNS, "entrypoint": ENTRYPOINT})
        self.supervisor = self.host.spawn(["/bin/sh", self.supervisor_path], self.log_path, env=self.env())

    start_host = start

    def supervisor_running(self):
        return self.supervisor is not None and self.supervisor.poll() is None and bool(self.host.pids())

    def kill_host(self):
        """SIGKILL every process of the host (supervisor included): a power cut."""
        self.host.kill_all()
        self.supervisor = None

    def stop_supervisor(self):
        """Kill the supervisor loop only (Docker's restart policy off, as for a
        host about to be stopped for good): PostgreSQL keeps running, and is
        not started again once it exits. start_host() brings the loop back."""
        pids = self.process_pids(str(self.supervisor_path))
        if not pids:
            raise HarnessError("no supervisor loop of %s found" % self.name)
        _kill_pids(pids)
        wait_for(lambda: not self.process_pids(str(self.supervisor_path)), timeout=10, interval=0.05,
                 description="%s's supervisor loop to exit" % self.name)

    def stop(self):
        """Stop the host for good (teardown): same as kill_host()."""
        self.kill_host()

    def pg_ctl(self, *args, timeout=90):
        return self.host.exec(["runuser", "-u", "postgres", "--", PG_BIN / "pg_ctl", "-D", self.data_dir] + list(args),
                              timeout=timeout, check=False)

    def restart_postgres(self, mode="fast"):
        """Stop PostgreSQL only (pg_ctl stop as postgres); the supervisor starts it again."""
        old = self.postmaster_pid()
        proc = self.pg_ctl("-m", mode, "-t", "60", "stop")
        if proc.returncode != 0:
            raise HarnessError("pg_ctl stop on %s failed (rc=%d): %s %s\n%s"
                               % (self.name, proc.returncode, proc.stdout, proc.stderr, self.log_tail(30)))
        return old

    def postmaster_pid(self):
        """PID of the running postmaster (from postmaster.pid, checked against the namespace), or None."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        return pid if pid in self.host.pids() else None

    def sigstop(self):
        """Freeze the postmaster (SIGSTOP); returns its pid."""
        pid = self.postmaster_pid()
        if pid is None:
            raise HarnessError("%s: no running postmaster" % self.name)
        os.kill(pid, signal.SIGSTOP)
        return pid

    def sigcont(self, pid=None):
        pid = pid or self.postmaster_pid()
        if pid is None:
            raise HarnessError("%s: no postmaster to continue" % self.name)
        os.kill(pid, signal.SIGCONT)
        return pid

    def process_pids(self, title):
        """PIDs of this host's processes whose command line contains `title`
        (e.g. "pg_ha worker", "walsender")."""
        out = []
        for pid in self.host.pids():
            try:
                with open("/proc/%d/cmdline" % pid, "rb") as f:
                    cmd = f.read().replace(b"\0", b" ")
            except OSError:
                continue
            if title.encode() in cmd:
                out.append(pid)
        return out

    def worker_pid(self):
        """PID of the pg_ha background worker, or None."""
        pids = self.process_pids("pg_ha worker")
        return pids[0] if pids else None

    def freeze(self):
        """SIGSTOP the postmaster and the pg_ha worker (a hung primary: the
        other backends keep running). Returns the pids for thaw()."""
        pm = self.postmaster_pid()
        worker = self.worker_pid()
        if pm is None or worker is None:
            raise HarnessError("%s: postmaster %s, worker %s" % (self.name, pm, worker))
        for pid in (worker, pm):
            os.kill(pid, signal.SIGSTOP)
        return [worker, pm]

    def thaw(self, pids):
        """SIGCONT what freeze() stopped (those still alive)."""
        for pid in reversed(pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def kill_backend(self):
        """SIGKILL one client backend: PostgreSQL crash-restarts (all backends and
        the pg_ha worker die and start again). Returns the killed pid."""
        conn = self.connect()
        try:
            pid = query(conn, "select pg_backend_pid()")[0][0]
            os.kill(pid, signal.SIGKILL)
        finally:
            with contextlib.suppress(Exception):
                conn.close()
        return pid

    # -- SQL
    def connect(self, **kw):
        if self.password is not None:
            kw.setdefault("password", self.password)
        return pg_connect(self.ip, self.port, **kw)

    def sql(self, sql, params=None, timeout=10.0, **kw):
        """Run one statement over a new connection; rows (list of tuples) or None."""
        conn = self.connect(statement_timeout_ms=int(timeout * 1000), **kw)
        try:
            return query(conn, sql, params)
        finally:
            conn.close()

    def sql_value(self, sql, params=None, **kw):
        """First column of the first row."""
        rows = self.sql(sql, params, **kw)
        return rows[0][0] if rows else None

    def in_recovery(self):
        return self.sql_value("select pg_is_in_recovery()")

    def system_identifier(self):
        return str(self.sql_value("select system_identifier from pg_control_system()"))

    def replication_rows(self):
        """pg_stat_replication as dicts (on a primary: one per connected standby)."""
        rows = self.sql("select application_name, host(client_addr), state, sync_state "
                        "from pg_stat_replication order by 1")
        return [dict(zip(("application_name", "client_addr", "state", "sync_state"), r)) for r in rows]

    def wal_receiver_status(self):
        return self.sql_value("select status from pg_stat_wal_receiver")

    def wal_receiver(self):
        """(status, sender_host) of the WAL receiver, or None when there is none."""
        rows = self.sql("select status, sender_host from pg_stat_wal_receiver")
        return tuple(rows[0]) if rows else None

    def streams_from(self, upstream):
        """True when this node is in recovery and its WAL receiver streams from `upstream`."""
        if not self.in_recovery():
            return False
        wr = self.wal_receiver()
        return bool(wr) and wr[0] == "streaming" and wr[1] in (upstream.ip, upstream.name)

    def timeline(self):
        """Timeline this server writes (primary) or replays (standby)."""
        return int(self.sql_value("select case when pg_is_in_recovery() "
                                  "then (select received_tli from pg_stat_wal_receiver) "
                                  "else ('x' || substr(pg_walfile_name(pg_current_wal_insert_lsn()), 1, 8))"
                                  "::bit(32)::int end") or 0)

    def current_lsn(self):
        """pg_current_wal_lsn() (primary) or the newest received/replayed LSN (standby), as an int."""
        text = self.sql_value("select case when pg_is_in_recovery() then "
                              "greatest(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) "
                              "else pg_current_wal_lsn() end::text")
        return lsn_to_int(text)

    def accepts_writes(self):
        """True when a write commits here (uses table pgha_probe)."""
        self.sql("create table if not exists pgha_probe(id bigserial primary key, t timestamptz default now())")
        self.sql("insert into pgha_probe default values")
        return True

    # -- REST API
    def http(self, method, path, body=None, timeout=2.0, headers=None, auth=True):
        """One request to the pg_ha REST API; returns (status, body text).
        Unsafe methods carry the harness's credentials (auth=False: none)
        unless `headers` has an Authorization of its own.
        Connection-level failures return (None, "<error>") instead of raising."""
        if (auth and method not in ("GET", "HEAD", "OPTIONS") and self.cluster_env.get("restapi_auth", True)
                and "Authorization" not in (headers or {})):
            headers = dict(headers or {}, **rest_auth_header())
        conn = http.client.HTTPConnection(self.ip, self.api_port, timeout=timeout)
        try:
            if body is not None and not isinstance(body, (str, bytes)):
                body = json.dumps(body)
                headers = dict(headers or {}, **{"Content-Type": "application/json"})
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read().decode("utf-8", "replace")
        except (OSError, http.client.HTTPException) as exc:
            return None, "%s: %s" % (type(exc).__name__, exc)
        finally:
            conn.close()

    def http_json(self, path, method="GET", timeout=2.0):
        """(status, parsed JSON body or None)."""
        status, body = self.http(method, path, timeout=timeout)
        try:
            return status, json.loads(body)
        except ValueError:
            return status, None

    def is_primary(self):
        return self.http("GET", "/primary")[0] == 200

    def is_replica(self):
        return self.http("GET", "/replica")[0] == 200

    # -- diagnostics
    def log_tail(self, lines=40):
        return _tail(self.log_path, lines)

    def describe(self, lines=40):
        status, body = self.http("GET", "/patroni", timeout=1.0)
        return "\n".join([
            "=== %s (%s, ns %s) supervisor=%s postmaster=%s" % (
                self.name, self.ip, self.host.ns,
                "running" if self.supervisor_running() else "stopped", self.postmaster_pid()),
            "GET /patroni -> %s %s" % (status, body.strip()[:1500]),
            "--- %s (last %d lines)" % (self.log_path, lines),
            self.log_tail(lines)])


# --------------------------------------------------------------------------
# watching roles in the background

class RoleMonitor:
    """Poll every node's /primary (and the leader znode) in background threads.

    Use it to prove "nobody else was ever primary": poll every `interval`
    seconds during a disruption, then check answered_200(). Bounded by
    max_duration even if stop() is never called.
    """

    def __init__(self, cluster, nodes=None, interval=0.2, path="/primary", method="GET",
                 watch_leader=True, max_duration=1800.0):
        self.cluster = cluster
        self.nodes = list(nodes or cluster.nodes)
        self.interval = interval
        self.path = path
        self.method = method
        self.watch_leader = watch_leader
        self.max_duration = max_duration
        self.samples = {n.name: [] for n in self.nodes}    # name -> [(t, status)]
        self.leader_samples = []                             # [(t, value or exception text)]
        self._stop = threading.Event()
        self._threads = []
        self.t0 = None

    def start(self):
        self.t0 = time.monotonic()
        for node in self.nodes:
            t = threading.Thread(target=self._poll_node, args=(node,), daemon=True,
                                 name="monitor-%s" % node.name)
            t.start()
            self._threads.append(t)
        if self.watch_leader:
            t = threading.Thread(target=self._poll_leader, daemon=True, name="monitor-leader")
            t.start()
            self._threads.append(t)
        return self

    def _poll_node(self, node):
        end = self.t0 + self.max_duration
        while not self._stop.is_set() and time.monotonic() < end:
            status, _ = node.http(self.method, self.path, timeout=1.0)
            self.samples[node.name].append((time.monotonic() - self.t0, status))
            self._stop.wait(self.interval)

    def _poll_leader(self):
        end = self.t0 + self.max_duration
        while not self._stop.is_set() and time.monotonic() < end:
            try:
                value = self.cluster.leader_name(timeout=1.0)
            except Exception as exc:  # noqa: BLE001 - ZooKeeper may be down on purpose
                value = "<error %s>" % type(exc).__name__
            self.leader_samples.append((time.monotonic() - self.t0, value))
            self._stop.wait(self.interval)

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def answered_200(self):
        """Names of the nodes that answered 200 at least once."""
        return {name for name, s in self.samples.items() if any(st == 200 for _, st in s)}

    def leaders(self):
        """Distinct successive leader znode values seen (errors and gaps excluded)."""
        out = []
        for _, v in self.leader_samples:
            if v is None or (isinstance(v, str) and v.startswith("<error")):
                continue
            if not out or out[-1] != v:
                out.append(v)
        return out

    def timeline(self):
        """Only the transitions, for failure messages."""
        lines = []
        for name, s in sorted(self.samples.items()):
            prev = object()
            parts = []
            for t, st in s:
                if st != prev:
                    parts.append("%.1fs:%s" % (t, st))
                    prev = st
            lines.append("%s %s %s (%d polls): %s" % (self.method, self.path, name, len(s), " ".join(parts)))
        prev = object()
        parts = []
        for t, v in self.leader_samples:
            if v != prev:
                parts.append("%.1fs:%s" % (t, v))
                prev = v
        lines.append("leader znode (%d polls): %s" % (len(self.leader_samples), " ".join(parts)))
        return "\n".join(lines)


class LeaderWatch:
    """Poll the leader znode every `interval` s (kazoo, own thread) and record
    when each value first appeared, on time.monotonic() (the clock the
    split-brain writers use)."""

    def __init__(self, cluster, interval=0.05, max_duration=1800.0):
        self.cluster = cluster
        self.interval = interval
        self.max_duration = max_duration
        self.changes = []          # [(monotonic time, value)] on every change (None = absent)
        self.errors = 0
        self.polls = 0
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self._run, daemon=True, name="leader-watch")
        self._thread.start()
        return self

    def _run(self):
        end = time.monotonic() + self.max_duration
        last = object()
        while not self._stop.is_set() and time.monotonic() < end:
            try:
                value = self.cluster.leader_name(timeout=1.0)
            except Exception:  # noqa: BLE001 - ZooKeeper may be down on purpose
                self.errors += 1
            else:
                self.polls += 1
                if value != last:
                    self.changes.append((time.monotonic(), value))
                    last = value
            self._stop.wait(self.interval)

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def current(self):
        return self.changes[-1][1] if self.changes else None

    def first_time(self, predicate, after=None):
        """Monotonic time the leader value first satisfied predicate(value) (after `after`), or None."""
        for t, v in self.changes:
            if (after is None or t >= after) and predicate(v):
                return t
        return None

    def values(self):
        """Distinct successive non-empty leader values."""
        out = []
        for _, v in self.changes:
            if v and (not out or out[-1] != v):
                out.append(v)
        return out

    def describe(self, t0=None):
        t0 = t0 if t0 is not None else (self.changes[0][0] if self.changes else 0.0)
        return "leader znode (%d polls, %d errors): %s" % (
            self.polls, self.errors, " ".join("%+.2fs:%s" % (t - t0, v) for t, v in self.changes))


# --------------------------------------------------------------------------
# the cluster

class Cluster:
    """A whole test deployment: network, ZooKeeper, HAProxy and PostgreSQL nodes.

    Only one Cluster can be live on a machine at a time (fixed names and
    addresses); setup() removes whatever an earlier run left behind.
    """

    def __init__(self, nodes=3, zk_servers=1, scope="batman", namespace="/service",
                 tick_time=2000, min_session_timeout=1000, max_session_timeout=None,
                 extra_settings="", node_settings=None, node_env=None, env=None,
                 haproxy=True, base_dir=None, keep_dir=None, run_id=None, pg_hactl_dir=None,
                 dynamic_config=None, watchdog=False, restapi_auth=True, zk_auth_data=None, zk_default_acl=None,
                 haproxy_config=None):
        """nodes: number of PostgreSQL nodes (pg-1..pg-N); zk_servers: 1 or 3;
        tick_time/min_session_timeout/max_session_timeout: ZooKeeper (ms);
        extra_settings: PGHA_EXTRA_SETTINGS lines for every node, node_settings:
        {"pg-1": "lines"} for one node; node_env: {"pg-1": {"PGHA_NOFAILOVER": "on"}};
        env: extra environment for every node; keep_dir: keep the run directory
        at teardown (default: $PGHA_TEST_KEEP); pg_hactl_dir: a directory put
        first on the nodes' PATH to use another pg_hactl (harness self-tests);
        dynamic_config: {key: value} written to the `config` znode (Patroni's
        format) by start_nodes() before the first node starts, e.g. {"ttl": 10,
        "loop_wait": 2, "retry_timeout": 2}; watchdog: give every node an
        emulated watchdog device (watchdog_emulator.py on a FIFO under the
        node's directory, pg_ha.watchdog_mode = required); restapi_auth:
        give every node the harness's REST credentials (REST_USER; False: the
        API's defaults, i.e. unsafe methods refused); zk_auth_data /
        zk_default_acl: kazoo's auth_data (e.g. [("digest", "user:pw")]) and
        default_acl for the harness's own ZooKeeper client (zk()), when the
        nodes use ZooKeeper authentication (the node settings are the test's);
        haproxy_config: another HAProxy configuration than docker/haproxy.cfg
        (e.g. docker/haproxy-fast.cfg), used as is."""
        if zk_servers not in (1, 3):
            raise ValueError("zk_servers must be 1 (standalone) or 3 (ensemble)")
        self.run_id = run_id or "%s-%d-%04x" % (time.strftime("%Y%m%d-%H%M%S"), os.getpid(),
                                                int.from_bytes(os.urandom(2), "big"))
        self.base_dir = Path(base_dir) if base_dir else BASE_ROOT / self.run_id
        self.keep_dir = (os.environ.get("PGHA_TEST_KEEP", "") not in ("", "0")) if keep_dir is None else keep_dir
        self.scope = scope
        self.namespace = namespace.rstrip("/") or "/service"

        self.zk_hosts = [Host(*zk_host_spec(i)) for i in range(1, zk_servers + 1)]
        self.zookeepers = [ZooKeeperServer(h, i, self.base_dir, self.zk_hosts, tick_time,
                                           min_session_timeout, max_session_timeout)
                           for i, h in enumerate(self.zk_hosts, start=1)]
        self.env = {
            "scope": scope,
            "namespace": self.namespace,
            "zookeeper_hosts": ",".join("%s:%d" % (h.hostname, ZK_CLIENT_PORT) for h in self.zk_hosts),
            "extra_settings": extra_settings,
            "env": dict(env or {}),
            "restapi_auth": bool(restapi_auth),
        }
        self.pg_hactl_dir = Path(pg_hactl_dir) if pg_hactl_dir else None
        if self.pg_hactl_dir:
            # The entrypoint puts $PGBIN first on PATH, and pg_hactl is installed
            # there too: shadow the whole bindir (see _make_fake_bindir).
            fake_bin = self.base_dir / "bin"
            self.env["env"]["PGBIN"] = str(fake_bin)
            self.env["env"]["PATH"] = "%s:%s" % (fake_bin, self.env["env"].get("PATH", SAFE_PATH))
        self.nodes = []
        for i in range(1, nodes + 1):
            node = PgNode(i, Host(*node_host_spec(i)), self.base_dir, self.env)
            node.extra_settings = (node_settings or {}).get(node.name, "")
            node.extra_env = dict((node_env or {}).get(node.name, {}))
            node.watchdog = bool(watchdog)
            self.nodes.append(node)
        self.initial_dynamic_config = dict(dynamic_config or {})
        self.proxy_host = Host(*PROXY_HOST_SPEC) if haproxy else None
        self.haproxy = (HAProxy(self.proxy_host, self.base_dir, config_path=haproxy_config or HAPROXY_CFG)
                        if haproxy else None)
        hosts = self.zk_hosts + [n.host for n in self.nodes] + ([self.proxy_host] if haproxy else [])
        self.network = Network(hosts)
        self._zk = None
        self._zk_servers = None          # observe_zookeepers(); None = every server
        self._zk_lock = threading.Lock()
        self.zk_auth_data = list(zk_auth_data) if zk_auth_data else None
        self.zk_default_acl = list(zk_default_acl) if zk_default_acl else None

    # -- lifecycle
    def setup(self):
        """Clean leftovers, create the run directory and the network."""
        if os.geteuid() != 0:
            raise HarnessError("the cluster harness needs root (network namespaces)")
        BASE_ROOT.mkdir(parents=True, exist_ok=True)
        os.chmod(BASE_ROOT, 0o755)
        self.network.setup()     # calls cleanup_leftovers() first
        _prune_run_dirs(KEEP_RUN_DIRS - 1)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base_dir, 0o755)
        if self.pg_hactl_dir:
            self._make_fake_bindir()
        return self

    def _make_fake_bindir(self):
        """<run>/bin: PostgreSQL's programs (symlinks; they find their
        installation through the resolved path) plus the pg_hactl of
        pg_hactl_dir instead of the installed one."""
        fake_bin = self.base_dir / "bin"
        fake_bin.mkdir(exist_ok=True)
        for prog in PG_BIN.iterdir():
            if prog.name != "pg_hactl":
                (fake_bin / prog.name).symlink_to(prog)
        (fake_bin / "pg_hactl").symlink_to(self.pg_hactl_dir / "pg_hactl")

    def start_zookeeper(self, timeout=90.0):
        for zk in self.zookeepers:
            zk.start(wait=False)
        for zk in self.zookeepers:
            zk.wait_serving(timeout)

    def start_haproxy(self):
        if self.haproxy:
            self.haproxy.start()

    def start_nodes(self, nodes=None, stagger=0.0):
        """Start the supervisors of the given nodes (all by default), `stagger` seconds apart."""
        if not self.pg_hactl_dir and not extension_installed():
            raise HarnessError("pg_ha is not installed (%s, %s): run `make install` first" % (PG_HA_SO, PG_HACTL))
        if self.initial_dynamic_config and self.zk_get("config") is None:
            self.set_dynamic_config(self.initial_dynamic_config)
        for i, node in enumerate(self._resolve(nodes)):
            if i and stagger:
                time.sleep(stagger)
            node.start()

    def start(self, nodes=True):
        """setup() + ZooKeeper + HAProxy (+ nodes)."""
        self.setup()
        self.start_zookeeper()
        self.start_haproxy()
        if nodes:
            self.start_nodes()
        return self

    def teardown(self):
        """Kill everything, remove namespaces/links/bridge and (unless kept) the run dir."""
        if self._zk is not None:
            with contextlib.suppress(Exception):
                self._zk.stop()
                self._zk.close()
            self._zk = None
        self.network.teardown()
        if not self.keep_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self):
        return self.setup()

    def __exit__(self, *exc):
        self.teardown()

    # -- lookup
    def _resolve(self, nodes):
        if nodes is None:
            return list(self.nodes)
        return [self.node(n) for n in nodes]

    def node(self, key):
        """Node by object, index (1-based), name ("pg-1"), or IP."""
        if isinstance(key, PgNode):
            return key
        for n in self.nodes:
            if key in (n.index, n.name, n.ip):
                return n
        raise KeyError(key)

    # -- ZooKeeper inspection
    def zk_leader(self):
        """The ensemble's ZooKeeperServer in mode 'leader' (or 'standalone'), or None."""
        for z in self.zookeepers:
            if z.mode() in ("leader", "standalone"):
                return z
        return None

    def observe_zookeepers(self, servers=None):
        """Make zk() (and everything built on it: zk_get(), leader_watch()...)
        connect only to `servers` (ZooKeeperServer list; None = every server),
        e.g. to read from the majority side of a partition, where a cut-off
        follower could still answer with stale data. Closes the current client."""
        with self._zk_lock:
            self._zk_servers = list(servers) if servers else None
            if self._zk is not None:
                with contextlib.suppress(Exception):
                    self._zk.stop()
                    self._zk.close()
                self._zk = None

    def zk(self):
        """A started kazoo client connected to the ensemble (from the root namespace)."""
        if KazooClient is None:
            raise HarnessError("kazoo is missing: run the harness with Debian's /usr/bin/python3")
        with self._zk_lock:
            if self._zk is None:
                hosts = ",".join(z.address for z in (self._zk_servers or self.zookeepers))
                client = KazooClient(hosts=hosts, timeout=10.0,
                                     connection_retry=KazooRetry(max_tries=600, delay=0.2, max_delay=2.0),
                                     command_retry=KazooRetry(max_tries=3, delay=0.2, max_delay=1.0),
                                     auth_data=self.zk_auth_data, default_acl=self.zk_default_acl)
                client.start(timeout=20)
                self._zk = client
            return self._zk

    def zk_path(self, *parts):
        return "/".join([self.namespace, self.scope] + [p.strip("/") for p in parts if p])

    def zk_get(self, path, timeout=5.0):
        """Text of a znode (absolute path, or relative to /<namespace>/<scope>), or None if absent."""
        from kazoo.exceptions import NoNodeError
        if not path.startswith("/"):
            path = self.zk_path(path)
        try:
            data, _ = self.zk().get_async(path).get(timeout=timeout)
        except NoNodeError:
            return None
        return data.decode("utf-8", "replace") if data is not None else ""

    def zk_children(self, path, timeout=5.0):
        from kazoo.exceptions import NoNodeError
        if not path.startswith("/"):
            path = self.zk_path(path)
        try:
            return sorted(self.zk().get_children_async(path).get(timeout=timeout))
        except NoNodeError:
            return []

    def leader_name(self, timeout=5.0):
        """Member name held by the leader znode, or None."""
        value = self.zk_get("leader", timeout=timeout)
        return value.strip() if value else value

    def zk_json(self, path, timeout=5.0):
        """Parsed JSON of a znode (None when absent, raw text when not JSON)."""
        raw = self.zk_get(path, timeout=timeout)
        if raw is None:
            return None
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            return raw

    def dynamic_config(self):
        """The `config` znode as a dict ({} when absent)."""
        value = self.zk_json("config")
        return value if isinstance(value, dict) else {}

    def set_dynamic_config(self, patch, replace=False):
        """Merge `patch` into the `config` znode (create it if absent; replace=True
        drops the other keys). Nodes pick it up within loop_wait (they watch it)."""
        from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError
        path = self.zk_path("config")
        zk = self.zk()
        for _ in range(20):
            try:
                data, stat = zk.get(path)
            except NoNodeError:
                try:
                    zk.create(path, json.dumps(patch).encode(), makepath=True)
                    return dict(patch)
                except NodeExistsError:
                    continue
            current = {} if replace else json.loads(data.decode() or "{}")
            current.update(patch)
            try:
                zk.set(path, json.dumps(current).encode(), version=stat.version)
                return current
            except BadVersionError:
                continue
        raise HarnessError("could not update %s (concurrent writers)" % path)

    def status_optime(self):
        """`optime` of the status znode (the leader's last published WAL position), or None."""
        st = self.zk_json("status")
        if isinstance(st, dict) and st.get("optime") is not None:
            return int(st["optime"])
        return None

    def members(self):
        """{member name: parsed JSON} from members/*."""
        out = {}
        for name in self.zk_children("members"):
            raw = self.zk_get("members/" + name)
            try:
                out[name] = json.loads(raw) if raw else None
            except ValueError:
                out[name] = raw
        return out

    def dump_znodes(self, path=None, limit=200):
        """Text dump of the cluster's znodes (bounded), for failure messages."""
        root = path or self.zk_path()
        lines = []
        stack = [root]
        try:
            while stack and len(lines) < limit:
                p = stack.pop()
                data, stat = self.zk().get_async(p).get(timeout=3)
                text = (data or b"").decode("utf-8", "replace")
                eph = " ephemeralOwner=0x%x" % stat.ephemeralOwner if stat.ephemeralOwner else ""
                lines.append("%s%s = %s" % (p, eph, text[:600]))
                children = self.zk().get_children_async(p).get(timeout=3)
                stack.extend(p.rstrip("/") + "/" + c for c in sorted(children, reverse=True))
        except Exception as exc:  # noqa: BLE001
            lines.append("(znode dump stopped at %s: %s)" % (stack[-1] if stack else root, _describe(exc)))
        return "\n".join(lines)

    # -- roles
    def primaries(self):
        """Nodes whose GET /primary answers 200 right now."""
        return [n for n in self.nodes if n.is_primary()]

    def primary(self):
        """The node whose /primary answers 200, None if none; raises on split brain."""
        found = self.primaries()
        if len(found) > 1:
            raise AssertionError("more than one node answers 200 on /primary: %s" % found)
        return found[0] if found else None

    def replicas(self):
        """Nodes whose GET /replica answers 200 right now."""
        return [n for n in self.nodes if n.is_replica()]

    def wait_for_primary(self, timeout=120.0, nodes=None):
        candidates = self._resolve(nodes)

        def one_primary():
            found = [n for n in candidates if n.is_primary()]
            if len(found) > 1:
                raise AssertionError("split brain: %s" % found)
            return found[0] if found else None

        return wait_for(one_primary, timeout=timeout, interval=0.5,
                        description="exactly one primary among %s" % [n.name for n in candidates],
                        state=self.diagnostics)

    def health_report(self, nodes=None):
        """(ok, primary, details): one primary answering /primary and accepting
        connections, every other node answering /replica, in recovery, and
        streaming from the primary, and every node's member znode present."""
        nodes = self._resolve(nodes)
        details = {}
        prim = [n for n in nodes if n.is_primary()]
        details["primary"] = [n.name for n in prim]
        if len(prim) != 1:
            return False, None, details
        p = prim[0]
        others = [n for n in nodes if n is not p]
        details["replica_200"] = {n.name: n.is_replica() for n in others}
        if not all(details["replica_200"].values()):
            return False, p, details
        try:
            rows = p.replication_rows()
        except Exception as exc:  # noqa: BLE001
            details["pg_stat_replication"] = _describe(exc)
            return False, p, details
        details["pg_stat_replication"] = rows
        streaming = {r["client_addr"] for r in rows if r["state"] == "streaming"}
        if not {n.ip for n in others} <= streaming:
            return False, p, details
        # Every node registered: a /replica answer can come before the worker's
        # member znode (a node's boot hands its session over to the worker).
        # Matched by address, not name: a node run from a Patroni YAML is
        # registered under the YAML's name (postgresqlN), by Patroni or pg_ha.
        try:
            addrs = set()
            for m in self.zk_children("members"):
                js = self.zk_json("members/" + m)
                url = js.get("conn_url", "") if isinstance(js, dict) else ""
                addrs.add(url.split("//", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0])
            details["registered"] = {n.name: n.ip in addrs for n in nodes}
        except Exception as exc:  # noqa: BLE001
            details["registered"] = _describe(exc)
            return False, p, details
        if not all(details["registered"].values()):
            return False, p, details
        return True, p, details

    def wait_healthy(self, timeout=180.0, nodes=None):
        """Wait for health_report() to be ok; returns the primary node."""
        last = {}

        def healthy():
            ok, p, details = self.health_report(nodes)
            last["details"] = details
            return p if ok else None

        try:
            return wait_for(healthy, timeout=timeout, interval=1.0,
                            description="a healthy cluster (1 primary, streaming replicas)")
        except WaitTimeout as exc:
            raise WaitTimeout("%s\nlast health report: %s\n%s" % (exc, last.get("details"), self.diagnostics())) from None

    # -- HAProxy
    def proxy_connect(self, write=True, **kw):
        if not self.haproxy:
            raise HarnessError("this cluster has no HAProxy")
        return self.haproxy.connect(write=write, **kw)

    def proxy_sql(self, sql, params=None, write=True, **kw):
        conn = self.proxy_connect(write=write, **kw)
        try:
            return query(conn, sql, params)
        finally:
            conn.close()

    # -- diagnostics
    def diagnostics(self, lines=40, first=()):
        """Everything useful for a failure message: per node /patroni and log
        tail, the znodes, ZooKeeper and HAProxy state. The nodes named in
        `first` come first (a CI excerpt of a long message keeps its start)."""
        order = sorted(self.nodes, key=lambda n: n.name not in first)
        parts = [n.describe(lines) for n in order]
        parts.append("=== znodes under %s" % self.zk_path())
        parts.append(self.dump_znodes())
        for zk in self.zookeepers:
            parts.append("=== %r mode=%s, log tail" % (zk, zk.mode()))
            parts.append(_tail(zk.log_path, 10))
        if self.haproxy:
            try:
                parts.append("=== haproxy: %s=%s %s=%s" % (
                    self.haproxy.write_backend, self.haproxy.server_states(self.haproxy.write_backend),
                    self.haproxy.read_backend, self.haproxy.server_states(self.haproxy.read_backend)))
            except Exception as exc:  # noqa: BLE001
                parts.append("=== haproxy: stats unavailable: %s" % _describe(exc))
        parts.append("=== run directory: %s" % self.base_dir)
        return "\n".join(parts)

    def monitor(self, **kw):
        """A RoleMonitor over this cluster (use as a context manager)."""
        return RoleMonitor(self, **kw)

    def leader_watch(self, interval=0.05):
        """A LeaderWatch over this cluster (use as a context manager)."""
        return LeaderWatch(self, interval=interval)


# --------------------------------------------------------------------------
# command line: bring a cluster up by hand (demo, debugging), look, tear down

def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(description="pg_ha cluster harness (needs root)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="build the network, start ZooKeeper, HAProxy and the nodes, then exit "
                                   "(everything keeps running until `down`)")
    up.add_argument("--nodes", type=int, default=3)
    up.add_argument("--zk-servers", type=int, default=1, choices=(1, 3))
    up.add_argument("--no-haproxy", action="store_true")
    up.add_argument("--no-nodes", action="store_true", help="plumbing only (no PostgreSQL)")
    up.add_argument("--wait", type=float, default=180.0, help="seconds to wait for a healthy cluster (0: don't)")
    sub.add_parser("down", help="kill everything and remove namespaces, links and /etc/netns entries")
    sub.add_parser("status", help="print /primary, /replica and the leader znode of a running cluster")
    args = ap.parse_args(argv)

    if args.cmd == "down":
        cleanup_leftovers()
        print("cleaned up")
        return 0
    if args.cmd == "status":
        c = Cluster(nodes=len([n for n in _ns_list() if re.fullmatch(NS_PREFIX + r"n\d", n)]) or 3,
                    zk_servers=3 if NS_PREFIX + "zk3" in _ns_list() else 1)
        for n in c.nodes:
            print("%-5s %-12s /primary=%s /replica=%s" % (n.name, n.ip, n.http("GET", "/primary")[0],
                                                         n.http("GET", "/replica")[0]))
        print("leader znode:", c.leader_name())
        c._zk and c._zk.stop()
        return 0
    c = Cluster(nodes=args.nodes, zk_servers=args.zk_servers, haproxy=not args.no_haproxy, keep_dir=True)
    c.setup()
    c.start_zookeeper()
    c.start_haproxy()
    if not args.no_nodes:
        c.start_nodes()
        if args.wait:
            print("primary:", c.wait_healthy(timeout=args.wait).name)
    if c._zk is not None:
        c._zk.stop()
    print("run directory: %s" % c.base_dir)
    for h in c.network.hosts:
        print("  %-8s %-12s netns %s" % (h.hostname, h.ip, h.ns))
    print("tear down with: %s %s down" % (sys.executable, __file__))
    return 0


if __name__ == "__main__":
    sys.exit(main())


def log_size(node):
    """The current size of a node's log: an offset for log_since()."""
    try:
        return os.path.getsize(node.log_path)
    except OSError:
        return 0


def log_since(node, offset):
    """What a node logged since `offset` (log_size() taken earlier)."""
    try:
        with open(node.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


class DirectWriter:
    """Commits increasing ids into `table` (id bigint primary key) directly to
    whichever node takes writes, trying the nodes in turn after an error;
    records (id, node, ack time) of every acknowledged commit in `acked` and
    (time, node, error) of every failed attempt in `failures`."""

    def __init__(self, c, table, name="writer"):
        self.c = c
        self.table = table
        self.name = name
        self.acked = []
        self.failures = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True, name=name)
        self.deadline = time.monotonic() + 600

    def run(self):
        next_id = int(time.time() * 1000) * 1000  # unique across a module's writers
        conn, node = None, None
        order = list(self.c.nodes)
        i = 0
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            try:
                if conn is None:
                    node = order[i % len(order)]
                    i += 1
                    conn = pg_connect(node.ip, connect_timeout=1, application_name=self.name)
                    conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute("SET statement_timeout = 2000")
                    cur.execute("INSERT INTO %s(id) VALUES (%%s) RETURNING id" % self.table, (next_id,))
                    cur.fetchone()
                self.acked.append((next_id, node.name, time.monotonic()))
                next_id += 1
                time.sleep(0.02)
            except psycopg2.Error as e:
                self.failures.append((time.monotonic(), node.name if node else None, str(e).strip()[:120]))
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:  # noqa: BLE001
                        pass
                conn = None
                if isinstance(e, psycopg2.IntegrityError):
                    next_id += 1  # committed earlier but the ack was lost: never reuse an id
                time.sleep(0.02)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=10)

    def missing_on(self, node):
        """Acknowledged rows that `node` does not have."""
        ids = {r[0] for r in node.sql("SELECT id FROM %s" % self.table)}
        return [a for a in self.acked if a[0] not in ids]
