"""Shared pieces of the cluster benchmarks (failover.py, switchover.py,
hung_primary.py, lease_cost.py): cluster start-up through the test harness
(tests/cluster/harness.py), 50 ms write probes, waits and summaries.

Needs root and Debian's /usr/bin/python3 (psycopg2, kazoo), like the harness.
Every wait is bounded. Times are time.monotonic() (CLOCK_MONOTONIC), the clock
the harness's LeaderWatch and pg_ha's lease use, so they can be compared.
"""
import contextlib
import datetime
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "cluster"))

import psycopg2  # noqa: E402

import harness  # noqa: E402
from harness import log_since, log_size, wait_for  # noqa: E402,F401  (log_* re-exported for the benches)

DEFAULTS = {"ttl": 30, "loop_wait": 10, "retry_timeout": 10}
# The tightest settings pg_ha accepts with Patroni's rule loop_wait + 2 *
# retry_timeout <= ttl; ZooKeeper's tick must be short enough that sessions
# expire close to the timeout (the server checks expiry once per tick).
TIGHT = {"ttl": 4, "loop_wait": 1, "retry_timeout": 1}
TIGHT_ZK = {"tick_time": 500, "min_session_timeout": 1000}
DEFAULT_ZK = {"tick_time": 2000, "min_session_timeout": 1000}


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def seconds(text):
    """A timing in seconds as the config key takes it: an int when whole (1.5 stays 1.5)."""
    v = float(text)
    return int(v) if v.is_integer() else v


def add_timing_args(ap, default_ttl=30, default_loop_wait=10, default_retry_timeout=10, members=False):
    """The timing options every cluster benchmark takes; `members`: also --members N (start_cluster's)."""
    ap.add_argument("--ttl", type=seconds, default=None, help="dynamic config ttl (s) [%d]" % default_ttl)
    ap.add_argument("--loop-wait", type=seconds, default=None,
                    help="dynamic config loop_wait (s) [%d]" % default_loop_wait)
    ap.add_argument("--retry-timeout", type=seconds, default=None,
                    help="dynamic config retry_timeout (s) [%d]" % default_retry_timeout)
    ap.add_argument("--tight", action="store_true",
                    help="ttl 4, loop_wait 1, retry_timeout 1, ZooKeeper tickTime 500 / minSessionTimeout 1000 "
                         "(--ttl etc. still override single values)")
    ap.add_argument("--tick-time", type=int, default=None, help="ZooKeeper tickTime (ms) [2000, 500 with --tight]")
    ap.add_argument("--keep", action="store_true", help="keep the run directory")
    ap.add_argument("--node-setting", action="append", default=[],
                    help="a pg_ha setting line for every node, e.g. \"pg_ha.lease_safety_margin = 300\", repeatable")
    if members:
        ap.add_argument("--members", type=int, default=3,
                        help="cluster size [3]; beyond 3 without HAProxy (docker/haproxy.cfg lists pg-1..pg-3)")
    ap.set_defaults(_timing_defaults=(default_ttl, default_loop_wait, default_retry_timeout))


def timing_from_args(args):
    """(dynamic config dict, ZooKeeper kwargs for Cluster)."""
    ttl, lw, rt = args._timing_defaults
    cfg = dict(TIGHT) if args.tight else {"ttl": ttl, "loop_wait": lw, "retry_timeout": rt}
    if args.ttl is not None:
        cfg["ttl"] = args.ttl
    if args.loop_wait is not None:
        cfg["loop_wait"] = args.loop_wait
    if args.retry_timeout is not None:
        cfg["retry_timeout"] = args.retry_timeout
    zk = dict(TIGHT_ZK if args.tight else DEFAULT_ZK)
    if args.tick_time is not None:
        zk["tick_time"] = args.tick_time
    # the server clamps session timeouts to [min, max]; keep ttl inside
    # and pg_hactl boot's 30 s (README "Timing profiles": with ZooKeeper's
    # default, 20 ticks, a bootstrap at tickTime 100 lost its session in initdb)
    zk["max_session_timeout"] = max(20 * zk["tick_time"], int(cfg["ttl"] * 1000), 30000)
    return cfg, zk


def environment_note():
    """Commit, installed-library checksum, load: printed with every result."""
    def sh(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=10, cwd=REPO).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return "?"
    commit = sh(["git", "rev-parse", "--short", "HEAD"])
    dirty = sh(["git", "status", "--porcelain", "--", "src"])
    so = sh(["md5sum", str(harness.PG_HA_SO)]).split(" ")[0][:12]
    load = open("/proc/loadavg").read().split()[:3]
    others = sorted({ns.split("-")[0] for ns in harness._ns_list() if ns.startswith("pgha")} -
                    {harness.NS_PREFIX.rstrip("-")})
    return ("commit %s%s, pg_ha.so md5 %s, %d cores, loadavg %s, PGHA_NET_ID=%d, other harness networks: %s"
            % (commit, " (src modified)" if dirty else "", so, os.cpu_count(), " ".join(load), harness.NET_ID,
               ", ".join(others) or "none"))


def start_cluster(dynamic_config, zk_kwargs, haproxy=True, keep=False, first="pg-1", extra_settings="",
                  timeout=240, members=3, haproxy_config=None):
    """A healthy cluster of `members` nodes whose primary is `first` (started
    alone, the others after). HAProxy only with 3 members: its configuration,
    docker/haproxy.cfg, used unchanged, lists pg-1..pg-3."""
    if members != 3 and haproxy:
        log("%d members: no HAProxy (docker/haproxy.cfg lists 3 servers); direct figures only" % members)
        haproxy = False
    c = harness.Cluster(nodes=members, haproxy=haproxy, keep_dir=keep, dynamic_config=dynamic_config,
                        extra_settings=extra_settings, haproxy_config=haproxy_config, **zk_kwargs)
    try:
        c.setup()
        c.start_zookeeper()
        c.start_haproxy()
        c.start_nodes([first])
        c.wait_for_primary(timeout=timeout, nodes=[first])
        c.start_nodes([n.name for n in c.nodes if n.name != first])
        c.wait_healthy(timeout=timeout + 30 * max(0, members - 3))
        cfg = c.dynamic_config()
        for k, v in dynamic_config.items():
            if cfg.get(k) != v:
                raise harness.HarnessError("config znode %s = %r, wrote %r" % (k, cfg.get(k), v))
    except BaseException:
        c.keep_dir = True
        log("cluster start failed; run directory kept: %s" % c.base_dir)
        c.teardown()
        raise
    return c


def wait_ready(c, timeout=180, members=False):
    """Healthy cluster and HAProxy routing writes to its primary only (and,
    with members=True, every member znode saying state "running"); returns the primary."""
    primary = c.wait_healthy(timeout=timeout)
    if members:
        wait_for(lambda: members_running(c), timeout=timeout, interval=0.2,
                 description="every member znode in state running",
                 state=lambda: {k: (v or {}).get("state") if isinstance(v, dict) else v
                                for k, v in c.members().items()})
    if c.haproxy:
        c.haproxy.wait_routing(primary, readers=[n for n in c.nodes if n is not primary], timeout=timeout,
                               state=c.diagnostics)
    return primary


def wal_streaming(standby, upstream):
    """PostgreSQL's view only: standby in recovery, its WAL receiver streams
    from upstream, and upstream's pg_stat_replication lists it as streaming."""
    try:
        if not standby.streams_from(upstream):
            return False
        rows = upstream.replication_rows()
    except Exception:  # noqa: BLE001 - either side may be restarting
        return False
    return any(r["client_addr"] == standby.ip and r["state"] == "streaming" for r in rows)


def wait_rejoin(c, standby, upstream, timeout):
    """(t_wal, t_replica): monotonic times standby was first seen streaming
    from upstream (PostgreSQL's view) and first seen streaming with its REST
    /replica answering 200 (what HAProxy's read checks and pg_ha see); None
    for what did not happen within timeout."""
    return wait_rejoin_all(c, [standby], upstream, timeout)[standby.name]


def wait_rejoin_all(c, standbys, upstream, timeout):
    """wait_rejoin() for several standbys at once: {name: (t_wal, t_replica)}."""
    times = {s.name: [None, None] for s in standbys}
    end = time.monotonic() + timeout
    while time.monotonic() < end and any(t[1] is None for t in times.values()):
        for s in standbys:
            t = times[s.name]
            if t[1] is not None or not wal_streaming(s, upstream):
                continue
            t[0] = t[0] or time.monotonic()
            if s.is_replica():
                t[1] = time.monotonic()
        time.sleep(0.1)
    return {k: tuple(v) for k, v in times.items()}


def members_running(c):
    """{name: state} from the member znodes when every node's says running, else None."""
    try:
        m = c.members()
    except Exception:  # noqa: BLE001
        return None
    states = {n.name: (m.get(n.name) or {}).get("state") if isinstance(m.get(n.name), dict) else None
              for n in c.nodes}
    return states if all(v == "running" for v in states.values()) else None


REWIND_PATTERNS = [
    # pg_rewind prints "servers diverged at <fork>" also when no rewind is required
    ("rewound", re.compile(r"pg_hactl: diverged: |rewinding from last common checkpoint")),
    ("no rewind needed", re.compile(r"no rewind needed")),
    ("no rewind required", re.compile(r"no rewind required")),
    ("pg_rewind failed", re.compile(r"pg_rewind failed")),
    ("re-clone", re.compile(r"re-cloning from the leader|reinitialize requested")),
]


def rejoin_kind(text):
    """(short verdict, matching log lines) from a node's log since the event."""
    lines = text.splitlines()
    found = []
    kinds = []
    for kind, rx in REWIND_PATTERNS:
        hits = [ln.strip() for ln in lines if rx.search(ln)]
        if hits:
            kinds.append(kind)
            found.extend(hits)
    if not kinds:
        if any("checking for divergence with pg_rewind" in ln for ln in lines):
            kinds.append("pg_rewind ran")
        else:
            kinds.append("no rewind step logged")
    return "+".join(kinds), found


# --------------------------------------------------------------------------
# write probes

# The timestamp that starts each line of the harness's ZooKeeper logs
# (slf4j simple logger, dateTimeFormat "yyyy-MM-dd HH:mm:ss.SSS", local time).
ZK_LOG_TIME = r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})"


def zk_log_time(stamp):
    """Wall-clock seconds of a ZK_LOG_TIME match."""
    return datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp()


PGBENCH_PATHS = ["/usr/lib/postgresql/%s/bin/pgbench" % v for v in ("18", "17", "16", "15")]


def pgbench_bin():
    """Debian's pgbench, newest major first."""
    for p in PGBENCH_PATHS:
        if os.path.exists(p):
            return p
    raise SystemExit("pgbench not found (%s)" % ", ".join(PGBENCH_PATHS))


def pgbench_env():
    """Environment for pgbench against a harness node (the superuser's password, a connect timeout)."""
    return dict(os.environ, PGPASSWORD=harness.SUPERUSER_PASSWORD, PGCONNECT_TIMEOUT="5")


PROBE_TABLE_SQL = ("create table if not exists bench_probe(id bigserial primary key, probe text not null, "
                   "at timestamptz not null default clock_timestamp())")


class Attempt:
    __slots__ = ("sent", "done", "ok", "addr", "err")

    def __init__(self, sent, done, ok, addr=None, err=None):
        self.sent, self.done, self.ok, self.addr, self.err = sent, done, ok, addr, err


class Probe(threading.Thread):
    """INSERT ... RETURNING every `interval` s through one address (a node or
    HAProxy's write port), over a kept connection that is re-opened (connect
    timeout 1 s) when it breaks. A refused write on a healthy connection (a
    standby: read-only transaction) keeps the connection, so the first write
    after a promotion needs no reconnect. Records every attempt."""

    def __init__(self, label, host, port, interval=0.05, connect_timeout=1, statement_timeout_ms=2000,
                 max_duration=1800):
        super().__init__(daemon=True, name="probe-%s" % label)
        self.label, self.host, self.port = label, host, port
        self.interval = interval
        self.connect_timeout = connect_timeout
        self.statement_timeout_ms = statement_timeout_ms
        self.max_duration = max_duration
        self.attempts = []
        self.conn = None
        self.stop_event = threading.Event()

    def _connect(self):
        self.conn = harness.pg_connect(self.host, self.port, connect_timeout=self.connect_timeout,
                                       statement_timeout_ms=self.statement_timeout_ms,
                                       application_name="bench-probe", tcp_user_timeout=3000)

    def run(self):
        end = time.monotonic() + self.max_duration
        while not self.stop_event.is_set() and time.monotonic() < end:
            sent = time.monotonic()
            try:
                if self.conn is None or self.conn.closed:
                    self._connect()
                with self.conn.cursor() as cur:
                    cur.execute("insert into bench_probe(probe) values (%s) returning id, host(inet_server_addr())",
                                (self.label,))
                    row = cur.fetchone()
                self.attempts.append(Attempt(sent, time.monotonic(), True, row[1]))
            except (psycopg2.Error, OSError) as exc:
                text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                self.attempts.append(Attempt(sent, time.monotonic(), False, None, text[:160]))
                if self.conn is not None and self.conn.closed:
                    self.conn = None
            delay = sent + self.interval - time.monotonic()
            if delay > 0:
                self.stop_event.wait(delay)
        with contextlib.suppress(Exception):
            if self.conn is not None:
                self.conn.close()

    def stop(self):
        self.stop_event.set()
        self.join(timeout=10)

    # -- analysis
    def successes(self, after=None, before=None, addr=None, not_addr=None):
        return [a for a in self.attempts if a.ok and (after is None or a.sent >= after)
                and (before is None or a.done <= before) and (addr is None or a.addr == addr)
                and (not_addr is None or a.addr != not_addr)]

    def first_success(self, after, addr=None, not_addr=None):
        s = self.successes(after=after, addr=addr, not_addr=not_addr)
        return s[0] if s else None

    def first_failure(self, after):
        for a in self.attempts:
            if not a.ok and a.sent >= after:
                return a
        return None

    def errors_between(self, t1, t2, limit=3):
        errs = [a.err for a in self.attempts if not a.ok and t1 <= a.sent <= t2]
        distinct = []
        for e in errs:
            short = re.sub(r"\d+", "N", e)[:90]
            if short not in distinct:
                distinct.append(short)
        return len(errs), distinct[:limit]


def start_probes(c, direct=True, proxy=True, interval=0.05):
    """{label: Probe}: one per node (direct) and one through HAProxy's write port."""
    probes = {}
    if direct:
        for n in c.nodes:
            probes[n.name] = Probe(n.name, n.ip, n.port, interval=interval)
    if proxy and c.haproxy:
        probes["haproxy"] = Probe("haproxy", c.haproxy.host.ip, harness.HAPROXY_WRITE_PORT, interval=interval)
    for p in probes.values():
        p.start()
    return probes


def stop_probes(probes):
    for p in probes.values():
        p.stop_event.set()
    for p in probes.values():
        p.join(timeout=10)


def wait_probes_writing(probes, primary, count=20, timeout=60):
    """Until the direct probe on the primary and the HAProxy probe each acked `count` writes on it."""
    t = time.monotonic()
    labels = [lb for lb in (primary.name, "haproxy") if lb in probes]
    wait_for(lambda: all(len(probes[lb].successes(after=t, addr=primary.ip)) >= count for lb in labels),
             timeout=timeout, interval=0.1, description="probes writing on %s" % primary.name)


# --------------------------------------------------------------------------
# summaries

def fmt(v, unit="s", nd=2):
    return "-" if v is None else ("%.*f%s" % (nd, v, unit))


def stats_line(name, values, unit="s", nd=2):
    vals = [v for v in values if v is not None]
    missing = len(values) - len(vals)
    if not vals:
        return "%-34s no data (%d trials)" % (name, len(values))
    return "%-34s median %s  min %s  max %s  (n=%d%s)" % (
        name, fmt(statistics.median(vals), unit, nd), fmt(min(vals), unit, nd), fmt(max(vals), unit, nd),
        len(vals), ", %d without a value" % missing if missing else "")


def print_table(headers, rows):
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h))
              for i, h in enumerate(headers)]
    print("  ".join(str(h).ljust(w) for h, w in zip(headers, widths)))
    for r in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)))
    sys.stdout.flush()


def run_trials(c, count, run, report):
    """Trials 1..count under one leader watch: run(trial, lw) returns the
    trial's row (a dict), report(row) the lines to log for it. A trial that
    raises is logged and recorded as {"trial", "error"}, the run directory is
    kept, and the next trial goes on. Returns (rows, leader sequence)."""
    rows = []
    with c.leader_watch(interval=0.05) as lw:
        for trial in range(1, count + 1):
            try:
                row = run(trial, lw)
            except Exception as exc:  # noqa: BLE001 - report and go on with a healthy cluster
                log("trial %d failed: %s: %s" % (trial, type(exc).__name__, str(exc)[:3000]))
                c.keep_dir = True
                rows.append({"trial": trial, "error": str(exc).splitlines()[0][:200]})
                continue
            rows.append(row)
            for line in report(row):
                log(line)
        return rows, lw.values()


def teardown(c):
    """Tear a bench cluster down (None: nothing was built); say where its run
    directory is when it was kept."""
    if c is None:
        return
    c.teardown()
    if c.keep_dir:
        print("run directory kept: %s" % c.base_dir)


def require_root():
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces): run as root with /usr/bin/python3")
    if not harness.extension_installed():
        raise SystemExit("pg_ha is not installed (make install)")
