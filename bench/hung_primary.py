#!/usr/bin/python3
"""Hung primary: does the frozen old primary acknowledge commits after the new
leader's election, and are acknowledged commits lost?

    sudo PGHA_NET_ID=3 /usr/bin/python3 bench/hung_primary.py               # 3 trials, ttl 30/10/10
    sudo PGHA_NET_ID=3 /usr/bin/python3 bench/hung_primary.py --tight       # ttl 4/1/1, tickTime 500
    sudo PGHA_NET_ID=3 /usr/bin/python3 bench/hung_primary.py --shape partition --trials 5 --ttl 10 ...
    sudo PGHA_NET_ID=3 /usr/bin/python3 bench/hung_primary.py --shape zk-follower --trials 5 --ttl 10 ...

Shapes (--shape): "freeze" (default; SIGSTOP as below), "partition" (the
primary's host cut off from every other host by nftables; the bench process
still reaches it, so the kept writer keeps trying), "zk-follower" (3-server
ensemble; pg-1's session on a follower; {pg-1, that follower} cut off from
{ZooKeeper leader, third server, standbys}: review F1; pg-1 is made the
primary again before each trial).

One cluster (tests/cluster/harness.py) reused across trials. Per trial:

  1. a writer with ONE kept connection to the primary commits back to back
     (autocommit `INSERT (trial, seq) RETURNING ha_lease_remaining_ms()`),
     recording every acknowledgement (client receive time) and the lease time
     left as the backend saw it, so lease deadline ~ send time + remaining;
  2. SIGSTOP of the primary's postmaster and pg_ha worker (harness freeze()):
     the client backend keeps running, so only the commit-time lease check can
     stop it;
  3. the leader znode is polled every 50 ms (harness LeaderWatch); the new
     leader's election time is the first poll that saw it, and more precisely
     the znode's ctime (ZooKeeper runs on this machine: same wall clock);
  4. SIGCONT once the new leader answers /primary and commits; wait until the
     old primary streams from the new leader;
  5. acknowledged commits lost = acknowledged seqs missing on the new primary.

Figures per trial: commits acked after the freeze, after the lease deadline,
after the election (must be 0), last ack relative to the deadline and to the
election, lost acknowledged commits (asynchronous replication: may be > 0 up
to the replication lag at the deadline; the walsenders keep streaming while
the postmaster is stopped), time to rejoin after SIGCONT, and how long the
other standby needs to stream from the new leader (it kept receiving WAL from
the frozen primary, including WAL of the transactions the lease refused, and
may need a rewind). No pass/fail.
"""
import argparse
import sys
import threading
import time

import psycopg2

import _cluster_bench as cb
import harness  # noqa: E402  (tests/cluster is on sys.path through _cluster_bench)
import test_zk_follower_partition as zkf  # noqa: E402

TABLE_SQL = "create table if not exists hung_t(trial int, seq int, primary key (trial, seq))"


class KeptWriter(threading.Thread):
    """One connection, never re-opened; autocommit INSERTs back to back."""

    def __init__(self, node, trial, max_duration=900):
        super().__init__(daemon=True, name="kept-writer")
        self.node, self.trial = node, trial
        self.conn = node.connect(statement_timeout_ms=10000, application_name="bench-kept-writer")
        self.acks = []          # [(sent, done, seq, lease remaining ms)]
        self.errors = []        # [(time, seq, text)]
        self.closed_at = None
        self.max_duration = max_duration
        self.stop_event = threading.Event()

    def run(self):
        end = time.monotonic() + self.max_duration
        seq = 0
        while not self.stop_event.is_set() and time.monotonic() < end:
            seq += 1
            sent = time.monotonic()
            try:
                with self.conn.cursor() as cur:
                    cur.execute("insert into hung_t values (%s, %s) returning ha_lease_remaining_ms()",
                                (self.trial, seq))
                    rem = cur.fetchone()[0]
                self.acks.append((sent, time.monotonic(), seq, rem))
            except psycopg2.Error as exc:
                self.errors.append((time.monotonic(), seq, str(exc).strip().splitlines()[0][:200]
                                    if str(exc).strip() else type(exc).__name__))
                if self.conn.closed:
                    self.closed_at = time.monotonic()
                    return
                self.stop_event.wait(0.02)

    def stop(self):
        self.stop_event.set()
        self.join(timeout=15)
        try:
            self.conn.close()
        except psycopg2.Error:
            pass


def znode_ctime_monotonic(c):
    """ctime of the leader znode converted to time.monotonic(), or None."""
    try:
        _, stat = c.zk().get(c.zk_path("leader"))
    except Exception:  # noqa: BLE001
        return None
    return stat.ctime / 1000.0 - (time.time() - time.monotonic())


class Fault:
    """How a trial hurts the primary: apply(old) at the fault, undo() after
    the new leader promoted."""

    def __init__(self, shape, c, lay=None):
        self.shape, self.c, self.lay = shape, c, lay
        self.undo_fn = None

    def pick_old(self):
        if self.shape == "zk-follower":
            old = zkf.make_pg1_primary(self.c)
            zkf.check_layout(self.c, self.lay, old)
            return old
        return cb.wait_ready(self.c, timeout=240)

    def apply(self, old):
        if self.shape == "freeze":
            pids = old.freeze()
            self.undo_fn = lambda: old.thaw(pids)
        elif self.shape == "partition":
            old.host.isolate("nft", allow_observer=True)
            self.undo_fn = old.host.heal
        else:
            zkf.cut(old, self.lay, [n for n in self.c.nodes if n is not old])
            self.undo_fn = lambda: zkf.heal(old, self.lay)

    def undo(self):
        if self.undo_fn:
            fn, self.undo_fn = self.undo_fn, None
            fn()


def run_trial(c, lw, args, cfg, trial, fault):
    old = fault.pick_old()
    row = {"trial": trial, "old": old.name}
    other_offsets = {n.name: cb.log_size(n) for n in c.nodes}
    writer = KeptWriter(old, trial)
    writer.start()
    try:
        cb.wait_for(lambda: len(writer.acks) >= 200, timeout=60, interval=0.1, description="kept writer committing")
        time.sleep(1.0)
        fault.apply(old)
        t_freeze = time.monotonic()
        n_before = sum(1 for a in writer.acks if a[1] < t_freeze)
        elect_limit = cfg["ttl"] * 1.5 + 60
        name = cb.wait_for(lambda: lw.current() if lw.current() not in (None, old.name) else None,
                           timeout=elect_limit, interval=0.05, description="a new leader")
        t_elect = lw.first_time(lambda v: v == name, after=t_freeze)
        t_ctime = znode_ctime_monotonic(c)
        new = c.node(name)
        cb.wait_for(lambda: new.is_primary() and new.in_recovery() is False and new.accepts_writes(),
                    timeout=60, interval=0.1, description="%s promoted" % name)
        t_promoted = time.monotonic()
        time.sleep(1.0)
    finally:
        fault.undo()
    t_thaw = time.monotonic()
    third = [n for n in c.nodes if n not in (old, new)]
    other_offset = other_offsets[third[0].name] if third else 0
    rejoin = cb.wait_rejoin_all(c, [old] + third, new, timeout=args.rejoin_timeout)
    t_wal, t_stream = rejoin[old.name]
    if third:
        # the other standby streamed from the frozen primary until it re-pointed:
        # it may have WAL (of transactions the lease refused) past the new
        # leader's switch point and then needs a rewind before it can follow
        tw, tr = rejoin[third[0].name]
        row["other"] = third[0].name
        row["other_wal"] = tw - t_promoted if tw else None
        row["other_replica"] = tr - t_promoted if tr else None
        text = cb.log_since(third[0], other_offset)
        row["other_diverged"] = text.count("forked off current database system timeline")
        row["other_kind"] = cb.rejoin_kind(text)[0]
    time.sleep(0.5)
    writer.stop()

    acks = writer.acks
    acked = {a[2] for a in acks}
    present = set()
    try:
        rows = new.sql("select seq from hung_t where trial = %s", (trial,), timeout=60)
        present = {r[0] for r in rows}
        row["present_rows"] = len(present)
    except Exception as exc:  # noqa: BLE001
        row["lost_error"] = str(exc)[:200]
    lost = sorted(acked - present) if "present_rows" in row else None

    last = acks[-1] if acks else None
    row.update({
        "new": name,
        "elected": t_elect - t_freeze,
        "elected_ctime": (t_ctime - t_freeze) if t_ctime else None,
        "promoted": t_promoted - t_freeze,
        "acks_before": n_before,
        "acks_after_freeze": sum(1 for a in acks if a[1] >= t_freeze),
        "acks_after_election": sum(1 for a in acks if a[1] >= min(t_elect, t_ctime or t_elect)),
        "acks_after_thaw": sum(1 for a in acks if a[1] >= t_thaw),
        "last_ack": (last[1] - t_freeze) if last else None,
        "rejoin": (t_stream - t_thaw) if t_stream else None,
        "rejoin_wal": (t_wal - t_thaw) if t_wal else None,
        "lost": len(lost) if lost is not None else None,
        "errors": len(writer.errors),
        "closed": (writer.closed_at - t_freeze) if writer.closed_at else None,
        "first_error": writer.errors[0][2] if writer.errors else "-",
    })
    if last:
        # the worker cannot renew while stopped: the last ack read the final deadline
        lo, hi = last[0] + last[3] / 1000.0, last[1] + last[3] / 1000.0
        row["deadline"] = (lo + hi) / 2 - t_freeze
        row["deadline_pm"] = (hi - lo) / 2
        row["last_vs_deadline"] = last[1] - (lo + hi) / 2
        row["acks_after_deadline"] = sum(1 for a in acks if a[1] > hi)
        row["lease_at_freeze"] = next((a[3] for a in reversed(acks) if a[1] < t_freeze), None)
    if lost:
        ack_time = {a[2]: a[1] for a in acks}
        row["lost_window"] = "%+.3fs..%+.3fs" % (ack_time[lost[0]] - t_freeze, ack_time[lost[-1]] - t_freeze)
    return row


def start_zk_follower_cluster(cfg, zk, keep):
    """3 ZooKeeper servers; pg-1 talks to one follower only, the others to
    the leader and the third server (as tests/cluster/test_zk_follower_partition.py)."""
    zk = dict(zk, zk_servers=3)
    c = harness.Cluster(haproxy=False, keep_dir=keep, dynamic_config=cfg, **zk)
    try:
        c.setup()
        c.start_zookeeper()
        lay = zkf.Layout(c)
        c.node("pg-1").extra_env["PGHA_ZOOKEEPER_HOSTS"] = zkf.zk_hosts([lay.follower])
        for n in ("pg-2", "pg-3"):
            c.node(n).extra_env["PGHA_ZOOKEEPER_HOSTS"] = zkf.zk_hosts(lay.majority_zk)
        c.observe_zookeepers(lay.majority_zk)
        c.start_nodes(["pg-1"])
        c.wait_for_primary(timeout=240, nodes=["pg-1"])
        c.start_nodes(["pg-2", "pg-3"])
        c.wait_healthy(timeout=240)
    except BaseException:
        c.keep_dir = True
        c.teardown()
        raise
    c.bench_layout = lay
    return c


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--shape", choices=("freeze", "partition", "zk-follower"), default="freeze")
    ap.add_argument("--rejoin-timeout", type=float, default=300)
    cb.add_timing_args(ap)
    args = ap.parse_args()
    cb.require_root()
    cfg, zk = cb.timing_from_args(args)

    cb.log("hung primary bench: %d trials, dynamic config %s, ZooKeeper %s" % (args.trials, cfg, zk))
    cb.log(cb.environment_note())
    lay = None
    if args.shape == "zk-follower":
        c = start_zk_follower_cluster(cfg, zk, args.keep)
        lay = c.bench_layout
    else:
        c = cb.start_cluster(cfg, zk, haproxy=False, keep=args.keep)
    fault = Fault(args.shape, c, lay)
    rows = []
    try:
        c.nodes[0].sql(TABLE_SQL)
        with c.leader_watch(interval=0.05) as lw:
            for trial in range(1, args.trials + 1):
                try:
                    row = run_trial(c, lw, args, cfg, trial, fault)
                except Exception as exc:  # noqa: BLE001
                    cb.log("trial %d failed: %s: %s" % (trial, type(exc).__name__, str(exc)[:3000]))
                    c.keep_dir = True
                    rows.append({"trial": trial, "error": str(exc).splitlines()[0][:200]})
                    continue
                rows.append(row)
                cb.log("trial %d: froze %s; lease left at the freeze %s ms, deadline %s (+-%s) after the freeze; "
                       "new leader %s polled %s / ctime %s, promoted %s; kept writer: %d acks before, %d after "
                       "the freeze, %d after the deadline, %d after the election, %d after SIGCONT; last ack %s "
                       "(%s vs deadline); %d errors (first: %s), connection closed %s; lost acked commits %s %s; "
                       "streaming %s (/replica 200 %s) after SIGCONT; other standby %s streaming from the new leader %s "
                       "(/replica 200 %s) after the promotion, 'forked off ... before current recovery point' x%s, %s" % (
                           trial, row["old"], row.get("lease_at_freeze"), cb.fmt(row.get("deadline"), nd=3),
                           cb.fmt(row.get("deadline_pm"), nd=3), row["new"], cb.fmt(row["elected"], nd=3),
                           cb.fmt(row["elected_ctime"], nd=3), cb.fmt(row["promoted"]), row["acks_before"],
                           row["acks_after_freeze"], row.get("acks_after_deadline", -1), row["acks_after_election"],
                           row["acks_after_thaw"], cb.fmt(row["last_ack"], nd=3),
                           cb.fmt(row.get("last_vs_deadline"), nd=3), row["errors"], row["first_error"],
                           cb.fmt(row["closed"]), row["lost"], row.get("lost_window", ""), cb.fmt(row["rejoin_wal"]),
                           cb.fmt(row["rejoin"]), row.get("other"), cb.fmt(row.get("other_wal")),
                           cb.fmt(row.get("other_replica")), row.get("other_diverged"), row.get("other_kind")))
            leaders = lw.values()
        print()
        print("== shape %s: " % args.shape + "hung primary (one kept writer): ttl %(ttl)s, loop_wait "
              "%(loop_wait)s, retry_timeout %(retry_timeout)s" % cfg + ", ZooKeeper tickTime %d ms" % zk["tick_time"])
        cb.print_table(
            ["trial", "frozen", "deadline", "last ack", "elected", "acks after freeze", "after deadline",
             "after election", "lost acked", "rejoin", "other standby"],
            [[r["trial"], r.get("old", "-"), cb.fmt(r.get("deadline"), nd=3), cb.fmt(r.get("last_ack"), nd=3),
              cb.fmt(r.get("elected_ctime") or r.get("elected"), nd=3), r.get("acks_after_freeze", "-"),
              r.get("acks_after_deadline", "-"), r.get("acks_after_election", r.get("error", "-")),
              r.get("lost", "-"), cb.fmt(r.get("rejoin")), cb.fmt(r.get("other_replica"))] for r in rows])
        print("(times relative to the fault; 'elected' = leader znode ctime)")
        print("commits acknowledged after the new leader's election: %s" % sum(
            r.get("acks_after_election", 0) for r in rows))
        print("acknowledged commits lost: %s" % sum((r.get("lost") or 0) for r in rows))
        print(cb.stats_line("fault -> old primary's last ack", [r.get("last_ack") for r in rows], nd=3))
        print(cb.stats_line("last ack - lease deadline", [r.get("last_vs_deadline") for r in rows], nd=3))
        print(cb.stats_line("new leader after the freeze", [r.get("elected_ctime") for r in rows], nd=3))
        print(cb.stats_line("rejoin after SIGCONT", [r.get("rejoin") for r in rows]))
        print(cb.stats_line("other standby following the new", [r.get("other_replica") for r in rows]))
        print("(rejoin = streaming from the new leader and /replica 200; other standby: after the promotion)")
        print("leader sequence: %s" % " -> ".join(leaders))
        print(cb.environment_note())
    finally:
        cb.teardown(c)
    return 0


if __name__ == "__main__":
    sys.exit(main())
