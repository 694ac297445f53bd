"""Synchronous replication (issue 11; DESIGN.md §2.2; README "Synchronous replication").

One module cluster: 3 nodes, pg-3 tagged nosync, dynamic config ttl 20 /
loop_wait 2 / retry_timeout 2 and synchronous_mode on before the first node
starts. The tests run in file order and share the cluster:

1. the leader makes pg-2 synchronous within a loop of it streaming: the sync
   key names it, pg_stat_replication says sync, /sync and /async answer, and
   patronictl list shows "Sync Standby"; pg-3 (nosync) stays async;
2. degrade: pg-2's host dies -> commits on pg-1 wait, then resume within the
   documented delay (loop_wait grace + a loop or two); pg-2 back -> sync again;
3. strict mode: the sync standby dies -> commits wait past the degrade
   bound, /patroni and ha_node() say why; pg_ha.synchronous_strict_fail_fast
   (reload) -> a new commit fails at once with SQLSTATE 55000; standby back ->
   synchronous again and the waiting commit completes;
4. only the sync standby is promoted: pg-2 (sync) is cut off the network and
   pg-1's host killed a moment later, with pg-3 (async) holding WAL pg-2 never
   got; pg-3 stays a replica for TTL + 10 s although the leader lock is free;
   pg-2 healed -> it is promoted with every acknowledged row; pg-1 back ->
   pg-2's synchronous standby;
5. a network cut (not a kill) of the sync standby: its walsender stays
   "streaming" until wal_sender_timeout (10 s for the test), so a commit waits
   that long plus the degrade delay, and no longer; healed -> sync again;
6. zero loss: a writer commits ids on the primary and records each
   acknowledged one; the primary's host is killed (3 rounds); the new leader
   is always the member the sync key named, and every acknowledged id is on it;
7. the lease: the primary cut off from everything but the test, a commit
   waiting for its sync standby when the lease runs out is never
   acknowledged, and the sync standby takes over.
"""
import os
import subprocess
import threading
import time

import psycopg2
import pytest

import harness
from conftest import module_cluster, start_first_then_others
from harness import wait_for

pytestmark = pytest.mark.needs_pg_ha

TTL = 20
LOOP_WAIT = 2
RETRY_TIMEOUT = 2
NOSYNC = "pg-3"
# Grace for an unhealthy sync standby is loop_wait (README); then the key and
# synchronous_standby_names are changed one loop apart; 2 cores. Below TTL:
# the dead standby's member znode expires only after TTL (dropped then anyway).
DEGRADE_BOUND = 3 * LOOP_WAIT + 6
assert DEGRADE_BOUND < TTL
FAILOVER_TIMEOUT = TTL + 5 * LOOP_WAIT + 20
REJOIN_TIMEOUT = 150
PATRONICTL = "/usr/bin/patronictl"
KILLS = 3


@pytest.fixture(scope="module")
def cluster(request, require_pg_ha):
    c = harness.Cluster(node_settings={NOSYNC: "pg_ha.nosync = on"},
                        dynamic_config={"ttl": TTL, "loop_wait": LOOP_WAIT, "retry_timeout": RETRY_TIMEOUT,
                                        "synchronous_mode": True})

    def start(c):
        start_first_then_others(c)
        c.primary().sql("CREATE TABLE sync_t (id bigint PRIMARY KEY)")
    yield from module_cluster(request, c, start)


def check(cond, msg, c, *extra):
    if not cond:
        parts = [msg] + [e() if callable(e) else str(e) for e in extra] + [c.diagnostics(60)]
        raise AssertionError("\n".join(parts))


def sync_key(c):
    k = c.zk_json("sync")
    if not isinstance(k, dict):
        return None, []
    names = [n for n in (k.get("sync_standby") or "").split(",") if n]
    return k.get("leader"), names


def sync_states(node):
    """application_name -> sync_state on `node`'s pg_stat_replication."""
    return dict(node.sql("SELECT application_name, sync_state FROM pg_stat_replication"))


def wait_sync(c, leader, standby, timeout):
    def ok():
        return sync_key(c) == (leader.name, [standby.name]) and sync_states(leader).get(standby.name) == "sync"
    wait_for(ok, timeout=timeout, interval=0.2, description="%s synchronous standby of %s" % (standby.name, leader.name),
             state=lambda: "sync key %s, pg_stat_replication %s\n%s" % (sync_key(c), sync_states(leader),
                                                                        c.diagnostics(40)))


def patronictl_conf(c):
    path = c.base_dir / "sync-patronictl.yml"
    path.write_text("\n".join(["scope: %s" % c.scope, "namespace: %s/" % c.namespace, "zookeeper:",
                               "  hosts: [%s]" % ", ".join("'%s'" % z.address for z in c.zookeepers), ""]))
    return str(path)


# --------------------------------------------------------------------------

def test_sync_standby_within_one_loop(cluster):
    c = cluster
    p1, p2, p3 = c.node("pg-1"), c.node("pg-2"), c.node(NOSYNC)
    # pg-2 streams (wait_healthy): the key and the server follow within a loop or two.
    t0 = time.monotonic()
    wait_sync(c, p1, p2, timeout=3 * LOOP_WAIT + 10)
    print("sync standby after %.1fs" % (time.monotonic() - t0))
    ssn = p1.sql_value("SHOW synchronous_standby_names")
    check(ssn == '1 ("pg-2")', "synchronous_standby_names is %r" % ssn, c)
    check(sync_states(p1).get(NOSYNC) == "async", "nosync %s is %s" % (NOSYNC, sync_states(p1)), c)
    check(p2.http("GET", "/sync")[0] == 200, "/sync on pg-2 is not 200", c)
    check(p2.http("GET", "/async")[0] == 503, "/async on pg-2 is not 503", c)
    check(p3.http("GET", "/async")[0] == 200, "/async on pg-3 is not 200", c)
    check(p3.http("GET", "/sync")[0] == 503, "/sync on pg-3 is not 503", c)
    check(p1.http("GET", "/read-only-sync")[0] == 200, "/read-only-sync on the primary is not 200", c)
    if os.path.exists(PATRONICTL):
        out = subprocess.run([PATRONICTL, "-c", patronictl_conf(c), "list"], capture_output=True, text=True,
                             timeout=60)
        line = [ln for ln in out.stdout.splitlines() if " pg-2 " in ln]
        check(line and "Sync Standby" in line[0], "patronictl list:\n%s\n%s" % (out.stdout, out.stderr), c)
    # pg_hactl list and ha_status() show the role too (one format, shared with /cluster)
    conf = c.base_dir / "sync-hactl.conf"
    conf.write_text("pg_ha.scope = '%s'\npg_ha.namespace = '%s'\npg_ha.zookeeper_hosts = '%s'\n" % (
        c.scope, c.namespace, ",".join(z.address for z in c.zookeepers)))
    out = subprocess.run([str(harness.PG_HACTL), "list", "--config", str(conf)], stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=60)
    line = [ln for ln in out.stdout.splitlines() if ln.split()[:1] == ["pg-2"]]
    check(out.returncode == 0 and line and "Sync Standby" in line[0],
          "pg_hactl list:\n%s\n%s" % (out.stdout, out.stderr), c)
    roles = dict(p1.sql("SELECT name, role FROM ha_status()"))
    check(roles.get("pg-2") == "sync_standby" and roles.get(NOSYNC) == "replica",
          "ha_status() roles: %s" % roles, c)
    # A switchover to the async member is refused with the reason.
    status, body = p1.http("POST", "/switchover", body={"leader": "pg-1", "candidate": NOSYNC}, timeout=30)
    check(status == 412 and "not a synchronous standby" in str(body),
          "switchover to %s: %s %s" % (NOSYNC, status, body), c)


def test_degrade_when_the_sync_standby_dies_and_recover(cluster):
    c = cluster
    p1, p2 = c.node("pg-1"), c.node("pg-2")
    wait_sync(c, p1, p2, timeout=30)
    p2.kill_host()
    t_kill = time.monotonic()
    try:
        conn = p1.connect()
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("SET statement_timeout = '60s'")
                cur.execute("INSERT INTO sync_t VALUES (-1)")   # waits for pg-2 until the degrade
        finally:
            conn.close()
        waited = time.monotonic() - t_kill
        print("commit resumed %.1fs after the sync standby died" % waited)
        check(waited <= DEGRADE_BOUND, "the commit waited %.1fs, more than %ds" % (waited, DEGRADE_BOUND), c)
        check(waited >= LOOP_WAIT * 0.5, "the commit did not wait at all (%.1fs): was pg-2 synchronous?" % waited, c)
        wait_for(lambda: sync_key(c) == ("pg-1", []), timeout=10, interval=0.2,
                 description="sync key without standbys", state=lambda: sync_key(c))
        check(NOSYNC not in sync_key(c)[1] and sync_states(p1).get(NOSYNC) == "async",
              "nosync %s became synchronous: %s %s" % (NOSYNC, sync_key(c), sync_states(p1)), c)
    finally:
        p2.start_host()   # also after a failure: the module's next tests need pg-2
    wait_sync(c, p1, p2, timeout=REJOIN_TIMEOUT)


def test_strict_mode_waits_visibly_and_fails_fast_when_asked(cluster):
    """synchronous_mode_strict: with the sync standby dead, writes wait (no
    degrade), the reason is visible in /patroni and ha_status(); with
    pg_ha.synchronous_strict_fail_fast = on (reload) a new commit fails at once
    with SQLSTATE 55000 instead of hanging; the standby back -> synchronous
    again and the waiting commit completes."""
    c = cluster
    p1, p2 = c.node("pg-1"), c.node("pg-2")
    wait_sync(c, p1, p2, timeout=60)
    status, body = p1.http("PATCH", "/config", body={"synchronous_mode_strict": True}, timeout=10)
    check(status == 200, "PATCH /config strict: %s %s" % (status, body), c)
    waiting = {}

    def blocked_write():
        try:
            conn = p1.connect()
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SET statement_timeout = 0")
                cur.execute("INSERT INTO sync_t VALUES (-2)")
            waiting["done"] = time.monotonic()
            conn.close()
        except psycopg2.Error as exc:
            waiting["error"] = str(exc)

    try:
        time.sleep(LOOP_WAIT + 1)   # every node has read the config
        p2.kill_host()
        t_kill = time.monotonic()
        writer = threading.Thread(target=blocked_write, daemon=True)
        writer.start()
        # beyond the non-strict degrade bound the commit still waits, and the reason shows
        wait_for(lambda: "synchronous_mode_waiting" in (p1.http_json("/patroni")[1] or {}),
                 timeout=DEGRADE_BOUND + 10, interval=0.5, description="/patroni says why commits wait",
                 state=lambda: p1.http("GET", "/patroni"))
        time.sleep(max(0.0, t_kill + DEGRADE_BOUND + 2 - time.monotonic()))
        check(writer.is_alive() and not waiting, "strict mode: the commit did not wait (%s)" % waiting, c)
        reason = p1.http_json("/patroni")[1]["synchronous_mode_waiting"]
        shown = p1.sql_value("SELECT sync_waiting FROM ha_node()")
        check(shown == reason, "ha_node().sync_waiting is %r, /patroni says %r" % (shown, reason), c)
        # fail fast on request: a reload, then a new commit is refused at once
        p1.sql("ALTER SYSTEM SET pg_ha.synchronous_strict_fail_fast = on")
        p1.sql("SELECT pg_reload_conf()")
        time.sleep(0.5)
        t0 = time.monotonic()
        try:
            p1.sql("INSERT INTO sync_t VALUES (-3)", timeout=10)
            failed = None
        except psycopg2.Error as exc:
            failed = exc
        took = time.monotonic() - t0
        check(failed is not None and failed.pgcode == "55000" and "no synchronous standby" in str(failed),
              "fail-fast commit: %r (%.1fs)" % (failed, took), c)
        check(took < 5, "the fail-fast commit took %.1fs" % took, c)
        check(p1.sql_value("SELECT count(*) FROM sync_t WHERE id = -3") == 0, "the refused row exists", c)
        print("strict: waiting reason %r; fail-fast refusal after %.2fs: %s" % (
            reason, took, str(failed).splitlines()[0]))
    finally:
        p1.sql("ALTER SYSTEM RESET pg_ha.synchronous_strict_fail_fast")
        p1.sql("SELECT pg_reload_conf()")
        if not p2.supervisor_running():
            p2.start_host()
        p1.http("PATCH", "/config", body={"synchronous_mode_strict": False}, timeout=10)
    wait_sync(c, p1, p2, timeout=REJOIN_TIMEOUT)
    writer.join(timeout=30)
    check("done" in waiting, "the waiting commit did not complete after the standby came back: %s" % waiting, c)


# ids of tests 4 and 5 (negative: test 6 writes 1, 2, ...)
UNREACHABLE_ROWS = 50
UNREACHABLE_FIRST_ID = -10000
UNACKED_ID = -10999
CUT_ID = -11000
WAL_SENDER_TIMEOUT = 10
SLACK = 5   # 2 loaded cores


def test_only_the_sync_standby_is_promoted_even_while_briefly_unreachable(cluster):
    """pg-2 (sync) cut off, pg-1's host killed before the degrade can drop
    pg-2 from the sync key; pg-3 (async, ahead: it received a commit pg-2 never
    saw) must not take over while pg-2 is unreachable, even with the leader
    lock free; pg-2 healed -> promoted with every acknowledged row."""
    c = cluster
    p1, p2, p3 = c.node("pg-1"), c.node("pg-2"), c.node(NOSYNC)
    wait_sync(c, p1, p2, timeout=REJOIN_TIMEOUT)
    acked = []
    conn = p1.connect()
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SET statement_timeout = '30s'")
            for i in range(UNREACHABLE_ROWS):
                cur.execute("INSERT INTO sync_t VALUES (%s)", (UNREACHABLE_FIRST_ID + i,))
                acked.append(UNREACHABLE_FIRST_ID + i)
    finally:
        conn.close()

    # A commit started after the cut reaches pg-3 (async) but never pg-2, and
    # waits for pg-2: it is never acknowledged. Connected before the cut.
    in_flight = {}
    go = threading.Event()
    pending = p1.connect()
    pending.autocommit = True
    with pending.cursor() as cur:
        cur.execute("SET statement_timeout = 0")

    def unacked_commit():
        if not go.wait(30):
            return
        try:
            with pending.cursor() as cur:
                cur.execute("INSERT INTO sync_t VALUES (%s)", (UNACKED_ID,))
            in_flight["acked"] = True
        except psycopg2.Error as exc:
            in_flight["error"] = str(exc).splitlines()[0]

    writer = threading.Thread(target=unacked_commit, daemon=True, name="sync-unacked")
    writer.start()
    healed = False
    try:
        p2.host.isolate()
        t_cut = time.monotonic()
        p2_lsn = p2.current_lsn()   # the observer still reaches pg-2; nobody else does
        go.set()
        p3_ahead = False
        for _ in range(12):   # at most ~0.6 s: act before the degrade grace (loop_wait)
            p3_ahead = p3.current_lsn() > p2_lsn
            if p3_ahead:
                break
            time.sleep(0.05)
        p1.kill_host()
        t_kill = time.monotonic()
        key = sync_key(c)
        print("pg-1 killed %.2fs after pg-2 was cut off; sync key %s; pg-3 ahead of pg-2: %s"
              % (t_kill - t_cut, key, p3_ahead))
        check(key == ("pg-1", ["pg-2"]),
              "the sync key no longer named pg-2 when pg-1 died (%s): the test acted too late" % (key,), c)
        writer.join(15)
        if in_flight.get("acked"):
            acked.append(UNACKED_ID)   # then it must be on the new primary too

        # pg-2 unreachable: nobody may take over, however long it lasts.
        lock_free_at = None
        deadline = t_kill + TTL + 10
        for _ in range(int((TTL + 10) / 0.3) + 10):
            if time.monotonic() >= deadline:
                break
            holder = c.leader_name()
            if holder is None and lock_free_at is None:
                lock_free_at = time.monotonic()
            check(holder in (None, "pg-1"), "%s took the leader lock while pg-2 (sync) was unreachable" % holder, c)
            for n in (p3, p2):
                check(not n.is_primary(), "%s became primary %.1fs after the kill while pg-2 was cut off (sync key "
                      "%s)" % (n.name, time.monotonic() - t_kill, sync_key(c)), c)
            time.sleep(0.3)
        replica_for = time.monotonic() - t_kill
        check(p3.in_recovery(), "pg-3 left recovery", c)
        check(lock_free_at is not None and deadline - lock_free_at >= 3,
              "the leader lock was not free for long during the window (free at %s): the test proves nothing" %
              (None if lock_free_at is None else "%.1fs after the kill" % (lock_free_at - t_kill)), c)
        print("pg-3 stayed a replica for %.1fs after the kill, %.1fs of it with the leader lock free"
              % (replica_for, deadline - lock_free_at))

        p2.host.heal()
        healed = True
        t_heal = time.monotonic()
        new = wait_for(lambda: next((n for n in (p2, p3) if n.is_primary()), None), timeout=FAILOVER_TIMEOUT,
                       interval=0.2, description="a new primary after pg-2 was healed", state=c.diagnostics)
        promoted_after = time.monotonic() - t_heal
        check(new is p2, "%s was promoted, the sync key named pg-2" % new.name, c)
        got = {r[0] for r in p2.sql("SELECT id FROM sync_t WHERE id = ANY(%s)", (acked,))}
        lost = sorted(set(acked) - got)
        has_unacked = p2.sql_value("SELECT count(*) FROM sync_t WHERE id = %s", (UNACKED_ID,))
        print("pg-2 primary %.1fs after the heal (%.1fs after the kill); %d acknowledged rows, %d lost; "
              "in-flight commit %s, on pg-2: %s" % (promoted_after, time.monotonic() - t_kill, len(acked), len(lost),
                                                    in_flight, bool(has_unacked)))
        check(not lost, "%d acknowledged rows missing on pg-2: %s" % (len(lost), lost[:10]), c)
    finally:
        if not healed:
            p2.host.heal()
        go.set()
        if not p1.supervisor_running():
            p1.start_host()
        writer.join(15)
        if not writer.is_alive():
            pending.close()
    wait_sync(c, p2, p1, timeout=REJOIN_TIMEOUT)
    c.wait_healthy(timeout=REJOIN_TIMEOUT)   # pg-3 (ahead of pg-2 on the old timeline) follows pg-2 too


def test_network_cut_of_the_sync_standby_degrades_after_wal_sender_timeout(cluster):
    """A cut (not killed) sync standby keeps its walsender "streaming" on the
    primary until wal_sender_timeout: a commit waits at most that plus the
    degrade delay."""
    c = cluster
    primary = c.wait_for_primary(timeout=60)
    check(primary.name in ("pg-1", "pg-2"), "%s is primary" % primary.name, c)
    standby = c.node("pg-2" if primary.name == "pg-1" else "pg-1")
    wait_sync(c, primary, standby, timeout=REJOIN_TIMEOUT)
    bound = WAL_SENDER_TIMEOUT + DEGRADE_BOUND + SLACK
    result = {}
    go = threading.Event()
    conn = None
    committer = None
    try:
        primary.sql("ALTER SYSTEM SET wal_sender_timeout = '%ds'" % WAL_SENDER_TIMEOUT)
        primary.sql("SELECT pg_reload_conf()")
        wait_for(lambda: primary.sql_value("SHOW wal_sender_timeout") == "%ds" % WAL_SENDER_TIMEOUT, timeout=10,
                 interval=0.2, description="wal_sender_timeout reloaded")
        conn = primary.connect()
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SET statement_timeout = 0")   # a timeout would cancel the wait and fake a completion

        def commit():
            if go.wait(30):
                timed_insert(conn, CUT_ID, result, "waited")

        committer = threading.Thread(target=commit, daemon=True, name="sync-cut-commit")
        committer.start()
        standby.host.isolate()
        t_cut = time.monotonic()
        go.set()
        walsender_gone = None
        patroni = set()
        for _ in range(int(bound / 0.5) + 10):
            if not committer.is_alive() or time.monotonic() > t_cut + bound:
                break
            if walsender_gone is None and standby.name not in sync_states(primary):
                walsender_gone = time.monotonic() - t_cut
            status, body = primary.http_json("/patroni")
            body = body or {}
            patroni.add((status, body.get("role"), body.get("state"), "synchronous_mode_waiting" in body))
            committer.join(0.5)
        waited = result.get("waited")
        print("network cut of %s: the commit waited %s s (bound %ds); walsender gone from pg_stat_replication "
              "after %s s; /patroni on %s: %s" % (
                  standby.name, "%.1f" % waited if waited is not None else "(still waiting)", bound,
                  "%.1f" % walsender_gone if walsender_gone is not None else "?", primary.name, sorted(patroni)))
        check(waited is not None,
              "the commit did not complete within %ds of the cut (%s)" % (bound, result.get("error", "waiting")), c)
        check(waited <= bound, "the commit waited %.1fs, more than %ds" % (waited, bound), c)
        cancelled = [n for n in conn.notices if "canceling wait" in n]
        check(not cancelled, "the wait was cancelled, not degraded: %s" % cancelled, c)
        # a slow answer (None) on 2 loaded cores is tolerated; an error answer is not
        check(any(s == 200 for s, *_ in patroni) and all(s in (200, None) for s, *_ in patroni),
              "/patroni on the primary during the wait: %s" % sorted(patroni, key=str), c)
    finally:
        standby.host.heal()
        go.set()
        primary.sql("ALTER SYSTEM RESET wal_sender_timeout")
        primary.sql("SELECT pg_reload_conf()")
        if committer is not None:
            committer.join(30)
        if conn is not None and (committer is None or not committer.is_alive()):
            conn.close()
    wait_sync(c, primary, standby, timeout=REJOIN_TIMEOUT)


def timed_insert(conn, row_id, result, done_key):
    """One INSERT into sync_t on `conn`: result[done_key] = seconds it took
    when it committed, else result["error"] = (seconds, first line of the error)."""
    t0 = time.monotonic()
    try:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO sync_t VALUES (%s)", (row_id,))
        result[done_key] = time.monotonic() - t0
    except psycopg2.Error as exc:
        result["error"] = (time.monotonic() - t0, str(exc).splitlines()[0] if str(exc) else repr(exc))


class AckWriter(threading.Thread):
    """Commits increasing ids on one node (autocommit, new connection after an
    error, until stopped) and records every acknowledged id."""

    def __init__(self, node, start_id):
        super().__init__(daemon=True, name="sync-writer")
        self.node, self.next_id = node, start_id
        self.acked = []
        self.stop_event = threading.Event()

    def run(self):
        deadline = time.monotonic() + 300
        conn = None
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            try:
                if conn is None:
                    conn = psycopg2.connect(host=self.node.ip, port=self.node.port, user=harness.SUPERUSER,
                                            password=harness.SUPERUSER_PASSWORD, dbname="postgres",
                                            connect_timeout=2)
                    conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute("INSERT INTO sync_t VALUES (%s)", (self.next_id,))
                self.acked.append(self.next_id)
                self.next_id += 1
            except psycopg2.Error:
                conn = None
                time.sleep(0.1)

    def stop(self):
        self.stop_event.set()
        self.join(15)


def test_zero_acknowledged_loss_over_host_kills(cluster):
    c = cluster
    next_id = 1
    for round_no in range(KILLS):
        old = c.wait_for_primary(timeout=60)
        leader, standbys = sync_key(c)
        if leader != old.name or not standbys:
            others = [n for n in c.nodes if n is not old and n.name != NOSYNC]
            wait_sync(c, old, others[0], timeout=REJOIN_TIMEOUT)
            leader, standbys = sync_key(c)
        w = AckWriter(old, next_id)
        w.start()
        wait_for(lambda: len(w.acked) >= 200, timeout=60, interval=0.2, description="200 acknowledged commits")
        old.kill_host()
        time.sleep(0.5)
        w.stop()
        next_id = w.next_id + 1000
        new = wait_for(lambda: next((n for n in c.nodes if n is not old and n.is_primary()), None),
                       timeout=FAILOVER_TIMEOUT, interval=0.2, description="a new primary", state=c.diagnostics)
        check(new.name in standbys, "round %d: %s was promoted, the sync key named %s" % (round_no, new.name, standbys),
              c)
        got = {r[0] for r in new.sql("SELECT id FROM sync_t WHERE id = ANY(%s)", (w.acked,))}
        lost = sorted(set(w.acked) - got)
        print("round %d: %s -> %s, %d acknowledged, %d lost" % (round_no, old.name, new.name, len(w.acked), len(lost)))
        check(not lost, "round %d: %d acknowledged ids missing on %s: %s" % (round_no, len(lost), new.name, lost[:10]), c)
        old.start_host()
        wait_sync(c, new, old, timeout=REJOIN_TIMEOUT)


LEASE_ID = -12000


def test_a_commit_waiting_for_the_sync_standby_is_never_acknowledged_after_the_lease(cluster):
    """Issue 11 item 5: the primary is cut off from everything but the test
    (ZooKeeper and both standbys). A commit sent right after the cut waits for
    the synchronous standby; the primary's lease runs out and the sync
    standby takes over. The waiting commit is never acknowledged: the fence
    ends it (the post-commit cut covers a wait that ends after the lease)."""
    c = cluster
    old = c.wait_for_primary(timeout=60)
    standby = c.node("pg-2" if old.name == "pg-1" else "pg-1")
    wait_sync(c, old, standby, timeout=REJOIN_TIMEOUT)
    conn = old.connect()
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SET statement_timeout = 0")
    result = {}

    committer = threading.Thread(target=timed_insert, args=(conn, LEASE_ID, result, "acked"), daemon=True,
                                 name="sync-lease-commit")
    new = None
    try:
        old.host.isolate()   # the test still reaches it
        t_cut = time.monotonic()
        committer.start()
        new = wait_for(lambda: next((n for n in c.nodes if n is not old and n.is_primary()), None),
                       timeout=FAILOVER_TIMEOUT, interval=0.3, description="a new primary", state=c.diagnostics)
        t_new = time.monotonic() - t_cut
        committer.join(30)
        print("cut %s: %s took over after %.1fs; the waiting commit: %s" % (
            old.name, new.name, t_new, result if result else "still waiting"))
        check(new.name == standby.name, "%s was promoted, not the sync standby %s" % (new.name, standby.name), c)
        check("acked" not in result, "the waiting commit was acknowledged %.1fs after the cut (new leader after %.1fs)"
              % (result.get("acked", 0), t_new), c)
    finally:
        old.host.heal()
        committer.join(60)
        conn.close()
    check("acked" not in result, "the waiting commit was acknowledged after the heal: %s" % result, c)
    check(new.sql_value("SELECT count(*) FROM sync_t WHERE id = %s", (LEASE_ID,)) == 0,
          "the unacknowledged row is on the new primary", c)
    wait_sync(c, new, old, timeout=REJOIN_TIMEOUT)


def test_primary_stop_timeout_kills_a_shutdown_that_waits_for_the_sync_standby(cluster):
    """Issue 12 item 5, Patroni's primary_stop_timeout: the primary's link to
    its synchronous standby is cut, so a fast shutdown waits for the standby
    to confirm the shutdown checkpoint (up to wal_sender_timeout, 60 s).
    With primary_stop_timeout 3 the worker's guard kills the postmaster after
    3 s, and `pg_hactl stop` hands the leader lock over at once."""
    c = cluster
    old = c.wait_for_primary(timeout=60)
    standby = c.node("pg-2" if old.name == "pg-1" else "pg-1")
    wait_sync(c, old, standby, timeout=REJOIN_TIMEOUT)
    assert old.sql_value("SHOW wal_sender_timeout") == "1min"
    c.set_dynamic_config({"primary_stop_timeout": 3})
    # The primary's worker has the key (its /config is its own view of the config znode).
    wait_for(lambda: (old.http_json("/config")[1] or {}).get("primary_stop_timeout") == 3, timeout=30, interval=0.2,
             description="%s's worker to have primary_stop_timeout 3" % old.name,
             state=lambda: old.http("GET", "/config"))
    old.stop_supervisor()   # a host stopped for good: nothing starts PostgreSQL again
    log_before = len(old.log_path.read_text(errors="replace"))
    try:
        standby.host.isolate(peers=[old.host])
        t0 = time.monotonic()
        p = old.host.exec(["runuser", "-u", "postgres", "--", str(harness.PG_HACTL), "stop", "--config",
                           str(old.config_file), "--pgdata", str(old.data_dir)], timeout=120, check=False)
        took = time.monotonic() - t0
        log = old.log_path.read_text(errors="replace")[log_before:]
        print("pg_hactl stop of %s with its sync standby cut off: %.1f s (primary_stop_timeout 3 s, "
              "wal_sender_timeout 60 s)" % (old.name, took))
        # The stopped node's own log first: the other nodes' diagnostics follow.
        check(p.returncode == 0 and "the postmaster was killed before it stopped" in p.stderr,
              "pg_hactl stop took %.1f s: rc=%s\n%s%s\n--- %s's log since the stop:\n%s"
              % (took, p.returncode, p.stdout, p.stderr, old.name, log[-6000:]), c)
        check("within primary_stop_timeout (3 s)" in log and "killing the postmaster" in log,
              "no guard in the log:\n" + log[-3000:], c)
        check(3 <= took <= 3 + 6, "the stop took %.1f s" % took, c)
        check("released the leader lock" in p.stderr, p.stderr, c)
    finally:
        standby.host.heal()
        cfg = c.dynamic_config()
        cfg.pop("primary_stop_timeout", None)
        c.set_dynamic_config(cfg, replace=True)
    # The module's last test: its cluster is torn down now, so the stopped node is not started again.
    wait_for(lambda: c.leader_name() not in (None, old.name), timeout=FAILOVER_TIMEOUT, interval=0.2,
             description="another member to lead after the stop", state=c.diagnostics)
