#!/usr/bin/python3
"""Write outage after the loss of the primary's host, and the time until the
old host streams from the new leader again once it is powered back on.

    sudo PGHA_NET_ID=3 /usr/bin/python3 bench/failover.py                 # ttl 30, loop_wait 10, retry_timeout 10
    sudo PGHA_NET_ID=3 /usr/bin/python3 bench/failover.py --tight         # ttl 4, loop_wait 1, retry_timeout 1
    sudo /usr/bin/python3 bench/failover.py --trials 3 --ttl 10 --loop-wait 2 --retry-timeout 2

One cluster (tests/cluster/harness.py: network namespaces, ZooKeeper, 3 nodes,
HAProxy with docker/haproxy.cfg) is reused across trials. Per trial:

  1. wait for a healthy cluster (one primary, two streaming standbys) and for
     HAProxy's write port to route to the primary only;
  2. start the probes: one per node, directly (a kept connection, re-opened
     with connect_timeout 1 when it breaks; INSERT ... RETURNING every 50 ms),
     and one through HAProxy's write port 5433;
  3. t0 = power cut of the primary's host: SIGSTOP of every process of its
     namespace, then SIGKILL of all (harness kill_host), so that no process
     of the host can react to another one's death (see power_cut());
  4. outage = first acknowledged INSERT on another node - t0, directly and
     through HAProxy (whose check needs `rise 3` passes at fastinter 1 s after
     a downinter 5 s check: expect a few seconds more);
  5. power the old host on again; rejoin = time until its WAL receiver
     streams from the new leader (and the leader lists it as streaming), and
     until its REST /replica also answers 200 (what HAProxy's read checks
     see); its log tells whether pg_rewind had work to do.

Prints one row per trial and median / min / max. No pass/fail.
"""
import argparse
import os
import re
import signal
import sys
import time

import _cluster_bench as cb


def power_cut(node):
    """SIGSTOP every process of the host, then SIGKILL them all (harness
    kill_host). kill_host alone signals the processes one after the other, in
    pid order: the postmaster dies a few microseconds before the pg_ha worker,
    and a worker that sees its postmaster die in that window exits cleanly and
    closes its ZooKeeper session, releasing the leader lock at once (seen once
    in 11 trials: failover 0.02 s after the "kill"). A real power cut leaves
    nobody to close the session; stopped processes cannot react."""
    for _ in range(3):                  # processes forked while we stop the others
        for pid in node.host.pids():
            if pid != os.getpid():
                try:
                    os.kill(pid, signal.SIGSTOP)
                except (ProcessLookupError, PermissionError):
                    pass
    node.kill_host()


def leader_session(c):
    """The ZooKeeper session that holds the leader lock (its ephemeralOwner), or None."""
    try:
        stat = c.zk().exists(c.zk_path("leader"))
    except Exception:  # a figure, not a check: the trial goes on without it
        return None
    return stat.ephemeralOwner if stat else None


EXPIRING = re.compile("^" + cb.ZK_LOG_TIME + r" .*Expiring session 0x([0-9a-f]+)")


def zk_expiry(c, offsets, session):
    """Wall time at which a ZooKeeper server logged that it expires `session`
    ("Expiring session 0x..., timeout of N ms exceeded", written since
    `offsets`), or None. Splits the outage into ZooKeeper's part (the dead
    session's expiry) and pg_ha's (expiry -> a new primary takes writes)."""
    if session is None:
        return None
    for z, offset in zip(c.zookeepers, offsets):
        for line in cb.log_since(z, offset).splitlines():
            m = EXPIRING.match(line)
            if m and int(m.group(2), 16) == session:
                return cb.zk_log_time(m.group(1))
    return None


def run_trial(c, lw, args, cfg, trial):
    old = cb.wait_ready(c)
    others = [n for n in c.nodes if n is not old]
    probes = cb.start_probes(c, direct=args.direct, proxy=args.proxy)
    row = {"trial": trial, "killed": old.name}
    try:
        cb.wait_probes_writing(probes, old)
        time.sleep(0.5)
        offset = cb.log_size(old)
        owner = leader_session(c)
        zk_offsets = [cb.log_size(z) for z in c.zookeepers]
        wall0 = time.time()
        t0 = time.monotonic()
        if args.plain_kill:
            old.kill_host()
        else:
            power_cut(old)
        row["kill_call"] = time.monotonic() - t0

        def done():
            ok = True
            if args.direct:
                ok = ok and any(probes[n.name].first_success(t0) for n in others)
            if args.proxy:
                ok = ok and probes["haproxy"].first_success(t0, not_addr=old.ip) is not None
            return ok

        limit = cfg["ttl"] * 1.5 + 90
        try:
            cb.wait_for(done, timeout=limit, interval=0.05, description="writes on a new primary")
        except cb.harness.WaitTimeout:
            cb.log("trial %d: no write on a new primary within %.0fs" % (trial, limit))
            row["timeout"] = True
        time.sleep(0.3)
    finally:
        cb.stop_probes(probes)

    expired = zk_expiry(c, zk_offsets, owner)
    row["zk_expired"] = expired - wall0 if expired is not None else None
    t_elect = lw.first_time(lambda v: v not in (None, old.name), after=t0)
    t_gone = lw.first_time(lambda v: v != old.name, after=t0)
    row["leader_gone"] = t_gone - t0 if t_gone else None
    row["elected"] = t_elect - t0 if t_elect else None
    new_name = lw.current() if lw.current() not in (None, old.name) else None
    row["new"] = new_name or "-"
    if args.direct:
        firsts = [probes[n.name].first_success(t0) for n in others]
        firsts = [(a, n) for a, n in zip(firsts, others) if a]
        if firsts:
            a, n = min(firsts, key=lambda x: x[0].done)
            row["direct"] = a.done - t0
            row["direct_node"] = n.name
        row["old_last_ok"] = max((a.done for a in probes[old.name].successes(before=t0 + 60)), default=t0) - t0
    if args.proxy:
        a = probes["haproxy"].first_success(t0, not_addr=old.ip)
        row["proxy"] = a.done - t0 if a else None
        n_err, kinds = probes["haproxy"].errors_between(t0, t0 + (row.get("proxy") or 0))
        row["proxy_errors"] = "%d errors: %s" % (n_err, " | ".join(kinds))

    # power the old host back on; wait until it streams from the new leader
    new = c.node(new_name) if new_name else None
    t_start = time.monotonic()
    old.start_host()
    if new is not None:
        t_wal, t_rep = cb.wait_rejoin(c, old, new, timeout=args.rejoin_timeout)
        row["rejoin_wal"] = t_wal - t_start if t_wal else None
        row["rejoin"] = t_rep - t_start if t_rep else None
    kind, lines = cb.rejoin_kind(cb.log_since(old, offset))
    row["rejoin_kind"] = kind
    row["rejoin_lines"] = lines[:3]
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--through-haproxy", dest="only_proxy", action="store_true",
                    help="only the probe through HAProxy's write port")
    ap.add_argument("--direct", dest="only_direct", action="store_true", help="only the direct probes")
    ap.add_argument("--rejoin-timeout", type=float, default=300)
    ap.add_argument("--haproxy-config", default=None,
                    help="HAProxy configuration [docker/haproxy.cfg]; docker/haproxy-fast.cfg: the fast write listener")
    ap.add_argument("--plain-kill", action="store_true",
                    help="harness kill_host() only (SIGKILL one process after the other; see power_cut())")
    cb.add_timing_args(ap, members=True)
    args = ap.parse_args()
    args.direct = not args.only_proxy or args.only_direct
    args.proxy = (not args.only_direct or args.only_proxy) and args.members == 3  # HAProxy: 3 members only
    cb.require_root()
    cfg, zk = cb.timing_from_args(args)

    cb.log("failover bench: %d trials, dynamic config %s, ZooKeeper %s, HAProxy %s"
           % (args.trials, cfg, zk, args.haproxy_config or "docker/haproxy.cfg"))
    cb.log(cb.environment_note())
    c = cb.start_cluster(cfg, zk, haproxy=True, keep=args.keep, members=args.members,
                         extra_settings="\n".join(args.node_setting),
                         haproxy_config=args.haproxy_config)
    try:
        c.nodes[0].sql(cb.PROBE_TABLE_SQL)

        def report(row):
            lines = ["trial %d: killed %s, ZooKeeper expired its session %s, leader znode gone %s, new leader %s "
                     "at %s, first write direct %s (on %s), via haproxy %s; old host streaming %s (/replica 200 %s) "
                     "after restart (%s)" % (
                         row["trial"], row["killed"], cb.fmt(row.get("zk_expired")), cb.fmt(row.get("leader_gone")),
                         row["new"],
                         cb.fmt(row.get("elected")), cb.fmt(row.get("direct")), row.get("direct_node", "-"),
                         cb.fmt(row.get("proxy")), cb.fmt(row.get("rejoin_wal")), cb.fmt(row.get("rejoin")),
                         row["rejoin_kind"])]
            lines += ["    %s" % ln[:220] for ln in row["rejoin_lines"]]
            if row.get("proxy_errors"):
                lines.append("    haproxy probe during the outage: %s" % row["proxy_errors"])
            return lines
        rows, leaders = cb.run_trials(c, args.trials, lambda trial, lw: run_trial(c, lw, args, cfg, trial), report)
        print()
        print("== failover after host loss: ttl %(ttl)s, loop_wait %(loop_wait)s, retry_timeout %(retry_timeout)s"
              % cfg + ", ZooKeeper tickTime %d ms" % zk["tick_time"])
        cb.print_table(
            ["trial", "killed", "zk expired", "znode gone", "new leader", "elected", "outage direct", "outage haproxy",
             "rejoin WAL", "rejoin /replica", "rejoin kind"],
            [[r["trial"], r.get("killed", "-"), cb.fmt(r.get("zk_expired")), cb.fmt(r.get("leader_gone")), r.get("new", "-"),
              cb.fmt(r.get("elected")), cb.fmt(r.get("direct")), cb.fmt(r.get("proxy")), cb.fmt(r.get("rejoin_wal")),
              cb.fmt(r.get("rejoin")), r.get("rejoin_kind", r.get("error", "-"))] for r in rows])
        print(cb.stats_line("ZooKeeper expired the dead session after kill", [r.get("zk_expired") for r in rows]))
        print(cb.stats_line("leader znode gone after kill", [r.get("leader_gone") for r in rows]))
        if args.direct:
            print(cb.stats_line("  pg_ha's part: session expired -> first write direct",
                                [r["direct"] - r["zk_expired"] if r.get("direct") is not None
                                 and r.get("zk_expired") is not None else None for r in rows]))
        print(cb.stats_line("new leader znode after kill", [r.get("elected") for r in rows]))
        if args.direct:
            print(cb.stats_line("write outage, direct", [r.get("direct") for r in rows]))
        if args.proxy:
            print(cb.stats_line("write outage, through HAProxy", [r.get("proxy") for r in rows]))
        print(cb.stats_line("old host streaming after restart", [r.get("rejoin_wal") for r in rows]))
        print(cb.stats_line("  ... and /replica answers 200", [r.get("rejoin") for r in rows]))
        expected = args.trials + 1
        print("leader sequence: %s (%d values for %d trials%s)" % (
            " -> ".join(leaders), len(leaders), args.trials,
            "" if len(leaders) <= expected else "; UNEXPECTED extra leader changes"))
        print(cb.environment_note())
    finally:
        cb.teardown(c)
    return 0


if __name__ == "__main__":
    sys.exit(main())
