#!/usr/bin/python3
"""Cost of the commit-time lease check: pgbench TPS on the primary with
pg_ha.lease_enforcement on and off.

    sudo PGHA_NET_ID=3 /usr/bin/python3 bench/lease_cost.py                 # 3 rounds x 20 s, TPC-B-like and -S
    sudo /usr/bin/python3 bench/lease_cost.py --runs 5 --duration 30 --clients 8
    sudo /usr/bin/python3 bench/lease_cost.py --toggle pause                # switch by ha_pause()/ha_resume()

A 3-node cluster (tests/cluster/harness.py, no HAProxy), pgbench (Debian's
pgbench of the newest PostgreSQL installed) from the root namespace straight to the
primary. `pg_ha.lease_enforcement` is a postmaster-context GUC. How it is
switched (SHOW on the primary confirms the value before measuring):
  --toggle cluster (default): a fresh cluster whenever the setting changes,
      with the GUC in every node's settings file (the harness's
      extra_settings, i.e. PGHA_EXTRA_SETTINGS of the entrypoint);
      pgbench -i on each new cluster;
  --toggle restart: ALTER SYSTEM on every node, then POST /restart of each
      (standbys first, then the primary) in maintenance mode (ha_pause) so
      that the primary's restart does not hand over the lock;
  --toggle pause: ha_pause()/ha_resume() flips the very shared-memory flag
      the backends read (lease_enforced = GUC and not paused), no restart.

Rounds alternate the order (on/off, off/on, ...) so that slow drifts of the
machine's load hit both settings alike. Per round and setting: pgbench
TPC-B-like (default script) then -S (select only: no write commits, so the
check does not run), each --duration seconds. Prints every run and mean +-
standard deviation, min..max, and the difference of the means. No pass/fail.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time

import _cluster_bench as cb

PGBENCH = cb.pgbench_bin()


def pgbench(node, args, select_only):
    argv = [PGBENCH, "-h", node.ip, "-p", str(node.port), "-U", "postgres", "-c", str(args.clients),
            "-j", str(args.jobs), "-T", str(args.duration)] + (["-S"] if select_only else []) + ["postgres"]
    env = dict(os.environ, PGPASSWORD=cb.harness.SUPERUSER_PASSWORD, PGCONNECT_TIMEOUT="5")
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=args.duration + 120, env=env)
    m = re.search(r"tps = ([\d.]+) \(without initial connection time\)", proc.stdout)
    if proc.returncode != 0 or not m:
        raise RuntimeError("pgbench failed (rc=%d): %s %s" % (proc.returncode, proc.stdout[-800:], proc.stderr[-800:]))
    lat = re.search(r"latency average = ([\d.]+) ms", proc.stdout)
    failed = re.search(r"number of failed transactions: (\d+)", proc.stdout)
    return float(m.group(1)), float(lat.group(1)) if lat else None, int(failed.group(1)) if failed else 0


def show_enforcement(node):
    return node.sql_value("show pg_ha.lease_enforcement")


def set_guc_restart(c, value, args):
    """ALTER SYSTEM on every node, then restart them (standbys first, then the
    primary) through POST /restart, in maintenance mode (ha_pause) so that the
    primary's restart does not hand the lock to a standby; ha_resume after."""
    primary = cb.wait_ready(c, timeout=240)
    primary.sql("select ha_pause()")
    try:
        order = [n for n in c.nodes if n is not primary] + [primary]
        for n in order:
            n.sql("alter system set pg_ha.lease_enforcement = %s" % ("on" if value else "off"))
        for n in order:
            pid = n.postmaster_pid()
            t = time.monotonic()
            status, body = n.http("POST", "/restart", body={}, timeout=30)
            if status != 200:
                raise RuntimeError("POST /restart on %s: %s %s" % (n.name, status, body))
            cb.wait_for(lambda n=n, pid=pid: n.postmaster_pid() not in (None, pid), timeout=120, interval=0.2,
                        description="%s restarted" % n.name)
            cb.wait_for(lambda n=n: n.sql_value("select 1") == 1, timeout=120, interval=0.2,
                        description="%s accepting connections" % n.name)
            cb.log("  %s restarted in %.1fs" % (n.name, time.monotonic() - t))
    finally:
        p = cb.wait_for(lambda: c.primary(), timeout=120, interval=0.5, description="a primary")
        p.sql("select ha_resume()")
    primary = cb.wait_ready(c, timeout=240)
    for n in c.nodes:
        got = show_enforcement(n)
        if got != ("on" if value else "off"):
            raise RuntimeError("%s: pg_ha.lease_enforcement = %s after the restart" % (n.name, got))
    return primary


def set_pause(c, value, args):
    """Enforcement on = resumed, off = paused (the same shared flag the backends read)."""
    primary = cb.wait_ready(c, timeout=240)
    primary.sql("select ha_resume()" if value else "select ha_pause()")
    cb.wait_for(lambda: primary.sql_value("select paused from ha_node()") is (not value), timeout=30,
                interval=0.2, description="paused = %s" % (not value))
    return primary


def mean_sd(vals):
    if not vals:
        return "-"
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return "%.0f +- %.0f (%.1f%%), %.0f..%.0f" % (statistics.mean(vals), sd, 100 * sd / statistics.mean(vals),
                                                 min(vals), max(vals))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="rounds (each: both settings, both workloads)")
    ap.add_argument("--duration", type=int, default=20, help="seconds per pgbench run")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--scale", type=int, default=10)
    ap.add_argument("--toggle", choices=("cluster", "restart", "pause"), default="cluster")
    cb.add_timing_args(ap)
    args = ap.parse_args()
    cb.require_root()
    cfg, zk = cb.timing_from_args(args)

    cb.log("lease cost bench: %d rounds x %d s, -c %d -j %d, scale %d, toggle %s, dynamic config %s"
           % (args.runs, args.duration, args.clients, args.jobs, args.scale, args.toggle, cfg))
    cb.log(cb.environment_note())
    results = {(e, w): [] for e in (True, False) for w in ("tpcb", "select")}
    rows = []
    c = None

    def new_cluster(enforce):
        settings = "" if enforce else "pg_ha.lease_enforcement = off"
        cl = cb.start_cluster(cfg, zk, haproxy=False, keep=args.keep, extra_settings=settings)
        p = cb.wait_ready(cl)
        env = dict(os.environ, PGPASSWORD=cb.harness.SUPERUSER_PASSWORD)
        subprocess.run([PGBENCH, "-i", "-q", "-s", str(args.scale), "-h", p.ip, "-U", "postgres", "postgres"],
                       check=True, capture_output=True, timeout=600, env=env)
        got = show_enforcement(p)
        if got != ("on" if enforce else "off"):
            raise RuntimeError("%s: pg_ha.lease_enforcement = %s" % (p.name, got))
        cb.log("new cluster with pg_ha.lease_enforcement = %s; pgbench -i -s %d done on %s"
               % (got, args.scale, p.name))
        return cl

    try:
        current = None
        for r in range(args.runs):
            for enforce in ((True, False) if r % 2 == 0 else (False, True)):
                if current != enforce:
                    if args.toggle == "cluster" or c is None:
                        if c is not None:
                            c.teardown()
                            c = None
                        c = new_cluster(enforce if args.toggle == "cluster" else True)
                        current = enforce if args.toggle == "cluster" else True
                    if current != enforce:
                        cb.log("switching lease enforcement %s (%s)" % ("on" if enforce else "off", args.toggle))
                        (set_guc_restart if args.toggle == "restart" else set_pause)(c, enforce, args)
                    current = enforce
                primary = cb.wait_ready(c, timeout=240)
                for workload in ("tpcb", "select"):
                    tps, lat, failed = pgbench(primary, args, workload == "select")
                    results[(enforce, workload)].append(tps)
                    rows.append([r + 1, "on" if enforce else "off", workload, primary.name, "%.1f" % tps,
                                 "%.3f ms" % lat if lat else "-", failed,
                                 " ".join(open("/proc/loadavg").read().split()[:3])])
                    cb.log("round %d, enforcement %s, %s on %s: %.1f tps, latency %s ms, %d failed" % (
                        r + 1, "on" if enforce else "off", workload, primary.name, tps, lat, failed))
        print()
        print("== lease check cost: pgbench -c %d -j %d -T %d, scale %d, toggle %s"
              % (args.clients, args.jobs, args.duration, args.scale, args.toggle))
        cb.print_table(["round", "lease", "workload", "primary", "tps", "latency", "failed", "loadavg"], rows)
        for w, title in (("tpcb", "TPC-B-like"), ("select", "select-only (-S)")):
            on, off = results[(True, w)], results[(False, w)]
            print("%-17s on:  %s" % (title, mean_sd(on)))
            print("%-17s off: %s" % ("", mean_sd(off)))
            if on and off:
                d = statistics.mean(on) / statistics.mean(off) - 1
                print("%-17s on vs off: %+.1f%%" % ("", 100 * d))
        print(cb.environment_note())
    finally:
        cb.teardown(c)
    return 0


if __name__ == "__main__":
    sys.exit(main())
