#!/usr/bin/python3
"""Soak: leader changes nobody asked for at a timing profile, under pgbench
load, across a ZooKeeper server restart and a network delay on the primary.

    sudo PGHA_NET_ID=3 /usr/bin/python3 bench/soak.py                        # 30 min, profile fast, 3 ZooKeeper servers
    sudo PGHA_NET_ID=3 /usr/bin/python3 bench/soak.py --duration 600 --delay-ms 500

A 3-node cluster (tests/cluster/harness.py) with a ZooKeeper ensemble
(--zk-servers 3, tickTime 500 ms) and HAProxy (docker/haproxy.cfg). The
timing comes from `pg_hactl edit-config --profile NAME`, run against the
ensemble before the first node starts, so the profile measured is the one
the CLI ships. Then, for --duration seconds:

  * pgbench (TPC-B-like, -c/-j, scale --scale) through HAProxy's write port,
    in runs of --chunk seconds (a run that fails is counted and the next
    starts);
  * write probes every 50 ms, straight to each node and through HAProxy;
  * a poll of the leader znode every 50 ms (kazoo);
  * faults, at fixed fractions of the duration: at 25 % the ZooKeeper
    ensemble's leader server is killed (SIGKILL: a JVM's SIGTERM stop lingers
    up to 15 s) and started again --zk-downtime s later,
    at 45 % the server the primary's session uses (a follower when it can be
    one) is killed and restarted the same way, at 65 % every packet the primary's host sends
    is held --delay-ms ms for --delay-s s (bench/net_delay.cpp on an NFQUEUE
    rule in the host's namespace: `tc qdisc netem` needs sch_netem, which this
    kernel lacks; an egress delay, like netem on the primary's interface).

Printed: the leader changes (the figure the profile is judged by: 0), every
write gap longer than max(1 s, the delay + 0.5 s) on the primary (direct and through HAProxy) with
the fault it followed, pgbench's TPS per run (median, min, max, n) and its
failed runs, and each node's fencing and lease log lines. No pass/fail.

Needs root, Debian's /usr/bin/python3 (psycopg2, kazoo), `make install`,
pgbench (postgresql-15), iptables and libnetfilter-queue-dev (g++ builds
net_delay).
"""
import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import _cluster_bench as cb

harness = cb.harness
HERE = Path(__file__).resolve().parent
QUEUE_NUM = 7


def build_net_delay():
    out = Path(tempfile.gettempdir()) / "pgha-net-delay"
    src = HERE / "net_delay.cpp"
    if not out.exists() or out.stat().st_mtime < src.stat().st_mtime:
        subprocess.run(["g++", "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(out), str(src),
                        "-lnetfilter_queue"], check=True)
    return out


class PgbenchLoop(threading.Thread):
    """pgbench runs of `chunk` s back to back until `end` (monotonic)."""

    def __init__(self, host, port, args, end):
        super().__init__(daemon=True, name="pgbench")
        self.host, self.port, self.args, self.end = host, port, args, end
        self.runs = []        # (start, tps or None, failed transactions, error text)

    def run(self):
        env = cb.pgbench_env()
        for _ in range(100000):
            left = self.end - time.monotonic()
            if left < 5:
                return
            t = int(min(self.args.chunk, left))
            argv = [cb.pgbench_bin(), "-h", self.host, "-p", str(self.port), "-U", "postgres", "-c",
                    str(self.args.clients), "-j", str(self.args.jobs), "-T", str(t), "postgres"]
            start = time.monotonic()
            try:
                p = subprocess.run(argv, capture_output=True, text=True, timeout=t + 120, env=env)
                m = re.search(r"tps = ([\d.]+) \(without initial connection time\)", p.stdout)
                failed = re.search(r"number of failed transactions: (\d+)", p.stdout)
                err = "" if p.returncode == 0 and m else (p.stderr.strip().splitlines() or ["rc %d" % p.returncode])[-1]
                self.runs.append((start, float(m.group(1)) if m else None, int(failed.group(1)) if failed else 0,
                                  err[:160]))
            except subprocess.TimeoutExpired:
                self.runs.append((start, None, 0, "timed out"))
            if time.monotonic() - start < 2:      # failed at once: do not spin
                time.sleep(2)


def write_gaps(probe, label, faults, start, end, min_gap=1.0):
    """Gaps between consecutive acknowledged writes longer than min_gap s."""
    acks = [a.done for a in probe.attempts if a.ok and start <= a.sent <= end]
    gaps = []
    for a, b in zip(acks, acks[1:]):
        if b - a > min_gap:
            before = [f for f in faults if f[0] <= a]  # the fault before the gap began
            after = "%s +%.1fs" % (before[-1][1], a - before[-1][0]) if before else "no fault yet"
            gaps.append((label, a - start, b - a, after))
    return gaps


def operator_conf(c):
    path = c.base_dir / "hactl.conf"
    path.write_text("pg_ha.scope = '%s'\npg_ha.namespace = '%s'\npg_ha.zookeeper_hosts = '%s'\n"
                    % (c.scope, c.namespace, ",".join(z.address for z in c.zookeepers)))
    return str(path)


def apply_profile(c, name, sets=()):
    """`pg_hactl edit-config --profile NAME [--set K=V ...] --force` on the
    empty scope; the config znode it wrote."""
    c.zk().ensure_path("%s/%s" % (c.namespace.rstrip("/"), c.scope))
    extra = [a for kv in sets for a in ("--set", kv)]
    p = subprocess.run([str(harness.PG_HACTL), "edit-config", "--profile", name] + extra +
                       ["--force", "--config", operator_conf(c)],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    cb.log("pg_hactl edit-config --profile %s %s: rc %d\n%s%s" % (name, " ".join(extra), p.returncode, p.stdout,
                                                                  p.stderr))
    if p.returncode != 0:
        raise SystemExit("pg_hactl edit-config --profile %s failed" % name)
    if "ZooKeeper grants" in p.stderr:
        raise SystemExit("ZooKeeper does not grant the profile's session timeout (see above)")
    return c.dynamic_config()


def restart_zk(c, server, downtime):
    t0 = time.monotonic()
    server.stop(kill=True)
    time.sleep(downtime)
    server.start(wait=True, timeout=60)
    return time.monotonic() - t0


def zk_server_of(c, node):
    """The ZooKeeper server a node's pg_ha session is connected to (its `cons`), or None."""
    for z in c.zookeepers:
        if node.ip in z.client_ips():
            return z
    return None


def delay_primary(node, delay_ms, seconds):
    """Every packet the host sends out of its interface (not loopback) held
    delay_ms for `seconds` s; returns the helper's output."""
    helper = build_net_delay()
    rule = ["OUTPUT", "!", "-o", "lo", "-j", "NFQUEUE", "--queue-num", str(QUEUE_NUM), "--queue-bypass"]
    node.host.exec(["iptables", "-A"] + rule)
    try:
        p = node.host.exec([str(helper), QUEUE_NUM, delay_ms, seconds], check=False, timeout=seconds + 30)
    finally:
        node.host.exec(["iptables", "-D"] + rule, check=False)
    return (p.stdout + p.stderr).strip()


def log_counts(node, offset):
    text = harness.log_since(node, offset)
    pats = {"fence": r"fenc", "lease": r"lease (ran out|expired|is not extended|revoked)",
            "demote": r"demot", "promote": r"promot", "session": r"session (expired|lost)"}
    return {k: len(re.findall(p, text, re.I)) for k, p in pats.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=int, default=1800, help="seconds of load [1800]")
    ap.add_argument("--profile", default="fast", help="pg_hactl edit-config --profile NAME [fast]")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="also set this config key after the profile (e.g. ttl=8), repeatable")
    ap.add_argument("--node-setting", action="append", default=[], metavar="LINE",
                    help="a pg_ha setting line for every node, e.g. \"pg_ha.lease_safety_margin = 1000\", repeatable")
    ap.add_argument("--zk-servers", type=int, choices=(1, 3), default=3)
    ap.add_argument("--tick-time", type=int, default=500, help="ZooKeeper tickTime (ms) [500]")
    ap.add_argument("--zk-downtime", type=float, default=2.0, help="seconds a restarted ZooKeeper server is down [2]")
    ap.add_argument("--delay-ms", type=int, default=1000, help="egress delay on the primary's host (ms) [1000]")
    ap.add_argument("--delay-s", type=int, default=60, help="how long the delay lasts (s) [60]")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--scale", type=int, default=10)
    ap.add_argument("--chunk", type=int, default=60, help="seconds per pgbench run [60]")
    ap.add_argument("--keep", action="store_true", help="keep the run directory")
    args = ap.parse_args()
    cb.require_root()
    if not shutil.which("iptables"):
        raise SystemExit("iptables is needed for the delay (apt-get install iptables libnetfilter-queue-dev)")
    build_net_delay()

    zk = {"tick_time": args.tick_time, "min_session_timeout": 1000, "max_session_timeout": 60000}
    cb.log("soak: %d s, profile %s%s%s, %d ZooKeeper servers %s, pgbench -c %d -j %d scale %d, ZooKeeper restarts "
           "%.1f s down, delay %d ms for %d s on the primary" % (
               args.duration, args.profile, "".join(" --set " + kv for kv in args.set),
               "".join(", node setting %s" % line for line in args.node_setting), args.zk_servers, zk, args.clients, args.jobs, args.scale,
               args.zk_downtime, args.delay_ms, args.delay_s))
    cb.log(cb.environment_note())
    c = harness.Cluster(nodes=3, zk_servers=args.zk_servers, haproxy=True, keep_dir=args.keep,
                        extra_settings="\n".join(args.node_setting), **zk)
    try:
        c.setup()
        c.start_zookeeper()
        cfg = apply_profile(c, args.profile, args.set)
        cb.log("config znode: %s" % cfg)
        c.start_haproxy()
        c.start_nodes(["pg-1"])
        c.wait_for_primary(timeout=240, nodes=["pg-1"])
        c.start_nodes(["pg-2", "pg-3"])
        primary = cb.wait_ready(c, timeout=240)
        primary.sql(cb.PROBE_TABLE_SQL)
        env = cb.pgbench_env()
        subprocess.run([cb.pgbench_bin(), "-i", "-q", "-s", str(args.scale), "-h", primary.ip, "-p", str(primary.port),
                        "-U", "postgres", "postgres"], check=True, capture_output=True, env=env, timeout=600)
        offsets = {n.name: harness.log_size(n) for n in c.nodes}

        lw = harness.LeaderWatch(c, interval=0.05, max_duration=args.duration + 600).start()
        probes = {n.name: cb.Probe(n.name, n.ip, n.port, max_duration=args.duration + 600) for n in c.nodes}
        probes["haproxy"] = cb.Probe("haproxy", c.haproxy.host.ip, harness.HAPROXY_WRITE_PORT,
                                     max_duration=args.duration + 600)
        for p in probes.values():
            p.start()
        start = time.monotonic()
        end = start + args.duration
        bench = PgbenchLoop(c.haproxy.host.ip, harness.HAPROXY_WRITE_PORT, args, end)
        bench.start()
        faults = []

        def at(fraction):
            wait = start + fraction * args.duration - time.monotonic()
            if wait > 0:
                time.sleep(wait)

        at(0.25)
        zl = c.zk_leader()
        t = time.monotonic()
        took = restart_zk(c, zl, args.zk_downtime)
        faults.append((t, "ZooKeeper leader %s killed and restarted" % zl.host.hostname))
        cb.log("killed and restarted the ZooKeeper leader %s: back serving after %.1f s" % (zl.host.hostname, took))

        at(0.45)
        current = c.primary() or primary
        server = zk_server_of(c, current) or c.zookeepers[0]
        mode = server.mode() or "?"
        t = time.monotonic()
        took = restart_zk(c, server, args.zk_downtime)
        faults.append((t, "%s's ZooKeeper server %s (%s) killed and restarted" % (current.name, server.host.hostname,
                                                                                  mode)))
        cb.log("killed and restarted %s's ZooKeeper server %s: back after %.1f s" % (current.name, server.host.hostname, took))

        at(0.65)
        current = c.primary() or primary
        t = time.monotonic()
        faults.append((t, "%d ms delay on %s for %d s" % (args.delay_ms, current.name, args.delay_s)))
        cb.log("holding every packet %s sends for %d ms, %d s" % (current.name, args.delay_ms, args.delay_s))
        helper_out = delay_primary(current, args.delay_ms, args.delay_s)
        faults.append((time.monotonic(), "delay on %s lifted" % current.name))
        cb.log("delay lifted: %s" % helper_out.replace("\n", "; "))

        bench.join(timeout=max(0, end - time.monotonic()) + 300)
        cb.stop_probes(probes)
        lw.stop()

        print()
        print("== soak: %d s, profile %s (ttl %s, loop_wait %s, retry_timeout %s), ZooKeeper tickTime %d ms, "
              "%d servers" % (args.duration, args.profile, cfg.get("ttl"), cfg.get("loop_wait"),
                              cfg.get("retry_timeout"), args.tick_time, args.zk_servers))
        values = [v for _, v in lw.changes]
        changes = max(0, len(values) - 1)
        print("leader znode values: %s" % " -> ".join(str(v) for v in values))
        print("LEADER CHANGES: %d (leader watch: %d polls, %d failed polls)" % (changes, lw.polls, lw.errors))
        for t, what in faults:
            print("  fault at %7.1f s: %s" % (t - start, what))
        # Under the delay every answer is delay_ms late: a probe's own round
        # trip is no gap, so the bar is the delay + 0.5 s (at least 1 s).
        min_gap = max(1.0, args.delay_ms / 1000.0 + 0.5)
        gaps = []
        for label in [current.name, "haproxy"]:
            if label in probes:
                gaps += write_gaps(probes[label], label, faults, start, end, min_gap=min_gap)
        print("write gaps > %.1f s (probe every 50 ms; a write's answer takes the delay): %d" % (min_gap, len(gaps)))
        for label, at_s, length, after in gaps:
            print("  %-8s at %7.1f s: %6.2f s without an acknowledged write (after: %s)" % (label, at_s, length, after))
        tps = [r[1] for r in bench.runs if r[1] is not None]
        failed_runs = [r for r in bench.runs if r[3]]
        print(cb.stats_line("pgbench TPS per run", tps, unit="", nd=1))
        print("pgbench runs: %d, failed %d, failed transactions %d" % (
            len(bench.runs), len(failed_runs), sum(r[2] for r in bench.runs)))
        for r in failed_runs:
            print("  run at %7.1f s: %s" % (r[0] - start, r[3]))
        for n in c.nodes:
            print("log lines of %s during the soak: %s" % (n.name, log_counts(n, offsets[n.name])))
        print(cb.environment_note())
        if args.keep:
            c.keep_dir = True
    finally:
        cb.teardown(c)
    return 0


if __name__ == "__main__":
    sys.exit(main())
