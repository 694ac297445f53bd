"""Maintenance mode stops automatic actions, never fencing (issue 9 item 5,
review F5). A paused cluster's primary is cut off from everything (the test
process still reaches it, so the split-brain writer keeps trying on it); once
its leader key expired an operator fails over to pg-2 (POST /failover, as
`patronictl failover` does). Before the fix the paused primary kept
acknowledging commits with no time bound: two writers. Now it stops at its
lease, before the leader key even expires. Timings: ttl 10 / loop_wait 2 /
retry_timeout 2."""
import time

from harness import wait_for
from splitbrain import SplitBrainChecker
from test_failover import TTL, check, start_cluster, wait_promoted


def test_paused_partitioned_primary_stops_before_a_manual_failover(make_cluster):
    c = start_cluster(make_cluster)
    old, target = c.node("pg-1"), c.node("pg-2")
    st, body = target.http("PATCH", "/config", {"pause": True})
    check(st == 200, "PATCH /config pause: %s %s" % (st, body), c)
    wait_for(lambda: all(n.http_json("/patroni")[1].get("pause") is True for n in c.nodes), timeout=30,
             interval=0.5, description="every member paused", state=c.diagnostics)
    with SplitBrainChecker(c) as sb:
        sb.wait_acks(old, 20)
        t_cut = time.monotonic()
        old.host.isolate("nft", allow_observer=True)
        wait_for(lambda: c.leader_name(timeout=2) is None, timeout=TTL + 20, interval=0.5,
                 description="the paused primary's leader key to expire", state=c.diagnostics)
        t_free = time.monotonic()
        last = sb.last_ack(old)
        check(last is not None and last.acked < t_free,
              "the paused primary acknowledged a write %.2fs after the cut, after its lock expired (%.2fs)"
              % ((last.acked - t_cut) if last else -1, t_free - t_cut), c, sb.summary)
        st, body = target.http("POST", "/failover", {"candidate": target.name}, timeout=40)
        check(st == 200, "POST /failover to %s while paused: %s %s" % (target.name, st, body), c)
        wait_promoted(c, target)
        sb.wait_acks(target, 5, after=t_free)
        time.sleep(2)
        late = sb.acks_after(old, t_free)
        check(not late, "%d acks on the paused old primary after its lock expired" % len(late), c, sb.summary)
        print("paused partition: old primary's last ack %.2fs after the cut; lock free at %.2fs; failover to %s"
              % (last.acked - t_cut, t_free - t_cut, target.name))
        old.host.heal()
        st, _ = target.http("PATCH", "/config", {"pause": False})
        check(st == 200, "resume: %s" % st, c)
        c.wait_healthy(timeout=120)
    sb.check()
