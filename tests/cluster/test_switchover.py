"""Switchover from SQL and from the REST API (issue 4), with a writer running.

One module cluster: ttl 10 / loop_wait 2 / retry_timeout 2 (short so that the
old primary's restart after each switchover does not dominate the module's
runtime; the switchover itself never waits for a loop tick, whatever the
settings). REST basic auth is on. pg-3 is tagged nofailover.

A writer commits a row every 20 ms directly to whichever node accepts writes
(it tries the nodes in turn after an error) and records every acknowledged
id; after each switchover every acknowledged id must be on the new primary.
The split-brain checker watches every node throughout.
"""
import base64
import json
import time
import urllib.error
import urllib.request

import psycopg2
import pytest

import harness
from conftest import BOOTSTRAP_TIMEOUT
from harness import wait_for
from splitbrain import SplitBrainChecker

pytestmark = pytest.mark.needs_pg_ha

REST_USER, REST_PASSWORD = "swadmin", "sw-pass"
TTL, LOOP_WAIT, RETRY_TIMEOUT = 10, 2, 2
NOFAILOVER = "pg-3"
HEALTHY_TIMEOUT = 150


@pytest.fixture(scope="module")
def cluster(request, require_pg_ha):
    failures_before = request.session.testsfailed
    auth = "pg_ha.restapi_username = '%s'\npg_ha.restapi_password = '%s'" % (REST_USER, REST_PASSWORD)
    c = harness.Cluster(extra_settings=auth, node_settings={NOFAILOVER: "pg_ha.nofailover = on"},
                        dynamic_config={"ttl": TTL, "loop_wait": LOOP_WAIT, "retry_timeout": RETRY_TIMEOUT})
    try:
        c.start(nodes=False)
        c.start_nodes(["pg-1"])
        c.wait_for_primary(timeout=BOOTSTRAP_TIMEOUT, nodes=["pg-1"])
        c.start_nodes(["pg-2", "pg-3"])
        c.wait_healthy(timeout=BOOTSTRAP_TIMEOUT)
        c.primary().sql("CREATE TABLE sw_writes (id bigint PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())")
        # An operator role: pgha_admin member, not a superuser.
        c.primary().sql("CREATE ROLE sw_operator LOGIN PASSWORD 'op-pw' IN ROLE pgha_admin")
        c.primary().sql("CREATE ROLE sw_plain LOGIN PASSWORD 'plain-pw'")
        wait_members_running(c)
    except BaseException:
        c.keep_dir = True
        c.teardown()
        raise
    yield c
    if request.session.testsfailed > failures_before:
        c.keep_dir = True
    c.teardown()


def wait_members_running(c, timeout=HEALTHY_TIMEOUT):
    """Healthy, and the leader's view shows every member running (switchover
    validation uses the member znodes)."""
    c.wait_healthy(timeout=timeout)
    wait_for(lambda: all(m.get("state") == "running" for m in c.members().values()) and len(c.members()) == 3,
             timeout=60, interval=0.3, description="every member znode to say running", state=c.diagnostics)
    time.sleep(LOOP_WAIT + 1)  # the leader's next read sees them too


class DirectWriter(harness.DirectWriter):
    """harness.DirectWriter on sw_writes, with the outage measure."""

    def __init__(self, c):
        super().__init__(c, "sw_writes", "sw-writer")

    def assert_no_loss(self, c, node):
        missing = self.missing_on(node)
        assert not missing, "acknowledged rows missing on %s: %r" % (node.name, missing[:10])

    def outage(self, old, new):
        """Last ack on `old` before the first ack on `new`, to that first ack."""
        first_new = next((t for _, n, t in self.acked if n == new), None)
        last_old = max((t for _, n, t in self.acked if n == old and (first_new is None or t < first_new)),
                       default=None)
        if first_new is None or last_old is None:
            return None
        return first_new - last_old


def rest(node, method, path, body=None, auth=True, timeout=70):
    req = urllib.request.Request("http://%s:8008%s" % (node.ip, path), method=method,
                                 data=json.dumps(body).encode() if body is not None else None)
    req.add_header("Content-Type", "application/json")
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(
            ("%s:%s" % (REST_USER, REST_PASSWORD)).encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def sql_as(node, user, password, sql):
    conn = harness.pg_connect(node.ip, user=user, password=password, connect_timeout=3)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        conn.close()


def other_candidate(c):
    leader = c.leader_name()
    return next(n for n in ("pg-1", "pg-2") if n != leader)


def do_switchover(c, how):
    old = c.primary()
    target = other_candidate(c)
    log_before = len(old.log_path.read_text(errors="replace"))
    with SplitBrainChecker(c) as sb, DirectWriter(c) as w:
        time.sleep(1.0)
        t0 = time.monotonic()
        if how == "sql":
            got = sql_as(old, "sw_operator", "op-pw", "SELECT ha_switchover('%s')" % target)[0][0]
            assert got == target, got
        else:
            st, body = rest(old, "POST", "/switchover", {"leader": old.name, "candidate": target})
            assert st == 200 and body == 'Successfully switched over to "%s"' % target, (st, body)
        took = time.monotonic() - t0
        # The old leader answers once the lock moved, then stops cleanly; the
        # candidate promotes once it has that shutdown checkpoint.
        assert c.leader_name() == target
        wait_for(lambda: c.node(target).accepts_writes(), timeout=10, interval=0.02,
                 description="%s to accept writes" % target, state=c.diagnostics)
        writable = time.monotonic() - t0
        time.sleep(1.5)
    outage = w.outage(old.name, target)
    print("\n%s switchover %s -> %s: command %.3f s, writable after %.3f s, writer outage %s, %d acks, "
          "%d failed attempts" % (how, old.name, target, took, writable,
                                  "%.3f s" % outage if outage is not None else "n/a", len(w.acked), len(w.failures)))
    assert not sb.violations(), sb.summary() + "\n" + "\n".join(sb.violations())
    w.assert_no_loss(c, c.node(target))
    assert any(n == target for _, n, _ in w.acked), "no write reached the new primary"
    # the old primary comes back as a streaming standby of the new one, without rewinding
    wait_for(lambda: old.streams_from(c.node(target)), timeout=HEALTHY_TIMEOUT, interval=0.5,
             description="%s to stream from %s" % (old.name, target), state=c.diagnostics)
    since = old.log_path.read_text(errors="replace")[log_before:]
    assert "servers diverged" not in since and "rewinding" not in since, since[-3000:]
    assert "no rewind needed" in since, since[-3000:]
    wait_members_running(c)
    return took, outage


def test_switchover_by_sql_with_a_writer(cluster):
    do_switchover(cluster, "sql")


def test_switchover_by_rest_with_a_writer(cluster):
    do_switchover(cluster, "rest")


def test_sql_refusals(cluster):
    c = cluster
    p = c.primary()
    for sql, code, text in [
        ("SELECT ha_switchover('pg-9')", "55000", "does not exist"),
        ("SELECT ha_switchover('%s')" % NOFAILOVER, "55000", "nofailover"),
        ("SELECT ha_switchover('%s')" % p.name, "55000", "already the leader"),
        ("SELECT ha_failover('pg-2')", "55000", "has a leader"),
        ("SELECT ha_set_config('{\"ttl\": 1, \"loop_wait\": 100}')", "22023", "invalid configuration"),
        ("SELECT ha_set_config('{\"ttl\": \"soon\"}')", "22023", "invalid configuration"),
        ("SELECT ha_restart('pg-9')", "42704", "does not exist"),
    ]:
        with pytest.raises(psycopg2.Error) as ei:
            sql_as(p, "sw_operator", "op-pw", sql)
        assert ei.value.pgcode == code and text in str(ei.value), (sql, ei.value.pgcode, str(ei.value))
    # nothing changed
    assert c.leader_name() == p.name
    assert c.dynamic_config()["ttl"] == TTL
    # a plain user may not even try
    with pytest.raises(psycopg2.Error) as ei:
        sql_as(p, "sw_plain", "plain-pw", "SELECT ha_switchover('pg-2')")
    assert ei.value.pgcode == "42501", ei.value


def test_rest_refusals_and_auth(cluster):
    c = cluster
    p = c.primary()
    st, body = rest(p, "POST", "/switchover", {"leader": p.name, "candidate": "pg-2"}, auth=False)
    assert st == 401, (st, body)
    st, body = rest(p, "POST", "/switchover", {"leader": "pg-9", "candidate": "pg-2"})
    assert st == 412 and "leader name does not match" in body, (st, body)
    st, body = rest(p, "POST", "/switchover", {"leader": p.name, "candidate": NOFAILOVER})
    assert st == 412 and "nofailover" in body, (st, body)
    req = urllib.request.Request("http://%s:8008/switchover" % p.ip, method="POST", data=b"{not json")
    req.add_header("Authorization", "Basic " + base64.b64encode(
        ("%s:%s" % (REST_USER, REST_PASSWORD)).encode()).decode())
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(req, timeout=10)
    assert ei.value.code == 400
    st, body = rest(p, "PATCH", "/config", {"ttl": 1, "loop_wait": 100})
    assert st == 400 and "invalid configuration" in body, (st, body)
    assert c.leader_name() == p.name and c.dynamic_config()["ttl"] == TTL
    assert c.zk_get("failover") is None


def test_cancelled_switchover_is_all_or_nothing(cluster):
    """statement_timeout cancels ha_switchover() while it waits: afterwards the
    cluster has either switched completely or not at all, no failover key is
    left behind, and the request slot is free again."""
    c = cluster
    old = c.primary()
    target = other_candidate(c)
    conn = harness.pg_connect(old.ip, user="sw_operator", password="op-pw", connect_timeout=3)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SET statement_timeout = 5")
            with pytest.raises(psycopg2.Error):
                cur.execute("SELECT ha_switchover('%s')" % target)
    except psycopg2.OperationalError:
        pass  # the old primary stopped under us: the switchover went through
    finally:
        try:
            conn.close()
        except Exception:  # noqa: BLE001
            pass
    wait_for(lambda: c.zk_get("failover") is None, timeout=30, interval=0.3,
             description="no failover key left", state=c.diagnostics)
    wait_members_running(c)
    leader = c.leader_name()
    assert leader in (old.name, target), leader
    assert c.node(leader).accepts_writes()
    # the slot is free: a new request on the (current) primary is answered
    got = sql_as(c.node(leader), "sw_operator", "op-pw", "SELECT ha_pause()")[0][0]
    assert got
    assert c.dynamic_config().get("pause") is True
    sql_as(c.node(leader), "sw_operator", "op-pw", "SELECT ha_resume()")
    assert not c.dynamic_config().get("pause")


def test_history_lists_the_switchovers(cluster):
    c = cluster
    rows = c.primary().sql("SELECT timeline, lsn::text, new_leader FROM ha_history()")
    assert len(rows) >= 2, rows
    tls = [r[0] for r in rows]
    assert tls == sorted(tls) and len(set(tls)) == len(tls), rows


def test_restarting_the_primary_keeps_leadership(cluster):
    """POST /restart on the primary: the worker keeps its ZooKeeper session
    (and the lock) over the restart, so no standby takes over before the
    shutdown checkpoint; the node comes back as the primary without rewind and
    only it ever acknowledged writes."""
    c = cluster
    p = c.primary()
    with SplitBrainChecker(c) as sb:
        time.sleep(1.0)
        st, body = rest(p, "POST", "/restart", {})
        assert st == 200, (st, body)
        wait_for(lambda: p.is_primary() and p.accepts_writes(), timeout=60, interval=0.3,
                 description="%s back as primary" % p.name, state=c.diagnostics)
        time.sleep(1.0)
    assert c.leader_name() == p.name
    assert not sb.violations(), sb.summary() + "\n" + "\n".join(sb.violations())
    assert {a.node for a in sb.acks()} == {p.name}, sb.summary()
    assert "pg_rewind" not in p.log_tail(300)
    wait_members_running(c)
