#!/usr/bin/python3
"""ZooKeeper load of an idle cluster (issue 14 items 4 and 7): requests per
second the ZooKeeper server receives from pg_ha's members, at 3, 5 and 9
members.

    sudo PGHA_NET_ID=3 /usr/bin/python3 bench/zk_load.py                  # defaults, 3 members
    sudo /usr/bin/python3 bench/zk_load.py --tight --members 3 5 9
    sudo /usr/bin/python3 bench/zk_load.py --window 60 --trials 5

A cluster of N nodes (tests/cluster/harness.py, no HAProxy, one ZooKeeper
server), healthy and left alone for two loops; then ZooKeeper's own counter
(`mntr`: zk_packets_received, every request and ping of every client) is read
before and after each window. The harness's own ZooKeeper client is closed
before measuring, so only the members count. Prints each window's rate and
the median, min, max and n per member count, and the rate per member. No
pass/fail: the issue's figures to compare with are Patroni 3.0.2's 0.95
requests/s (defaults) and 6.1 (tight), idle, 3 members.
"""
import argparse
import statistics
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


def measure(members, cfg, zk_kwargs, window, trials, keep):
    c = harness.Cluster(nodes=members, haproxy=False, keep_dir=keep, dynamic_config=cfg, **zk_kwargs)
    rates = []
    try:
        c.setup()
        c.start_zookeeper()
        c.start_nodes(["pg-1"])
        c.wait_for_primary(timeout=240, nodes=["pg-1"])
        c.start_nodes([n.name for n in c.nodes if n.name != "pg-1"])
        c.wait_healthy(timeout=240 + 30 * members)
        cb.wait_ready(c, timeout=240, members=True)
        close_harness_zk(c)
        settle = 2 * cfg["loop_wait"] + 2
        log("%d members healthy; settling %d s" % (members, settle))
        time.sleep(settle)
        for i in range(trials):
            p0, t0 = packets(c), time.monotonic()
            time.sleep(window)
            p1, t1 = packets(c), time.monotonic()
            rate = (p1 - p0) / (t1 - t0)
            rates.append(rate)
            log("%d members, window %d: %.2f requests/s (%d in %.1f s)" % (members, i + 1, rate, p1 - p0, t1 - t0))
    finally:
        c.teardown()
    return rates


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cb.add_timing_args(ap)
    ap.add_argument("--members", type=int, nargs="+", default=[3], help="cluster sizes [3]")
    ap.add_argument("--window", type=int, default=30, help="seconds per measurement window [30]")
    ap.add_argument("--trials", type=int, default=5, help="windows per cluster size [5]")
    args = ap.parse_args()
    cfg, zk_kwargs = cb.timing_from_args(args)
    print(cb.environment_note(), flush=True)
    log("settings %s, ZooKeeper %s" % (cfg, zk_kwargs))
    results = {}
    for n in args.members:
        results[n] = measure(n, cfg, zk_kwargs, args.window, args.trials, args.keep)
    print("\nZooKeeper requests/s, idle (settings %s, window %d s)" % (cfg, args.window))
    print("members  median   min      max      n   per member (median)")
    for n, r in results.items():
        med = statistics.median(r)
        print("%-8d %-8.2f %-8.2f %-8.2f %-3d %.2f" % (n, med, min(r), max(r), len(r), med / n))


if __name__ == "__main__":
    main()
