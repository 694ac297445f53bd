#!/usr/bin/python3
"""Synchronous replication (issue 11): what it costs and what it buys.

    sudo PGHA_NET_ID=3 /usr/bin/python3 bench/sync_modes.py               # 3 rounds, 3 degrade trials, 10 kills
    sudo PGHA_NET_ID=3 /usr/bin/python3 bench/sync_modes.py --runs 1 --degrade-trials 1 --kills 2
    sudo /usr/bin/python3 bench/sync_modes.py --skip-tps --kills 5 --ttl 10

One throw-away 3-node cluster (tests/cluster/harness.py, no HAProxy), pg-3
tagged `pg_ha.nosync = on` (as in tests/cluster/test_sync.py), dynamic config
ttl 20 / loop_wait 2 / retry_timeout 2 unless overridden. synchronous_mode is
switched with PATCH /config (the harness's REST credentials). Three parts:

  1. pgbench TPC-B-like (same -c/-j/-T/scale for every run) from the root
     namespace straight to the primary, synchronous_mode off, on and quorum
     (synchronous_node_count 1); rounds rotate the order. For this part pg-3's
     nosync tag is switched off (ALTER SYSTEM + reload: tags are reloadable),
     so `on` is `1 ("pg-2")` or `1 ("pg-3")` and quorum is
     `ANY 1 ("pg-2","pg-3")`; it is switched on again afterwards. Before each
     run: wait until the primary's pg_stat_replication shows a `sync` standby
     (on), both standbys `quorum` (quorum) or no such row (off); after it,
     the state is checked again.
  2. degrade (synchronous_mode on, not strict): a writer commits back to back
     on the primary (one kept connection, statement_timeout 120 s so that no
     cancelled sync wait returns early); the sync standby's host is powered
     off (SIGSTOP + SIGKILL of its namespace). degrade = first acknowledged
     commit among those sent after the power-off completed - start of the
     power-off (commits sent while it runs, ~80 ms, may still be confirmed).
     The host is powered on: time until it streams and until it is `sync`
     again (pg_stat_replication and the sync key).
  3. primary host kills in synchronous mode: a writer commits increasing ids
     (autocommit, reconnecting to whichever node accepts writes: libpq
     multi-host, target_session_attrs=read-write) and records every
     acknowledged id and the server that acknowledged it. The primary's host
     is powered off; outage = last ack on the old primary -> first ack on the
     new one (also kill -> first ack); lost = acknowledged ids missing on the
     new primary (must be 0). The old host is powered on and must stream from
     the new leader (and become its sync standby) before the next trial.

The power-off is failover.py's power_cut() (SIGSTOP of every process of the
host, then the harness's kill_host()): kill_host() alone can let the pg_ha
worker see its postmaster die and close its ZooKeeper session first.

Prints every trial and median / min / max / n; no pass/fail.
"""
import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import threading
import time

import _cluster_bench as cb
import failover                 # power_cut()
import lease_cost               # pgbench(), PGBENCH, mean_sd()

harness = cb.harness
psycopg2 = cb.psycopg2

NOSYNC = "pg-3"
TABLE_SQL = "create table if not exists bench_sync(id bigint primary key, at timestamptz default clock_timestamp())"


# --------------------------------------------------------------------------
# small helpers (synchronous replication state)

def sync_key(c):
    """(leader, [standbys]) from the sync znode; (None, []) without one."""
    k = c.zk_json("sync")
    if not isinstance(k, dict):
        return None, []
    return k.get("leader"), [n for n in (k.get("sync_standby") or "").split(",") if n]


def sync_states(node):
    """application_name -> sync_state on node's pg_stat_replication."""
    return dict(node.sql("select application_name, sync_state from pg_stat_replication"))


def sync_standby(c, primary):
    """Name of the standby that is `sync` on primary and named by the sync key, else None."""
    leader, names = sync_key(c)
    states = sync_states(primary)
    if leader != primary.name:
        return None
    ok = [n for n in names if states.get(n) == "sync"]
    return ok[0] if ok else None


def wait_sync(c, primary, timeout, standby=None):
    """Until a standby (or `standby`) is sync on primary and in the key; returns its name."""
    def ok():
        s = sync_standby(c, primary)
        return s if s and (standby is None or s == standby.name) else None
    return cb.wait_for(ok, timeout=timeout, interval=0.1, description="a synchronous standby of %s" % primary.name,
                       state=lambda: "sync key %s, pg_stat_replication %s" % (sync_key(c), sync_states(primary)))


def set_sync_mode(c, value, timeout):
    """PATCH /config synchronous_mode (False, True or "quorum") on the primary,
    then wait until its pg_stat_replication shows a sync standby (on), every
    standby `quorum` (quorum) or neither (off).
    Returns (primary, seconds from the PATCH to that state)."""
    primary = cb.wait_ready(c)
    t = time.monotonic()
    status, body = primary.http("PATCH", "/config", body={"synchronous_mode": value}, timeout=10)
    if status != 200:
        raise RuntimeError("PATCH /config synchronous_mode=%r: %s %s" % (value, status, body))
    if value == "quorum":
        standbys = [n.name for n in c.nodes if n is not primary]
        cb.wait_for(lambda: all(sync_states(primary).get(n) == "quorum" for n in standbys), timeout=timeout,
                    interval=0.1, description="every standby quorum on %s" % primary.name,
                    state=lambda: sync_states(primary))
    elif value:
        wait_sync(c, primary, timeout)
    else:
        cb.wait_for(lambda: not {"sync", "quorum"} & set(sync_states(primary).values()), timeout=timeout,
                    interval=0.1, description="no sync or quorum row on %s" % primary.name,
                    state=lambda: sync_states(primary))
    return primary, time.monotonic() - t


def set_nosync(node, on):
    """The nosync tag by ALTER SYSTEM and a reload (tags are reloadable)."""
    node.sql("alter system set pg_ha.nosync = %s" % ("on" if on else "off"))
    node.sql("select pg_reload_conf()")


class Writer(threading.Thread):
    """Commits increasing ids back to back (autocommit) on whichever of `nodes`
    accepts writes (libpq multi-host, target_session_attrs=read-write) and
    records every acknowledged id: acks = [(id, sent, done, server ip)].
    After an error the id is skipped (its outcome is unknown) and the writer
    reconnects; bounded by max_duration."""

    def __init__(self, nodes, start_id, max_duration=900, statement_timeout_ms=120000):
        super().__init__(daemon=True, name="sync-writer")
        self.nodes, self.next_id = list(nodes), start_id
        self.max_duration, self.statement_timeout_ms = max_duration, statement_timeout_ms
        self.acks, self.errors = [], []
        self.stop_event = threading.Event()

    def _connect(self):
        return harness.pg_connect(",".join(n.ip for n in self.nodes), port=",".join(str(n.port) for n in self.nodes),
                                  connect_timeout=1, statement_timeout_ms=self.statement_timeout_ms,
                                  target_session_attrs="read-write", application_name="bench-sync-writer")

    def run(self):
        end = time.monotonic() + self.max_duration
        conn = None
        while not self.stop_event.is_set() and time.monotonic() < end:
            i = self.next_id
            self.next_id += 1
            sent = time.monotonic()
            try:
                if conn is None:
                    conn = self._connect()
                with conn.cursor() as cur:
                    cur.execute("insert into bench_sync(id) values (%s) returning host(inet_server_addr())", (i,))
                    addr = cur.fetchone()[0]
                self.acks.append((i, sent, time.monotonic(), addr))
            except (psycopg2.Error, OSError) as exc:
                text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                self.errors.append((sent, time.monotonic(), text[:160]))
                with contextlib.suppress(Exception):
                    conn.close()
                conn = None
                self.stop_event.wait(0.05)
        with contextlib.suppress(Exception):
            conn.close()

    def stop(self):
        self.stop_event.set()
        self.join(timeout=150)

    def wait_acks(self, count, timeout=60):
        n0 = len(self.acks)
        cb.wait_for(lambda: len(self.acks) >= n0 + count, timeout=timeout, interval=0.05,
                    description="%d acknowledged commits" % count)


def missing_on(node, ids):
    got = set()
    ids = sorted(ids)
    for k in range(0, len(ids), 20000):
        chunk = ids[k:k + 20000]
        got |= {r[0] for r in node.sql("select id from bench_sync where id = any(%s)", (chunk,), timeout=60)}
    return sorted(set(ids) - got)


# --------------------------------------------------------------------------
# 1. pgbench, synchronous_mode off / on / quorum

def part_tps(c, args):
    primary = cb.wait_ready(c)
    env = dict(os.environ, PGPASSWORD=harness.SUPERUSER_PASSWORD)
    subprocess.run([lease_cost.PGBENCH, "-i", "-q", "-s", str(args.scale), "-h", primary.ip, "-U", "postgres",
                    "postgres"], check=True, capture_output=True, timeout=600, env=env)
    cb.log("pgbench -i -s %d done on %s" % (args.scale, primary.name))
    rows = []
    modes = (False, True, "quorum")
    tps, switch = {m: [] for m in modes}, {m: [] for m in modes}
    name = {False: "off", True: "on", "quorum": "quorum"}
    nosync = c.node(NOSYNC)
    set_nosync(nosync, False)
    try:
        for r in range(args.runs):
            for mode in modes[r % 3:] + modes[:r % 3]:
                primary, took = set_sync_mode(c, mode, args.switch_timeout)
                switch[mode].append(took)
                states_before = sync_states(primary)
                t, lat, failed = lease_cost.pgbench(primary, args, False)
                states_after = sync_states(primary)
                wanted = {False: set(), True: {"sync"}, "quorum": {"quorum"}}[mode]
                held = ({"sync", "quorum"} & set(states_after.values())) == wanted
                tps[mode].append(t)
                rows.append([r + 1, name[mode], primary.name, "%.1f" % t, "%.3f ms" % lat if lat else "-", failed,
                             "%.1fs" % took, ",".join("%s=%s" % kv for kv in sorted(states_before.items())),
                             "yes" if held else "NO", " ".join(open("/proc/loadavg").read().split()[:3])])
                cb.log("round %d, synchronous_mode %s on %s: %.1f tps, latency %s ms, %d failed (state after: %s)"
                       % (r + 1, name[mode], primary.name, t, lat, failed, states_after))
    finally:
        set_sync_mode(c, False, args.switch_timeout)
        set_nosync(nosync, True)
    print()
    print("== pgbench TPC-B-like -c %d -j %d -T %d, scale %d" % (args.clients, args.jobs, args.duration, args.scale))
    cb.print_table(["round", "sync mode", "primary", "tps", "latency", "failed", "switch", "replication before",
                    "mode held", "loadavg"], rows)
    return {"tps": tps, "switch": switch}


# --------------------------------------------------------------------------
# 2. degrade when the sync standby's host dies; back to sync

def degrade_trial(c, args, trial, next_id):
    primary, _ = set_sync_mode(c, True, args.switch_timeout)
    standby = c.node(wait_sync(c, primary, args.rejoin_timeout))
    w = Writer([primary], next_id)
    w.start()
    row = {"trial": trial, "primary": primary.name, "standby": standby.name}
    try:
        w.wait_acks(200)
        t0 = time.monotonic()
        failover.power_cut(standby)
        # Commits sent while power_cut() stops the host's processes (~80 ms)
        # may still be confirmed by its WAL receiver: count from the end of it.
        t_down = time.monotonic()
        row["kill_call"] = t_down - t0
        t_key, first = None, None
        end = t0 + args.degrade_timeout
        while time.monotonic() < end:
            if t_key is None and sync_key(c) == (primary.name, []):
                t_key = time.monotonic()
            first = next((a for a in w.acks if a[1] >= t_down), None)
            if first and (t_key is not None or time.monotonic() > first[2] + 10):
                break
            time.sleep(0.05)
        # one connection: every commit sent before `first` completed before it
        row["degrade"] = first[2] - t0 if first else None
        row["key_empty"] = t_key - t0 if t_key else None
        row["longest_wait"] = max((a[2] - a[1] for a in w.acks if a[2] >= t0), default=None)
        row["acks_before_degrade"] = sum(1 for a in w.acks if t0 <= a[2] and (first is None or a[2] < first[2]))
        row["errors"] = len([e for e in w.errors if e[0] >= t0])
        with contextlib.suppress(harness.WaitTimeout):
            w.wait_acks(20, timeout=30)
    finally:
        w.stop()
    next_id = w.next_id + 1000
    t1 = time.monotonic()
    standby.start_host()
    t_wal, _ = cb.wait_rejoin(c, standby, primary, timeout=args.rejoin_timeout)
    row["stream_again"] = t_wal - t1 if t_wal else None
    try:
        wait_sync(c, primary, args.rejoin_timeout, standby=standby)
        row["sync_again"] = time.monotonic() - t1
    except harness.WaitTimeout as exc:
        cb.log("trial %d: %s not sync again: %s" % (trial, standby.name, str(exc)[:500]))
        row["sync_again"] = None
    return row, next_id


# --------------------------------------------------------------------------
# 3. primary host kills in synchronous mode

def kill_trial(c, lw, args, trial, next_id):
    old = cb.wait_ready(c)
    standby = wait_sync(c, old, args.rejoin_timeout)
    row = {"trial": trial, "killed": old.name, "key_standby": standby}
    w = Writer(c.nodes, next_id)
    w.start()
    offset = cb.log_size(old)
    try:
        w.wait_acks(200)
        t0 = time.monotonic()
        failover.power_cut(old)
        limit = args.ttl_value * 1.5 + 90
        try:
            cb.wait_for(lambda: any(a[3] != old.ip for a in w.acks if a[1] >= t0), timeout=limit, interval=0.05,
                        description="an acknowledged commit on a new primary")
        except harness.WaitTimeout:
            cb.log("trial %d: no commit on a new primary within %.0fs" % (trial, limit))
        with contextlib.suppress(harness.WaitTimeout):
            w.wait_acks(20, timeout=30)
    finally:
        w.stop()
    next_id = w.next_id + 1000
    on_old = [a for a in w.acks if a[3] == old.ip]
    first_new = next((a for a in w.acks if a[3] != old.ip and a[1] >= t0), None)
    last_old = max((a[2] for a in on_old), default=None)
    row["acked"] = len(w.acks)
    row["acked_old"] = len(on_old)
    row["after_kill_on_old"] = sum(1 for a in on_old if a[2] > t0)
    new_name = lw.current() if lw.current() not in (None, old.name) else None
    row["new"] = new_name or "-"
    t_elect = lw.first_time(lambda v: v not in (None, old.name), after=t0)
    row["elected"] = t_elect - t0 if t_elect else None
    if first_new:
        new = next(n for n in c.nodes if n.ip == first_new[3])
        row["new_ack"] = new.name
        row["outage"] = first_new[2] - last_old if last_old is not None else None
        row["from_kill"] = first_new[2] - t0
        row["lost"] = len(missing_on(new, [a[0] for a in w.acks]))
    else:
        new = c.node(new_name) if new_name else None
        row["new_ack"] = "-"
        row["lost"] = len(missing_on(new, [a[0] for a in w.acks])) if new else None
    row["errors"] = len(w.errors)
    t1 = time.monotonic()
    old.start_host()
    if new is not None:
        t_wal, t_rep = cb.wait_rejoin(c, old, new, timeout=args.rejoin_timeout)
        row["stream_again"] = t_wal - t1 if t_wal else None
        try:
            wait_sync(c, new, args.rejoin_timeout)
            row["sync_again"] = time.monotonic() - t1
        except harness.WaitTimeout as exc:
            cb.log("trial %d: no sync standby of %s: %s" % (trial, new.name, str(exc)[:500]))
            row["sync_again"] = None
    row["rejoin_kind"], _ = cb.rejoin_kind(cb.log_since(old, offset))
    return row, next_id


# --------------------------------------------------------------------------

def print_rows(trials, rows):
    """One stats line (median / min / max / n) per (label, trial key)."""
    for label, key in rows:
        print(cb.stats_line("  " + label, [r.get(key) for r in trials]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="pgbench rounds (each: off, on and quorum)")
    ap.add_argument("--duration", type=int, default=15, help="seconds per pgbench run")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--scale", type=int, default=10)
    ap.add_argument("--degrade-trials", type=int, default=3)
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--skip-tps", action="store_true", help="skip part 1 (pgbench off/on/quorum)")
    ap.add_argument("--switch-timeout", type=float, default=60, help="wait for a synchronous_mode change (s)")
    ap.add_argument("--degrade-timeout", type=float, default=120)
    ap.add_argument("--rejoin-timeout", type=float, default=240)
    cb.add_timing_args(ap, default_ttl=20, default_loop_wait=2, default_retry_timeout=2)
    args = ap.parse_args()
    for name in ("runs", "duration", "clients", "jobs", "scale", "degrade_trials", "kills"):
        if getattr(args, name) < (1 if name in ("duration", "clients", "jobs", "scale") else 0):
            ap.error("--%s: %d is out of range" % (name.replace("_", "-"), getattr(args, name)))
    cb.require_root()
    cfg, zk = cb.timing_from_args(args)
    args.ttl_value = cfg["ttl"]

    cb.log("sync modes bench: %d pgbench rounds x %d s (-c %d -j %d, scale %d), %d degrade trials, %d kills, "
           "dynamic config %s, ZooKeeper %s, %s nosync"
           % (args.runs, args.duration, args.clients, args.jobs, args.scale, args.degrade_trials, args.kills, cfg, zk,
              NOSYNC))
    cb.log(cb.environment_note())
    # start_cluster passes its second argument through to harness.Cluster: the nosync tag rides along
    c = cb.start_cluster(cfg, dict(zk, node_settings={NOSYNC: "pg_ha.nosync = on"}), haproxy=False, keep=args.keep)
    tps = None
    degrade, kills = [], []
    try:
        cb.wait_ready(c).sql(TABLE_SQL)
        if not args.skip_tps:
            tps = part_tps(c, args)
        next_id = 1
        for trial in range(1, args.degrade_trials + 1):
            try:
                row, next_id = degrade_trial(c, args, trial, next_id)
            except Exception as exc:  # noqa: BLE001 - report, go on
                cb.log("degrade trial %d failed: %s: %s" % (trial, type(exc).__name__, str(exc)[:3000]))
                c.keep_dir = True
                row = {"trial": trial, "error": str(exc).splitlines()[0][:200]}
                next_id += 100000
            degrade.append(row)
            cb.log("degrade %d: %s" % (trial, row))
        if args.kills:
            set_sync_mode(c, True, args.switch_timeout)
        with c.leader_watch(interval=0.05) as lw:
            for trial in range(1, args.kills + 1):
                try:
                    row, next_id = kill_trial(c, lw, args, trial, next_id)
                except Exception as exc:  # noqa: BLE001
                    cb.log("kill trial %d failed: %s: %s" % (trial, type(exc).__name__, str(exc)[:3000]))
                    c.keep_dir = True
                    row = {"trial": trial, "error": str(exc).splitlines()[0][:200]}
                    next_id += 100000
                kills.append(row)
                cb.log("kill %d: killed %s (key standby %s), new leader %s elected %s, first ack on %s: outage %s "
                       "(kill -> ack %s), %s acked, LOST %s; old host streaming %s, sync %s after restart (%s)" % (
                           trial, row.get("killed", "-"), row.get("key_standby", "-"), row.get("new", "-"),
                           cb.fmt(row.get("elected")), row.get("new_ack", "-"), cb.fmt(row.get("outage")),
                           cb.fmt(row.get("from_kill")), row.get("acked", "-"), row.get("lost", "-"),
                           cb.fmt(row.get("stream_again")), cb.fmt(row.get("sync_again")),
                           row.get("rejoin_kind", row.get("error", "-"))))
            leaders = lw.values()

        if degrade:
            print()
            print("== degrade: sync standby's host powered off, writer on the primary")
            cb.print_table(["trial", "primary", "sync standby", "degrade", "key empty", "longest commit",
                            "streams again", "sync again", "error"],
                           [[r["trial"], r.get("primary", "-"), r.get("standby", "-"), cb.fmt(r.get("degrade")),
                             cb.fmt(r.get("key_empty")), cb.fmt(r.get("longest_wait")), cb.fmt(r.get("stream_again")),
                             cb.fmt(r.get("sync_again")), r.get("error", "")] for r in degrade])
        if kills:
            print()
            print("== primary host kills in synchronous mode")
            cb.print_table(["trial", "killed", "key standby", "new leader", "elected", "outage", "kill->ack", "acked",
                            "lost", "streams again", "sync again", "rejoin kind"],
                           [[r["trial"], r.get("killed", "-"), r.get("key_standby", "-"), r.get("new", "-"),
                             cb.fmt(r.get("elected")), cb.fmt(r.get("outage")), cb.fmt(r.get("from_kill")),
                             r.get("acked", "-"), r.get("lost", "-"), cb.fmt(r.get("stream_again")),
                             cb.fmt(r.get("sync_again")), r.get("rejoin_kind", r.get("error", "-"))] for r in kills])

        print()
        print("== summary: ttl %(ttl)s, loop_wait %(loop_wait)s, retry_timeout %(retry_timeout)s" % cfg
              + ", ZooKeeper tickTime %d ms, %s nosync" % (zk["tick_time"], NOSYNC))
        if tps:
            off = tps["tps"][False]
            print("pgbench TPC-B-like -c %d -j %d -T %d, scale %d:" % (args.clients, args.jobs, args.duration,
                                                                     args.scale))
            print(cb.stats_line("  synchronous_mode off", off, " tps", 1))
            for mode, label in ((True, "on"), ("quorum", "quorum")):
                vals = tps["tps"][mode]
                print(cb.stats_line("  synchronous_mode %s" % label, vals, " tps", 1))
                if vals and off:
                    print("  %s vs off (medians): %+.1f%%   (means: off %s; %s %s)" % (
                        label, 100 * (statistics.median(vals) / statistics.median(off) - 1), lease_cost.mean_sd(off),
                        label, lease_cost.mean_sd(vals)))
            print(cb.stats_line("  PATCH -> sync row (on)", tps["switch"][True]))
            print(cb.stats_line("  PATCH -> quorum rows (quorum)", tps["switch"]["quorum"]))
            print(cb.stats_line("  PATCH -> no sync row (off)", tps["switch"][False]))
        if degrade:
            print("degrade (sync standby's host off):")
            print_rows(degrade, [("kill -> first commit", "degrade"), ("kill -> sync key without standby", "key_empty"),
                                 ("restart -> streaming", "stream_again"), ("restart -> sync again", "sync_again")])
        if kills:
            print("primary host kills:")
            print_rows(kills, [("write outage (last ack -> first)", "outage"),
                               ("kill -> first ack on new primary", "from_kill"), ("kill -> new leader znode", "elected"),
                               ("restart -> old host streaming", "stream_again"),
                               ("restart -> sync standby again", "sync_again")])
            lost = [r.get("lost") for r in kills]
            print("  acknowledged ids lost per trial: %s (total %d of %d acknowledged)" % (
                " ".join("-" if v is None else str(v) for v in lost), sum(v or 0 for v in lost),
                sum(r.get("acked") or 0 for r in kills)))
            print("  new leader = the key's standby: %d of %d" % (
                sum(1 for r in kills if r.get("new") not in (None, "-") and r.get("new") == r.get("key_standby")),
                len(kills)))
            print("  leader sequence: %s" % " -> ".join(leaders))
        errs = [r for r in degrade + kills if "error" in r]
        if errs:
            print("  trials that failed: %d (%s)" % (len(errs), "; ".join(r["error"][:80] for r in errs)))
        print(cb.environment_note())
    finally:
        cb.teardown(c)
    return 0


if __name__ == "__main__":
    sys.exit(main())
