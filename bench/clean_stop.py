#!/usr/bin/python3
"""A clean stop of the primary (`pg_hactl stop`) against a restart of it:
how fast the leader lock moves, the write outage, and how the old primary
comes back.

    sudo PGHA_NET_ID=3 /usr/bin/python3 bench/clean_stop.py                 # 5 trials of each
    sudo /usr/bin/python3 bench/clean_stop.py --trials 6 --ttl 30 --loop-wait 10 --retry-timeout 10

One cluster (tests/cluster/harness.py, default dynamic config ttl 30 /
loop_wait 10 / retry_timeout 10) is reused. Trials alternate:

  stop:    the primary's supervisor loop (Docker's restart policy) is killed,
           then `pg_hactl stop` runs on the node as postgres. Figures: the
           command's wall time, leader znode moved after the command ended,
           write outage direct (last acknowledged write on the old primary
           -> first on the new one) and through HAProxy; the host is then
           started again and the old primary's rejoin (streaming after the
           start, and whether it needed pg_rewind) is reported.
  restart: `pg_ctl stop -m fast` on the primary and the supervisor starts it
           again (POST /restart and `pg_ctl restart` take the same path):
           whether the same node still leads, and the write outage.

Probes write every 50 ms (bench/_cluster_bench.py). Prints one row per trial
and median / min / max. No pass/fail.
"""
import argparse
import os
import sys
import time

import _cluster_bench as cb

PG_HACTL = os.environ.get("PGHA_TEST_HACTL", str(cb.harness.PG_HACTL))


def outage(probes, old, t0, moved):
    """(direct, haproxy) write outage after t0: the last acknowledged write before the first failure -> the
    first acknowledged write after it (direct: on any node, or on `old` again when the lock stayed; through
    HAProxy: on another node when the lock moved)."""
    out = []
    for key in (old.name, "haproxy"):
        p = probes[key]
        first_fail = p.first_failure(t0)
        if first_fail is None:
            out.append(0.0)
            continue
        before = [a for a in p.successes(after=t0 - 5) if a.done <= first_fail.sent]
        if key == "haproxy":
            after = [p.first_success(first_fail.sent, not_addr=old.ip if moved else None)]
        else:
            after = [probes[n].first_success(first_fail.sent) for n in probes if n != "haproxy"]
        after = [a for a in after if a is not None]
        if not before or not after:
            out.append(None)
            continue
        out.append(min(a.done for a in after) - before[-1].done)
    return out


def stop_trial(c, lw, trial, args):
    old = cb.wait_ready(c, members=True)
    row = {"trial": trial, "kind": "stop", "old": old.name}
    old.stop_supervisor()
    probes = cb.start_probes(c)
    try:
        cb.wait_probes_writing(probes, old)
        time.sleep(0.5)
        offset = cb.log_size(old)
        t0 = time.monotonic()
        p = old.host.exec(["runuser", "-u", "postgres", "--", PG_HACTL, "stop", "--config", str(old.config_file),
                           "--pgdata", str(old.data_dir)], timeout=180, check=False)
        t_end = time.monotonic()
        row["wall"] = t_end - t0
        row["result"] = (p.stderr or "").strip().splitlines()[-1:] or ["rc=%s" % p.returncode]
        try:
            cb.wait_for(lambda: lw.first_time(lambda v: v and v != old.name, after=t0) is not None, timeout=90,
                        interval=0.05, description="a new leader")
            row["lock"] = lw.first_time(lambda v: v and v != old.name, after=t0) - t_end
            row["new"] = lw.values()[-1]
            cb.wait_for(lambda: probes["haproxy"].first_success(t_end, not_addr=old.ip) is not None, timeout=90,
                        interval=0.05, description="writes through HAProxy")
        except cb.harness.WaitTimeout as e:
            row["error"] = str(e).splitlines()[0]
        time.sleep(0.5)
    finally:
        cb.stop_probes(probes)
    row["direct"], row["proxy"] = outage(probes, old, t0, True)
    t_start = time.monotonic()
    old.start_host()
    if row.get("new"):
        t_wal, _ = cb.wait_rejoin(c, old, c.node(row["new"]), timeout=args.rejoin_timeout)
        row["back"] = t_wal - t_start if t_wal else None
    row["rejoin"], _ = cb.rejoin_kind(cb.log_since(old, offset))
    return row


def restart_trial(c, lw, trial, args):
    old = cb.wait_ready(c, members=True)
    row = {"trial": trial, "kind": "restart", "old": old.name}
    probes = cb.start_probes(c)
    try:
        cb.wait_probes_writing(probes, old)
        time.sleep(0.5)
        t0 = time.monotonic()
        old.restart_postgres("fast")
        cb.wait_for(lambda: probes[old.name].first_success(t0 + 0.5) is not None or
                    lw.first_time(lambda v: v and v != old.name, after=t0) is not None, timeout=120,
                    interval=0.05, description="writes again")
        row["wall"] = time.monotonic() - t0
        time.sleep(1.0)
    finally:
        cb.stop_probes(probes)
    moved = lw.first_time(lambda v: v and v != old.name, after=t0)
    row["new"] = lw.values()[-1] if moved is not None else old.name
    row["kept"] = moved is None
    row["direct"], row["proxy"] = outage(probes, old, t0, not row["kept"])
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=5, help="trials of each kind")
    ap.add_argument("--rejoin-timeout", type=float, default=180)
    cb.add_timing_args(ap)
    args = ap.parse_args()
    cb.require_root()
    cfg, zk = cb.timing_from_args(args)
    cb.log("clean stop bench: %d trials each, dynamic config %s, ZooKeeper %s" % (args.trials, cfg, zk))
    cb.log(cb.environment_note())
    c = cb.start_cluster(cfg, zk, haproxy=True, keep=args.keep)
    try:
        c.nodes[0].sql(cb.PROBE_TABLE_SQL)

        def run(trial, lw):
            return (stop_trial if trial % 2 else restart_trial)(c, lw, trial, args)

        def report(row):
            return ["trial %d: %s" % (row["trial"], {k: (round(v, 3) if isinstance(v, float) else v)
                                                     for k, v in row.items()})]
        rows, leaders = cb.run_trials(c, 2 * args.trials, run, report)
        stops = [r for r in rows if r.get("kind") == "stop"]
        restarts = [r for r in rows if r.get("kind") == "restart"]
        print()
        print("== clean stop vs restart: ttl %(ttl)s, loop_wait %(loop_wait)s, retry_timeout %(retry_timeout)s" % cfg)
        cb.print_table(["trial", "kind", "old", "new", "wall", "lock moved", "outage direct", "outage haproxy",
                        "old streaming", "rejoin / lock kept"],
                       [[r["trial"], r.get("kind", "-"), r.get("old", "-"), r.get("new", "-"), cb.fmt(r.get("wall")),
                         cb.fmt(r.get("lock"), nd=3), cb.fmt(r.get("direct"), nd=3), cb.fmt(r.get("proxy"), nd=3),
                         cb.fmt(r.get("back")),
                         r.get("rejoin", "kept" if r.get("kept") else ("MOVED" if "kept" in r else r.get("error", "-")))]
                        for r in rows])
        print(cb.stats_line("stop: pg_hactl stop wall time", [r.get("wall") for r in stops]))
        print(cb.stats_line("stop: lock moved after the command", [r.get("lock") for r in stops], nd=3))
        print(cb.stats_line("stop: write outage direct", [r.get("direct") for r in stops], nd=3))
        print(cb.stats_line("stop: write outage through HAProxy", [r.get("proxy") for r in stops], nd=3))
        print(cb.stats_line("stop: old primary streaming after its start", [r.get("back") for r in stops]))
        print("stop: rejoin: %s" % ", ".join(r.get("rejoin", "-") for r in stops))
        print(cb.stats_line("restart: write outage direct", [r.get("direct") for r in restarts], nd=3))
        print(cb.stats_line("restart: write outage through HAProxy", [r.get("proxy") for r in restarts], nd=3))
        print("restart: lock kept %d of %d" % (sum(1 for r in restarts if r.get("kept")), len(restarts)))
        print("leader sequence: %s" % " -> ".join(leaders))
        print(cb.environment_note())
    finally:
        cb.teardown(c)
    return 0


if __name__ == "__main__":
    sys.exit(main())
