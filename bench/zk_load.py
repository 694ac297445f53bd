#!/usr/bin/python3
"""ZooKeeper load of a cluster (issue 14 items 4 and 7): requests per second
the ZooKeeper server receives from pg_ha's members, at 3, 5 and 9 members,
idle or (--write-load) under pgbench on the primary.

    sudo PGHA_NET_ID=3 /usr/bin/python3 bench/zk_load.py                  # defaults, 3 members
    sudo /usr/bin/python3 bench/zk_load.py --tight --members 3 5 9
    sudo /usr/bin/python3 bench/zk_load.py --window 60 --trials 5
    sudo /usr/bin/python3 bench/zk_load.py --breakdown --trials 1 --window 60
    sudo /usr/bin/python3 bench/zk_load.py --tight --members 3 5 9 --write-load

A cluster of N nodes (tests/cluster/harness.py, no HAProxy, one ZooKeeper
server), healthy and left alone for two loops; then ZooKeeper's own counter
(`mntr`: zk_packets_received, every request and ping of every client) is read
before and after each window. The harness's own ZooKeeper client is closed
before measuring, so only the members count. Prints each window's rate and
the median, min, max and n per member count, and the rate per member. No
pass/fail: the issue's figures to compare with are Patroni 3.0.2's 0.95
requests/s (defaults) and 6.1 (tight), idle, 3 members.

--write-load runs pgbench (TPC-B-like, 2 clients, scale 1) straight to the
primary through every window: WAL positions then change all the time, and
what a member publishes of them (its row, the leader's `status`) is what
grows. pgbench's TPS is printed with the figures.

--breakdown has ZooKeeper log every request (PGHA_ZK_TRACE_REQUESTS: its
FinalRequestProcessor at debug level) and prints, per member, the requests
of the measurement windows by type and path: where the rate comes from.
"""
import argparse
import collections
import os
import re
import statistics
import subprocess
import time

import _cluster_bench as cb
from _cluster_bench import harness, log


def mntr(c):
    """ZooKeeper's mntr counters as {name: value}."""
    text = c.zookeepers[0].four_letter("mntr")
    out = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) == 2:
            out[parts[0]] = parts[1]
    return out


def packets(c):
    v = mntr(c).get("zk_packets_received")
    if v is None:
        raise harness.HarnessError("ZooKeeper's mntr has no zk_packets_received")
    return int(v)


def close_harness_zk(c):
    """The harness's own kazoo client (members(), waits) is not a member: closed before measuring."""
    with c._zk_lock:
        if c._zk is not None:
            c._zk.stop()
            c._zk.close()
            c._zk = None


REQUEST = re.compile("^" + cb.ZK_LOG_TIME + r" .*Processing request:: "
                     r"sessionid:(0x[0-9a-f]+) type:(\w+) .*?reqpath:(\S+)")


def sessions(c):
    """{session id as ZooKeeper logs it: member name} from the members' ephemeral znodes."""
    out = {}
    for name in c.zk_children("members") or []:
        _, stat = c.zk().get(c.zk_path("members", name))
        out["0x%x" % stat.ephemeralOwner] = name
    return out


def breakdown(c, owners, windows):
    """{member: Counter((type, path))} of the requests ZooKeeper logged inside `windows` (wall-clock pairs)."""
    base = c.zk_path()
    out = collections.defaultdict(collections.Counter)
    for line in c.zookeepers[0].log_path.read_text(errors="replace").splitlines():
        m = REQUEST.match(line)
        if not m:
            continue
        t = cb.zk_log_time(m.group(1))
        if not any(a <= t <= b for a, b in windows):
            continue
        path = m.group(4)
        path = path[len(base):] or "/" if path.startswith(base) else path
        out[owners.get(m.group(2), m.group(2))][(m.group(3), path)] += 1
    return out


def start_write_load(node, seconds):
    """pgbench TPC-B-like, 2 clients, straight to `node` for `seconds` (pgbench -i first)."""
    base = ["-h", node.ip, "-p", str(node.port), "-U", "postgres"]
    subprocess.run([cb.pgbench_bin(), "-i", "-q", "-s", "1"] + base + ["postgres"], check=True,
                   capture_output=True, env=cb.pgbench_env(), timeout=300)
    return subprocess.Popen([cb.pgbench_bin(), "-c", "2", "-j", "1", "-T", str(int(seconds))] + base + ["postgres"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=cb.pgbench_env())


def stop_write_load(proc):
    """Ends the pgbench run; its TPS (None if it failed)."""
    try:
        out, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    m = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out or "")
    if not m:
        log("pgbench failed: %s" % ((out or "").strip().splitlines() or ["no output"])[-1][:200])
    return float(m.group(1)) if m else None


def measure(members, cfg, zk_kwargs, window, trials, keep, want_breakdown=False, write_load=False):
    c = harness.Cluster(nodes=members, haproxy=False, keep_dir=keep, dynamic_config=cfg, **zk_kwargs)
    rates = []
    windows = []
    load = None
    try:
        c.setup()
        c.start_zookeeper()
        c.start_nodes(["pg-1"])
        c.wait_for_primary(timeout=240, nodes=["pg-1"])
        c.start_nodes([n.name for n in c.nodes if n.name != "pg-1"])
        c.wait_healthy(timeout=240 + 30 * members)
        cb.wait_ready(c, timeout=240, members=True)
        owners = sessions(c) if want_breakdown else {}
        settle = 2 * cfg["loop_wait"] + 2
        if write_load:
            # runs until a little after the last window: stop_write_load() waits for it
            load = start_write_load(c.node("pg-1"), settle + trials * (window + 1) + 5)
        close_harness_zk(c)
        log("%d members healthy%s; settling %d s" % (members, ", pgbench running" if load else "", settle))
        time.sleep(settle)
        for i in range(trials):
            p0, t0, w0 = packets(c), time.monotonic(), time.time()
            time.sleep(window)
            p1, t1, w1 = packets(c), time.monotonic(), time.time()
            windows.append((w0, w1))
            rate = (p1 - p0) / (t1 - t0)
            rates.append(rate)
            log("%d members, window %d: %.2f requests/s (%d in %.1f s)" % (members, i + 1, rate, p1 - p0, t1 - t0))
        if load is not None:
            if load.poll() is not None:
                log("pgbench ended before the last window: the windows were not all under load")
            tps = stop_write_load(load)
            load = None
            log("%d members: pgbench %s tps" % (members, "%.0f" % tps if tps else "failed"))
        if want_breakdown:
            seconds = sum(b - a for a, b in windows)
            print("\nrequests ZooKeeper logged in the %d windows (%.0f s), per member:" % (len(windows), seconds))
            for who, counts in sorted(breakdown(c, owners, windows).items()):
                total = sum(counts.values())
                print("  %s: %d (%.2f/s)" % (who, total, total / seconds))
                for (kind, path), n in counts.most_common():
                    print("    %-14s %-28s %d" % (kind, path, n))
    finally:
        if load is not None:
            load.kill()
            load.wait()
        c.teardown()
    return rates


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cb.add_timing_args(ap)
    ap.add_argument("--members", type=int, nargs="+", default=[3], help="cluster sizes [3]")
    ap.add_argument("--window", type=int, default=30, help="seconds per measurement window [30]")
    ap.add_argument("--trials", type=int, default=5, help="windows per cluster size [5]")
    ap.add_argument("--write-load", action="store_true",
                    help="pgbench (2 clients) on the primary through every window instead of an idle cluster")
    ap.add_argument("--breakdown", action="store_true",
                    help="also print each member's requests by type and path (ZooKeeper logs every request)")
    args = ap.parse_args()
    if args.breakdown:
        os.environ["PGHA_ZK_TRACE_REQUESTS"] = "1"
    cfg, zk_kwargs = cb.timing_from_args(args)
    print(cb.environment_note(), flush=True)
    log("settings %s, ZooKeeper %s" % (cfg, zk_kwargs))
    results = {}
    for n in args.members:
        results[n] = measure(n, cfg, zk_kwargs, args.window, args.trials, args.keep, args.breakdown,
                             args.write_load)
    print("\nZooKeeper requests/s, %s (settings %s, window %d s)"
          % ("pgbench on the primary" if args.write_load else "idle", cfg, args.window))
    print("members  median   min      max      n   per member (median)")
    for n, r in results.items():
        med = statistics.median(r)
        print("%-8d %-8.2f %-8.2f %-8.2f %-3d %.2f" % (n, med, min(r), max(r), len(r), med / n))


if __name__ == "__main__":
    main()
