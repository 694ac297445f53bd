"""failsafe_mode without its holes (review F3): a leader nobody can confirm
fences; a standby restarted while the leader runs on promises keeps its
promise and does not take over. And a primary that fenced itself without
ZooKeeper comes back as a read-only standby (issue 9 item 9). Timings: ttl 10 / loop_wait 2 /
retry_timeout 2. Each test asserts with the split-brain checker."""
import time

import pytest

import harness
from harness import wait_for
from splitbrain import SplitBrainChecker
from test_failover import FAST, LOOP_WAIT, TTL, check, start_cluster, wait_new_leader, wait_streaming

FAILSAFE = dict(FAST, failsafe_mode=True)


def test_failsafe_leader_alone_fences(make_cluster):
    """A one-node cluster with failsafe_mode: the failsafe key lists only the
    leader, so nobody can confirm it when ZooKeeper goes away (zero
    confirmations prove nothing). It must stop acknowledging writes within
    ttl, as without failsafe_mode. (Before the fix it ran on forever.)"""
    c = start_cluster(make_cluster, nodes=1, config=FAILSAFE)
    primary = c.node("pg-1")
    time.sleep(2 * LOOP_WAIT)
    with SplitBrainChecker(c) as sb:
        sb.wait_acks(primary, 20)
        t_loss = time.monotonic()
        c.zookeepers[0].stop()
        time.sleep(TTL + 4)
        late = sb.acks_after(primary, t_loss + TTL)
        last = sb.last_ack(primary)
        print("failsafe alone: last ack %.2fs after ZooKeeper stopped" % ((last.acked - t_loss) if last else -1))
        check(not late, "failsafe with nobody to confirm kept %s writing: %d acks more than ttl after ZooKeeper "
              "stopped" % (primary.name, len(late)), c, sb.summary)
        check("could confirm this leader" in primary.log_tail(400), "no log line about the missing confirmations",
              c)
        c.zookeepers[0].start()
        c.wait_healthy(timeout=120)


def test_failsafe_standby_restart_keeps_its_promise(make_cluster):
    """The primary is cut off from ZooKeeper only (its peers still reach it),
    so it runs on the standbys' failsafe promises. pg-2 restarts PostgreSQL
    meanwhile. Its promise survives the restart and the race also asks the
    members in the failsafe key (pg-1's member znode has expired), so pg-2
    does not take the lock while pg-1 may still acknowledge writes: no two
    primaries ever acknowledge commits at the same time."""
    c = start_cluster(make_cluster, config=FAILSAFE)
    primary, restarted = c.node("pg-1"), c.node("pg-2")
    time.sleep(2 * LOOP_WAIT)
    wait_for(lambda: c.zk_get("failsafe") is not None, timeout=30, interval=0.5,
             description="the failsafe key", state=c.diagnostics)
    with SplitBrainChecker(c) as sb, c.monitor(interval=0.5) as mon:
        sb.wait_acks(primary, 20)
        t_cut = time.monotonic()
        primary.host.isolate("nft", peers=c.zk_hosts, allow_observer=True)
        # The session expires at ZooKeeper (ttl) and the leader znode goes away;
        # the standbys follow the failsafe leader.
        wait_for(lambda: c.leader_name(timeout=2) is None, timeout=TTL + 20, interval=0.5,
                 description="the leader znode gone after the primary's session expired", state=c.diagnostics)
        time.sleep(LOOP_WAIT)
        restarted.restart_postgres()
        time.sleep(2 * TTL)
        leader_during = c.leader_name(timeout=2)
        primary.host.heal()
        c.wait_healthy(timeout=120)
        time.sleep(LOOP_WAIT)
    print("failsafe restart: leader znode during the cut %r; nodes answering /primary %s; %d acks on %s after "
          "the cut" % (leader_during, sorted(mon.answered_200()), len(sb.acks_after(primary, t_cut)), primary.name))
    sb.check()


@pytest.mark.parametrize("then", ["heal", "power_cut_then_heal"])
def test_fenced_primary_comes_back_read_only_and_follows(make_cluster, then):
    """Issue 9 item 9: the primary is cut off from everything (the test
    process still reaches it). It fences and shuts down; pg_hactl boot cannot
    reach ZooKeeper, so it starts the data directory as a read-only standby:
    reads are served, writes refused, /replica answers 200, while still cut
    off. Healed, it follows (rewinding if needed) the new leader.
    power_cut_then_heal: the read-only standby's host is killed while cut off
    (its data directory: a standby's, not shut down cleanly, with WAL past
    the new timeline's switch point). pg_hactl boot starts it in standby mode
    on its own timeline, stops it cleanly and rewinds it; crash recovery in
    single-user mode would end its recovery, and following the leader as it
    is fails at every start ("requested timeline 2 does not contain minimum
    recovery point")."""
    c = start_cluster(make_cluster)
    old = c.node("pg-1")
    with SplitBrainChecker(c) as sb, c.leader_watch() as lw:
        sb.wait_acks(old, 20)
        t_cut = time.monotonic()
        old.host.isolate("nft", allow_observer=True)
        new, t_elect = wait_new_leader(c, lw, old, t_cut)

        def read_only_standby():
            try:
                return old.sql_value("select pg_is_in_recovery()", timeout=3) is True
            except Exception:  # noqa: BLE001 - down or starting
                return False

        wait_for(read_only_standby, timeout=90, interval=1,
                 description="%s back as a read-only standby while cut off" % old.name, state=c.diagnostics)
        t_back = time.monotonic()
        rows = old.sql_value("select count(*) from pg_catalog.pg_class", timeout=5)
        check(rows and rows > 0, "a read on the fenced node returned %r" % rows, c)
        try:
            old.sql("create table written_while_fenced(i int)", timeout=5)
            wrote = True
        except Exception as exc:  # noqa: BLE001
            wrote = False
            print("write on the fenced node refused: %s" % str(exc).strip()[:120])
        check(not wrote, "the fenced node accepted a write", c)
        replica = wait_for(lambda: old.http("GET", "/replica")[0] == 200, timeout=15, interval=0.5,
                           description="/replica 200 on the read-only fenced node",
                           state=lambda: old.http("GET", "/replica"))
        check(replica, "/replica on the read-only fenced node did not answer 200", c)
        print("fenced primary: read-only standby %.1fs after the cut (new leader %s at %.1fs)"
              % (t_back - t_cut, new.name, t_elect - t_cut))
        log_at = harness.log_size(old)
        if then == "power_cut_then_heal":
            old.kill_host()
        old.host.heal()
        if then == "power_cut_then_heal":
            old.start_host()
        t_heal = time.monotonic()
        wait_streaming(c, old, new)
        since = harness.log_since(old, log_at)
        check("single-user mode" not in since, "a standby's directory went through single-user crash recovery", c)
        if then == "power_cut_then_heal":
            # Its WAL usually goes past the switch point (the writer's last
            # commits, never acknowledged): then a clean standby stop and
            # pg_rewind; else it simply follows.
            clean_stop = "starting it in standby mode on its own timeline" in since
            check((clean_stop and "running: '" in since and "pg_rewind" in since) or "no rewind needed" in since,
                  "the killed read-only standby rejoined neither through a clean standby stop and pg_rewind nor "
                  "as a follower:\n" + since[-3000:], c)
            print("killed read-only standby: %s" % ("clean standby stop, then pg_rewind" if clean_stop
                                                    else "no rewind needed"))
        print("fenced primary: streaming from %s %.1fs after the heal" % (new.name, time.monotonic() - t_heal))
        check(not sb.acks_after(old, t_elect), "%s acknowledged writes after the election" % old.name, c,
              sb.summary)
    sb.check()


def test_second_node_under_an_existing_name_takes_no_action(make_cluster):
    """Issue 9 item 8: a fourth host started with pg_ha.name = pg-1 while the
    real pg-1 leads. It must not replace members/pg-1 nor delete the leader
    znode that names pg-1 (before, it deleted it as "stale"), and it says why."""
    c = make_cluster(nodes=4, haproxy=False, dynamic_config=FAST,
                     node_env={"pg-4": {"PGHA_NAME": "pg-1"}})
    c.start_zookeeper()
    c.start_nodes(["pg-1"])
    c.wait_for_primary(timeout=180, nodes=["pg-1"])
    c.start_nodes(["pg-2", "pg-3"])
    c.wait_healthy(timeout=180, nodes=["pg-1", "pg-2", "pg-3"])
    zk = c.zk()
    _, leader_stat = zk.get(c.zk_path("leader"))
    _, member_stat = zk.get(c.zk_path("members", "pg-1"))
    dup = c.node("pg-4")
    dup.start()
    wait_for(lambda: "another node runs as member" in dup.log_tail(400), timeout=180, interval=1,
             description="the duplicate's log naming the conflict", state=lambda: dup.log_tail(40))
    time.sleep(3 * LOOP_WAIT)
    _, leader_after = zk.get(c.zk_path("leader"))
    _, member_after = zk.get(c.zk_path("members", "pg-1"))
    check(leader_after.ephemeralOwner == leader_stat.ephemeralOwner and leader_after.czxid == leader_stat.czxid,
          "the leader znode was replaced while a duplicate pg-1 ran", c)
    check(member_after.ephemeralOwner == member_stat.ephemeralOwner,
          "members/pg-1 changed owner to the duplicate", c)
    check(c.node("pg-1").is_primary(), "the real pg-1 is no longer the primary", c)
    print("duplicate pg-1 on %s: kept out, leader and member znodes untouched" % dup.ip)
