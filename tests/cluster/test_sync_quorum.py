"""Quorum commit (issue 11: synchronous_mode quorum; README "Synchronous replication").

One module cluster: 4 nodes, dynamic config ttl 20 / loop_wait 2 /
retry_timeout 2, synchronous_mode quorum and synchronous_node_count 2 before
the first node starts: every commit waits for 2 of the 3 standbys, and a
standby taking over needs the vote of 1 other voter not ahead of it.

1. steady state: synchronous_standby_names is ANY 2 of the three standbys, the
   sync key names the three with quorum 1 (Patroni 4's format), the walsenders
   are `quorum`; /quorum answers 200 on the standbys (and /sync 503, Patroni
   4's split), /read-only-quorum on the primary; pg_hactl list and
   ha_status() show Quorum Standby (patronictl 3.0.2 "Sync Standby");
2. zero loss: a writer commits ids on the primary and records each
   acknowledged one; the primary's host is killed (2 rounds); the new leader
   is one of the voters and every acknowledged id is on it;
3. the primary and one voter die together: the two voters left elect one of
   them (it needs the other's vote) and every acknowledged id is on it.
"""
import os
import subprocess
import time

import pytest

import harness
from conftest import module_cluster, start_first_then_others
from harness import wait_for
from test_sync import (FAILOVER_TIMEOUT, LOOP_WAIT, PATRONICTL, REJOIN_TIMEOUT, RETRY_TIMEOUT, TTL, AckWriter,
                       check, patronictl_conf, sync_states)

pytestmark = pytest.mark.needs_pg_ha

NODE_COUNT = 2
KILLS = 2


@pytest.fixture(scope="module")
def cluster(request, require_pg_ha):
    c = harness.Cluster(nodes=4, dynamic_config={"ttl": TTL, "loop_wait": LOOP_WAIT, "retry_timeout": RETRY_TIMEOUT,
                                                 "synchronous_mode": "quorum",
                                                 "synchronous_node_count": NODE_COUNT})

    def start(c):
        start_first_then_others(c)
        c.primary().sql("CREATE TABLE sync_t (id bigint PRIMARY KEY)")
    yield from module_cluster(request, c, start)


def quorum_key(c):
    k = c.zk_json("sync")
    if not isinstance(k, dict):
        return None, [], None
    return k.get("leader"), sorted(n for n in (k.get("sync_standby") or "").split(",") if n), k.get("quorum")


def wanted_ssn(standbys):
    return "ANY %d (%s)" % (NODE_COUNT, ",".join('"%s"' % n for n in sorted(standbys)))


def wait_quorum(c, leader, timeout):
    """Every other node votes: ANY 2 of them, the key names them with quorum len - 2."""
    standbys = sorted(n.name for n in c.nodes if n is not leader)

    def ok():
        return (quorum_key(c) == (leader.name, standbys, len(standbys) - NODE_COUNT)
                and leader.sql_value("SHOW synchronous_standby_names") == wanted_ssn(standbys)
                and all(sync_states(leader).get(n) == "quorum" for n in standbys))
    def state():
        streaming = sync_states(leader)
        return "sync key %s, ssn %r, pg_stat_replication %s\n%s" % (
            quorum_key(c), leader.sql_value("SHOW synchronous_standby_names"), streaming,
            c.diagnostics(60, first=[n for n in standbys if streaming.get(n) != "quorum"]))
    wait_for(ok, timeout=timeout, interval=0.3, description="quorum commit over %s on %s" % (standbys, leader.name),
             state=state)


# --------------------------------------------------------------------------

def test_quorum_steady_state_everywhere(cluster):
    c = cluster
    p1 = c.node("pg-1")
    standbys = [n for n in c.nodes if n is not p1]
    t0 = time.monotonic()
    wait_quorum(c, p1, timeout=6 * LOOP_WAIT + 20)
    print("quorum commit over 3 standbys after %.1fs; key %s" % (time.monotonic() - t0, quorum_key(c)))
    for n in standbys:
        check(n.http("GET", "/quorum")[0] == 200, "/quorum on %s is not 200" % n.name, c)
        check(n.http("GET", "/sync")[0] == 503, "/sync on %s is not 503 (quorum mode)" % n.name, c)
        check(n.http("GET", "/async")[0] == 503, "/async on %s is not 503" % n.name, c)
    check(p1.http("GET", "/read-only-quorum")[0] == 200, "/read-only-quorum on the primary is not 200", c)
    check(p1.http("GET", "/quorum")[0] == 503, "/quorum on the primary is not 503", c)
    roles = dict(p1.sql("SELECT name, role FROM ha_status()"))
    check(all(roles.get(n.name) == "quorum_standby" for n in standbys), "ha_status() roles: %s" % roles, c)
    conf = c.base_dir / "quorum-hactl.conf"
    conf.write_text("pg_ha.scope = '%s'\npg_ha.namespace = '%s'\npg_ha.zookeeper_hosts = '%s'\n" % (
        c.scope, c.namespace, ",".join(z.address for z in c.zookeepers)))
    out = subprocess.run([str(harness.PG_HACTL), "list", "--config", str(conf)], stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=60)
    rows = [ln for ln in out.stdout.splitlines() if ln.split()[:1] in (["pg-2"], ["pg-3"], ["pg-4"])]
    check(out.returncode == 0 and len(rows) == 3 and all("Quorum Standby" in r for r in rows),
          "pg_hactl list:\n%s\n%s" % (out.stdout, out.stderr), c)
    if os.path.exists(PATRONICTL):
        out = subprocess.run([PATRONICTL, "-c", patronictl_conf(c), "list"], capture_output=True, text=True,
                             timeout=60)
        # Patroni 4 knows quorum commit ("Quorum Standby"); Debian 12's 3.0.2
        # predates it and shows the voters as "Sync Standby".
        ver = subprocess.run([PATRONICTL, "version"], capture_output=True, text=True, timeout=60).stdout
        want = "Quorum Standby" if " 4." in ver or " 5." in ver else "Sync Standby"
        check(out.stdout.count(want) == 3, "patronictl (%s) list:\n%s\n%s" % (ver.strip(), out.stdout, out.stderr), c)


def test_zero_acknowledged_loss_over_host_kills_in_quorum_mode(cluster):
    c = cluster
    next_id = 1
    for round_no in range(KILLS):
        old = c.wait_for_primary(timeout=60)
        wait_quorum(c, old, timeout=REJOIN_TIMEOUT)
        _, voters, quorum = quorum_key(c)
        w = AckWriter(old, next_id)
        w.start()
        wait_for(lambda: len(w.acked) >= 200, timeout=60, interval=0.2, description="200 acknowledged commits")
        old.kill_host()
        time.sleep(0.5)
        w.stop()
        next_id = w.next_id + 1000
        t0 = time.monotonic()
        new = wait_for(lambda: next((n for n in c.nodes if n is not old and n.is_primary()), None),
                       timeout=FAILOVER_TIMEOUT, interval=0.2, description="a new primary", state=c.diagnostics)
        took = time.monotonic() - t0
        check(new.name in voters, "round %d: %s was promoted, the voters were %s" % (round_no, new.name, voters), c)
        got = {r[0] for r in new.sql("SELECT id FROM sync_t WHERE id = ANY(%s)", (w.acked,))}
        lost = sorted(set(w.acked) - got)
        print("round %d: %s -> %s after %.1fs (voters %s, quorum %s), %d acknowledged, %d lost" % (
            round_no, old.name, new.name, took, voters, quorum, len(w.acked), len(lost)))
        check(not lost, "round %d: %d acknowledged ids missing on %s: %s" % (round_no, len(lost), new.name, lost[:10]),
              c)
        old.start_host()
        wait_quorum(c, new, timeout=REJOIN_TIMEOUT)


def test_primary_and_one_voter_die_together_the_others_elect_and_lose_nothing(cluster):
    """ANY 2 of three: each commit is on two of them, so with the primary and
    one voter gone, either of the two left may hold it; the one that takes
    over needs the other's vote (quorum 1), and nothing acknowledged is lost."""
    c = cluster
    old = c.wait_for_primary(timeout=60)
    wait_quorum(c, old, timeout=REJOIN_TIMEOUT)
    _, voters, quorum = quorum_key(c)
    victim = c.node(voters[0])
    w = AckWriter(old, 10_000_000)
    w.start()
    wait_for(lambda: len(w.acked) >= 200, timeout=60, interval=0.2, description="200 acknowledged commits")
    victim.kill_host()
    old.kill_host()
    time.sleep(0.5)
    w.stop()
    t0 = time.monotonic()
    new = wait_for(lambda: next((n for n in c.nodes if n not in (old, victim) and n.is_primary()), None),
                   timeout=FAILOVER_TIMEOUT, interval=0.2, description="a new primary", state=c.diagnostics)
    took = time.monotonic() - t0
    check(new.name in voters, "%s was promoted, the voters were %s" % (new.name, voters), c)
    got = {r[0] for r in new.sql("SELECT id FROM sync_t WHERE id = ANY(%s)", (w.acked,))}
    lost = sorted(set(w.acked) - got)
    print("%s and %s died; %s took over after %.1fs (voters %s, quorum %s), %d acknowledged, %d lost" % (
        old.name, victim.name, new.name, took, voters, quorum, len(w.acked), len(lost)))
    check(not lost, "%d acknowledged ids missing on %s: %s" % (len(lost), new.name, lost[:10]), c)
    victim_log = harness.log_size(victim)
    old.start_host()
    victim.start_host()
    wait_quorum(c, new, timeout=REJOIN_TIMEOUT)
    # The victim was a standby killed mid-recovery, now behind on an older
    # timeline: it rejoins as a standby. Crash recovery in single-user mode
    # would end its recovery on the old timeline (and once read a segment of
    # the new timeline whose start the walreceiver never wrote: "could not
    # locate a valid checkpoint record", a boot loop).
    said = harness.log_since(victim, victim_log)
    check("single-user mode" not in said and "did not shut down cleanly" in said,
          "%s (a crashed standby) did not rejoin as a standby:\n%s" % (victim.name, said[-3000:]), c)
