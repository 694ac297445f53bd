#!/usr/bin/python3
"""Write outage of a planned switchover, the command's wall time, and how the
old primary comes back.

    sudo PGHA_NET_ID=3 /usr/bin/python3 bench/switchover.py                  # 5 trials, SQL and REST alternating
    sudo /usr/bin/python3 bench/switchover.py --trials 6 --method sql
    sudo /usr/bin/python3 bench/switchover.py --method rest --ttl 30 --loop-wait 10 --retry-timeout 10

One cluster (tests/cluster/harness.py) with the default dynamic config (ttl
30, loop_wait 10, retry_timeout 10: a switchover that waited for a loop tick
would show up as a ~10 s outage) is reused across trials. Per trial:

  1. wait for a healthy cluster, HAProxy routing writes to the primary,
     every member znode in state "running", and (unless
     --no-wait-leader-view) the leader's own view (its /cluster) saying so
     too: the leader checks the candidate against that view, which can lag
     the znodes by up to loop_wait;
  2. probes every 50 ms: one per node directly (kept connection, re-opened
     with connect_timeout 1 when it breaks; INSERT ... RETURNING) and one
     through HAProxy's write port 5433;
  3. the switchover: `SELECT ha_switchover('<candidate>')` on the primary
     (--method sql) or POST /switchover {"leader", "candidate"} on its REST
     API (--method rest); alternate: trials alternate the two. Candidates
     alternate between the two standbys;
  4. outage (direct) = last acknowledged write on the old primary before its
     first failed one -> first acknowledged write on another node; also
     "fail->ok" = first failed write (sent) -> first acknowledged write on the
     new primary. The same through HAProxy (which needs its checks to mark
     the new primary UP: rise 3, fastinter 1 s, after a downinter 5 s check);
  5. the old primary: time until it streams from the new leader (and until
     its /replica answers 200 too), and what its
     log says about pg_rewind ("diverged" = rewind had work to do, "no rewind
     needed"/"no rewind required" = it had none).

An acknowledged write on the old primary after the first one on the new
primary would be two writers: it is reported as OVERLAP.
Prints one row per trial and median / min / max. No pass/fail.
"""
import argparse
import sys
import time

import _cluster_bench as cb


def trigger(old, cand, method):
    """(result text, ok) of the switchover command on the old primary."""
    if method == "sql":
        try:
            conn = old.connect(statement_timeout_ms=120000)
        except Exception as exc:  # noqa: BLE001
            return "connect failed: %s" % exc, False
        try:
            res = cb.harness.query(conn, "select ha_switchover(%s)", (cand.name,))
            return "ha_switchover -> %s" % res[0][0], res[0][0] == cand.name
        except Exception as exc:  # noqa: BLE001
            return "ha_switchover failed: %s" % str(exc).strip().replace("\n", " ")[:300], False
        finally:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass
    status, body = old.http("POST", "/switchover", body={"leader": old.name, "candidate": cand.name}, timeout=120)
    return "POST /switchover -> %s %s" % (status, body.strip()[:200]), status == 200


def analyse(probe_old, probes_new, t_cmd):
    """(outage, fail->ok, overlap) for one path; probes_new: probes whose success counts as "new"."""
    first_fail = probe_old.first_failure(t_cmd)
    if first_fail is None:
        return None, None, None
    before = [a for a in probe_old.successes(after=t_cmd - 5) if a.done <= first_fail.sent]
    last_ok = before[-1] if before else None
    news = [a for a in (p() for p in probes_new) if a is not None]
    first_new = min(news, key=lambda a: a.done) if news else None
    if first_new is None or last_ok is None:
        return None, None, None
    later_old = [a for a in probe_old.successes(after=t_cmd) if a.done > first_new.sent and a.addr == last_ok.addr]
    return first_new.done - last_ok.done, first_new.done - first_fail.sent, len(later_old)


def run_trial(c, args, trial):
    old = cb.wait_ready(c, members=True)
    others = sorted((n for n in c.nodes if n is not old), key=lambda n: n.name)
    cand = others[(trial - 1) % len(others)]
    method = args.method if args.method != "alternate" else ("sql" if trial % 2 else "rest")
    row = {"trial": trial, "old": old.name, "cand": cand.name, "method": method}
    # The leader validates the candidate against its own view of the members,
    # which lagged the member znodes by up to loop_wait (a 412 "not running
    # (state starting)" for a candidate whose znode said running, bench
    # 2026-11-25): wait for the leader's /cluster to say running, and report
    # how long that took after the znodes did.
    t_view = time.monotonic()

    def leader_sees_running():
        _, js = old.http_json("/cluster")
        ms = (js or {}).get("members") or []
        # /cluster shows a streaming replica as "streaming" (Patroni 3+), the leader as "running".
        return all(m.get("state") in ("running", "streaming") for m in ms) and len(ms) == len(c.nodes)
    if args.wait_leader_view:
        try:
            cb.wait_for(leader_sees_running, timeout=60, interval=0.1, description="leader's view: all running")
        except cb.harness.WaitTimeout:
            pass
    row["view_lag"] = time.monotonic() - t_view
    probes = cb.start_probes(c)
    try:
        cb.wait_probes_writing(probes, old)
        time.sleep(0.5)
        offset = cb.log_size(old)
        cand_before = "candidate before: member znode state %s, /replica %s" % (
            (c.members().get(cand.name) or {}).get("state"), cand.http("GET", "/replica")[0])
        t_cmd = time.monotonic()
        row["result"], row["cmd_ok"] = trigger(old, cand, method)
        row["wall"] = time.monotonic() - t_cmd

        def done():
            return (probes[cand.name].first_success(t_cmd) is not None and
                    ("haproxy" not in probes or probes["haproxy"].first_success(t_cmd, not_addr=old.ip) is not None))
        limit = 90 if row["cmd_ok"] else 5     # a refused command: a few seconds to be sure nothing moved
        try:
            cb.wait_for(done, timeout=limit, interval=0.05, description="writes on the new primary")
        except cb.harness.WaitTimeout:
            cb.log("trial %d: no write on %s within %d s after: %s; %s" % (trial, cand.name, limit, row["result"],
                                                                         cand_before))
        time.sleep(0.5)
    finally:
        cb.stop_probes(probes)

    new_nodes = [n for n in c.nodes if n is not old]
    row["new"] = next((n.name for n in new_nodes if probes[n.name].first_success(t_cmd)), "-")
    row["direct"], row["direct_fail_ok"], row["direct_overlap"] = analyse(
        probes[old.name], [lambda n=n: probes[n.name].first_success(t_cmd) for n in new_nodes], t_cmd)
    row["proxy"] = row["proxy_fail_ok"] = row["proxy_overlap"] = None
    hp = probes.get("haproxy")  # none beyond 3 members
    if hp:
        row["proxy"], row["proxy_fail_ok"], row["proxy_overlap"] = analyse(
            hp, [lambda: hp.first_success(hp.first_failure(t_cmd).sent if hp.first_failure(t_cmd) else t_cmd,
                                          not_addr=old.ip)], t_cmd)
    first_fail = probes[old.name].first_failure(t_cmd)
    row["first_fail_after_cmd"] = first_fail.sent - t_cmd if first_fail else None
    n_err, kinds = probes[old.name].errors_between(t_cmd, t_cmd + 30)
    row["old_errors"] = "%d errors on %s: %s" % (n_err, old.name, " | ".join(kinds))

    if row["new"] != "-" and not row["cmd_ok"]:
        row["result"] += " [but the switchover to %s happened]" % row["new"]
    # the old primary comes back as a standby of the new leader?
    row["back_wal"] = row["back"] = None
    if row["new"] != "-":
        t_wal, t_rep = cb.wait_rejoin(c, old, c.node(row["new"]), timeout=args.rejoin_timeout)
        row["back_wal"] = t_wal - t_cmd if t_wal else None
        row["back"] = t_rep - t_cmd if t_rep else None
    kind, lines = cb.rejoin_kind(cb.log_since(old, offset))
    row["rejoin_kind"] = kind
    row["rejoin_lines"] = lines[:3]
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--method", choices=("sql", "rest", "alternate"), default="alternate")
    ap.add_argument("--rejoin-timeout", type=float, default=180)
    ap.add_argument("--no-wait-leader-view", dest="wait_leader_view", action="store_false",
                    help="trigger as soon as the member znodes say running (the leader may still refuse)")
    cb.add_timing_args(ap, members=True)
    args = ap.parse_args()
    cb.require_root()
    cfg, zk = cb.timing_from_args(args)

    cb.log("switchover bench: %d trials, method %s, dynamic config %s, ZooKeeper %s"
           % (args.trials, args.method, cfg, zk))
    cb.log(cb.environment_note())
    c = cb.start_cluster(cfg, zk, haproxy=True, keep=args.keep, members=args.members,
                         extra_settings="\n".join(args.node_setting))
    rows = []
    try:
        c.nodes[0].sql(cb.PROBE_TABLE_SQL)
        with c.leader_watch(interval=0.05) as lw:
            for trial in range(1, args.trials + 1):
                try:
                    row = run_trial(c, args, trial)
                except Exception as exc:  # noqa: BLE001
                    cb.log("trial %d failed: %s: %s" % (trial, type(exc).__name__, str(exc)[:3000]))
                    c.keep_dir = True
                    rows.append({"trial": trial, "error": str(exc).splitlines()[0][:200]})
                    continue
                rows.append(row)
                cb.log("trial %d: %s %s -> %s: %s in %.2fs; outage direct %s (fail->ok %s), haproxy %s "
                       "(fail->ok %s); first failure %s after the command; old primary streaming %s (/replica 200 "
                       "%s) after the command (%s)%s" % (
                           trial, row["method"], row["old"], row["cand"], row["result"], row["wall"],
                           cb.fmt(row["direct"], nd=3), cb.fmt(row["direct_fail_ok"], nd=3),
                           cb.fmt(row["proxy"], nd=3), cb.fmt(row["proxy_fail_ok"], nd=3),
                           cb.fmt(row["first_fail_after_cmd"], nd=3), cb.fmt(row["back_wal"]), cb.fmt(row["back"]),
                           row["rejoin_kind"],
                           "; OVERLAP: %s/%s acks on the old primary after the first on the new"
                           % (row["direct_overlap"], row["proxy_overlap"])
                           if (row["direct_overlap"] or row["proxy_overlap"]) else ""))
                cb.log("    %s; the leader's /cluster showed every member running %.2fs after the member znodes did"
                       % (row["old_errors"], row["view_lag"]))
                for ln in row["rejoin_lines"]:
                    cb.log("    %s" % ln[:220])
            leaders = lw.values()
        print()
        print("== switchover: ttl %(ttl)s, loop_wait %(loop_wait)s, retry_timeout %(retry_timeout)s" % cfg)
        cb.print_table(
            ["trial", "method", "old", "candidate", "new", "wall", "outage direct", "fail->ok direct",
             "outage haproxy", "fail->ok haproxy", "old streaming", "old /replica", "rejoin"],
            [[r["trial"], r.get("method", "-"), r.get("old", "-"), r.get("cand", "-"), r.get("new", "-"),
              cb.fmt(r.get("wall")), cb.fmt(r.get("direct"), nd=3), cb.fmt(r.get("direct_fail_ok"), nd=3),
              cb.fmt(r.get("proxy"), nd=3), cb.fmt(r.get("proxy_fail_ok"), nd=3), cb.fmt(r.get("back_wal")), cb.fmt(r.get("back")),
              r.get("rejoin_kind", r.get("error", "-"))] for r in rows])
        print(cb.stats_line("outage direct (last ok -> new ok)", [r.get("direct") for r in rows], nd=3))
        print(cb.stats_line("direct first fail -> new ok", [r.get("direct_fail_ok") for r in rows], nd=3))
        print(cb.stats_line("outage through HAProxy", [r.get("proxy") for r in rows], nd=3))
        print(cb.stats_line("HAProxy first fail -> new ok", [r.get("proxy_fail_ok") for r in rows], nd=3))
        print(cb.stats_line("command wall time", [r.get("wall") for r in rows]))
        for m in ("sql", "rest"):
            sel = [r for r in rows if r.get("method") == m]
            if sel and args.method == "alternate":
                print(cb.stats_line("  %s: outage direct" % m, [r.get("direct") for r in sel], nd=3))
                print(cb.stats_line("  %s: command wall time" % m, [r.get("wall") for r in sel]))
        print(cb.stats_line("old primary streaming (from cmd)", [r.get("back_wal") for r in rows]))
        print(cb.stats_line("  ... and /replica answers 200", [r.get("back") for r in rows]))
        print("old primary back as streaming standby: %d of %d; rewind: %s" % (
            sum(1 for r in rows if r.get("back_wal") is not None), len(rows),
            ", ".join("%s" % r.get("rejoin_kind", "-") for r in rows)))
        for r in rows:
            if not r.get("cmd_ok"):
                print("trial %s: %s" % (r["trial"], r.get("result", r.get("error"))))
        print("commands that failed: %d; overlaps (two writers): %d" % (
            sum(1 for r in rows if not r.get("cmd_ok")),
            sum(1 for r in rows if r.get("direct_overlap") or r.get("proxy_overlap"))))
        print("leader sequence: %s" % " -> ".join(leaders))
        print(cb.environment_note())
    finally:
        cb.teardown(c)
    return 0


if __name__ == "__main__":
    sys.exit(main())
