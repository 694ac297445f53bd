"""Basic HA scenarios against real PostgreSQL + pg_ha, ZooKeeper and HAProxy.

1. bootstrap convergence in several start orders (fresh cluster each)
2. HAProxy routing with the unchanged Patroni-style config
3. standby restart
4. backend crash on the primary (crash-restart keeps the leader)
5. ZooKeeper restart (no role change)

2-5 share one module-scoped cluster; each leaves it healthy.
"""
import time
import uuid

import psycopg2
import psycopg2.errors
import pytest

import harness
from conftest import BOOTSTRAP_TIMEOUT, HEALTHY_TIMEOUT
from harness import query, wait_for

pytestmark = pytest.mark.needs_pg_ha

TTL = 30                 # pg_ha's default ttl (Patroni's), the bound for "writes again"
LOOP_WAIT = 10           # default loop_wait: how long a late reaction may take
HAPROXY_TIMEOUT = 60     # rise 3 x inter 3s, fall 3, plus slack on 2 cores
PRIMARY_ROLES = ("primary", "master")


def check(cond, msg, cluster):
    """assert with the cluster's diagnostics (node logs, znodes) in the message."""
    if not cond:
        raise AssertionError("%s\n%s" % (msg, cluster.diagnostics()))


# --------------------------------------------------------------------------
# 1. bootstrap convergence

def assert_converged(c, primary):
    """Everything scenario 1 promises about a freshly bootstrapped cluster."""
    others = [n for n in c.nodes if n is not primary]

    # exactly one node says primary, and it really takes writes
    check(c.primaries() == [primary], "expected only %s on /primary, got %s" % (primary.name, c.primaries()), c)
    primary.sql("create table if not exists bootstrap_t(id int primary key, note text)")
    primary.sql("insert into bootstrap_t values (1, 'written on the primary')")
    check(primary.in_recovery() is False, "%s is in recovery" % primary.name, c)

    # the others are streaming replicas
    for n in others:
        status, body = n.http("GET", "/replica")
        check(status == 200, "%s: GET /replica -> %s %s" % (n.name, status, body), c)
        check(n.in_recovery() is True, "%s is not in recovery" % n.name, c)
    rows = primary.replication_rows()
    streaming = sorted(r["client_addr"] for r in rows if r["state"] == "streaming")
    check(streaming == sorted(n.ip for n in others),
          "pg_stat_replication on %s: %s" % (primary.name, rows), c)
    for n in others:
        wait_for(lambda: n.sql("select note from bootstrap_t where id = 1") == [("written on the primary",)],
                 timeout=30, interval=0.5, description="row replicated to %s" % n.name, state=c.diagnostics)

    # ZooKeeper: leader, initialize, members
    check(c.leader_name() == primary.name, "leader znode = %r, primary is %s" % (c.leader_name(), primary.name), c)
    sysids = {n.name: n.system_identifier() for n in c.nodes}
    check(len(set(sysids.values())) == 1, "system identifiers differ: %s" % sysids, c)
    init = c.zk_get("initialize")
    check(init is not None and init.strip() == sysids[primary.name],
          "initialize znode %r != system_identifier %s" % (init, sysids[primary.name]), c)

    def members_ok():
        m = c.members()
        if set(m) != {n.name for n in c.nodes}:
            return False
        for name, data in m.items():
            if not isinstance(data, dict) or data.get("state") != "running":
                return False
            want = PRIMARY_ROLES if name == primary.name else ("replica",)
            if data.get("role") not in want:
                return False
        return m

    wait_for(members_ok, timeout=LOOP_WAIT * 3, interval=1.0,
             description="members/* = 3 running members with roles (primary %s)" % primary.name,
             state=lambda: "members: %s\n%s" % (c.members(), c.diagnostics()))


@pytest.mark.parametrize("order", ["all_at_once", "n1_n2_n3", "n3_first"])
def test_bootstrap_convergence(make_cluster, require_pg_ha, order):
    c = make_cluster(haproxy=False)
    c.start_zookeeper()
    if order == "all_at_once":
        c.start_nodes()
    elif order == "n1_n2_n3":
        c.start_nodes(["pg-1", "pg-2", "pg-3"], stagger=2.0)
    else:
        c.start_nodes(["pg-3"])
        first = c.wait_for_primary(timeout=BOOTSTRAP_TIMEOUT, nodes=["pg-3"])
        assert first.name == "pg-3"
        c.start_nodes(["pg-1", "pg-2"])
    primary = c.wait_healthy(timeout=BOOTSTRAP_TIMEOUT)
    if order == "n3_first":
        check(primary.name == "pg-3", "pg-3 bootstrapped alone but %s is primary now" % primary.name, c)
    assert_converged(c, primary)


# --------------------------------------------------------------------------
# 2-5 on one shared cluster

@pytest.fixture
def healthy(cluster):
    """The shared cluster's primary, after checking the cluster is healthy."""
    return cluster.wait_healthy(timeout=HEALTHY_TIMEOUT)


def test_haproxy_routes_writes_to_primary_and_reads_to_replicas(cluster, healthy):
    c, primary = cluster, healthy
    replicas = [n for n in c.nodes if n is not primary]
    c.haproxy.wait_routing(primary, readers=replicas, timeout=HAPROXY_TIMEOUT, state=c.diagnostics)

    # writes: 5433 lands on the primary
    marker = uuid.uuid4().hex
    conn = c.proxy_connect(write=True)
    try:
        addr, in_recovery = query(conn, "select host(inet_server_addr()), pg_is_in_recovery()")[0]
        check(addr == primary.ip and in_recovery is False,
              "write listener reached %s (in recovery: %s), primary is %s" % (addr, in_recovery, primary.ip), c)
        query(conn, "create table if not exists haproxy_t(marker text primary key)")
        query(conn, "insert into haproxy_t values (%s)", (marker,))
    finally:
        conn.close()

    # reads: 5432 balances over the readable nodes; find the replicas behind it
    reached = {}
    for _ in range(40):
        if set(reached) >= {r.ip for r in replicas}:
            break
        conn = c.proxy_connect(write=False)
        try:
            addr, in_recovery = query(conn, "select host(inet_server_addr()), pg_is_in_recovery()")[0]
            reached.setdefault(addr, in_recovery)
        finally:
            conn.close()
    check(any(reached.get(r.ip) is True for r in replicas),
          "read listener never reached a replica in 40 connections: %s" % reached, c)

    def read_marker_on_replica():
        conn = c.proxy_connect(write=False)
        try:
            rec = query(conn, "select pg_is_in_recovery()")[0][0]
            if not rec:
                return False
            return query(conn, "select count(*) from haproxy_t where marker = %s", (marker,))[0][0] == 1
        finally:
            conn.close()

    wait_for(read_marker_on_replica, timeout=30, interval=0.2,
             description="row written through 5433 read through 5432 on a replica", state=c.diagnostics)

    # a write through 5432 that reaches a replica fails as read-only
    for _ in range(40):
        conn = c.proxy_connect(write=False)
        try:
            if query(conn, "select pg_is_in_recovery()")[0][0]:
                with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction):
                    query(conn, "insert into haproxy_t values (%s)", (uuid.uuid4().hex,))
                break
        finally:
            conn.close()
    else:
        check(False, "no replica reached through 5432 for the write attempt", c)


def test_standby_restart_rejoins_and_catches_up(cluster, healthy):
    c, primary = cluster, healthy
    standby = next(n for n in c.nodes if n is not primary)
    primary.sql("create table if not exists standby_restart_t(id int primary key)")
    primary.sql("truncate standby_restart_t")
    old_pid = standby.restart_postgres(mode="fast")
    check(old_pid is not None, "%s had no postmaster before the restart" % standby.name, c)

    for i in range(1, 21):           # written while the standby is down or starting
        primary.sql("insert into standby_restart_t values (%s)", (i,))

    def back():
        pid = standby.postmaster_pid()
        if pid in (None, old_pid):
            return False
        if not standby.in_recovery() or standby.wal_receiver_status() != "streaming":
            return False
        return standby.sql_value("select count(*) from standby_restart_t") == 20

    wait_for(back, timeout=HEALTHY_TIMEOUT, interval=0.5,
             description="%s restarted, in recovery, streaming, with the 20 new rows" % standby.name,
             state=c.diagnostics)
    rows = primary.replication_rows()
    check(any(r["client_addr"] == standby.ip and r["state"] == "streaming" for r in rows),
          "%s not streaming according to the primary: %s" % (standby.name, rows), c)
    check(c.primary() is primary and c.leader_name() == primary.name, "the leader changed", c)
    c.wait_healthy(timeout=HEALTHY_TIMEOUT)


def test_backend_crash_on_primary_keeps_leader(cluster, healthy):
    c, primary = cluster, healthy
    check(c.leader_name() == primary.name, "leader znode %r before the test" % c.leader_name(), c)
    observer = primary.connect()          # proves the crash-restart: it must be cut
    with c.monitor(interval=0.2) as mon:
        t0 = time.monotonic()
        killed = primary.kill_backend()

        wait_for(lambda: harness.connection_broken(observer), timeout=15, interval=0.2,
                 description="crash-restart after SIGKILL of backend %d" % killed, state=c.diagnostics)
        wait_for(primary.accepts_writes, timeout=TTL + 15, interval=0.2,
                 description="%s accepting writes after the crash" % primary.name, state=c.diagnostics)
        took = time.monotonic() - t0
        c.wait_healthy(timeout=HEALTHY_TIMEOUT)
        time.sleep(2)                     # a little longer to catch a late flap
    with_diag = "\n".join([mon.timeline(), c.diagnostics()])
    print("backend crash: writes back after %.1fs\n%s" % (took, mon.timeline()))
    assert min(len(v) for v in mon.samples.values()) >= 10, "monitor barely polled\n" + with_diag
    assert took <= TTL, "writes came back after %.1fs (> ttl %ds)\n%s" % (took, TTL, with_diag)
    assert mon.answered_200() <= {primary.name}, "nodes that answered 200 on /primary: %s\n%s" % (
        mon.answered_200(), with_diag)
    assert mon.leaders() == [primary.name], "leader znode values: %s\n%s" % (mon.leaders(), with_diag)
    assert c.leader_name() == primary.name
    observer.close()


def test_zookeeper_restart_changes_no_role(cluster, healthy):
    c, primary = cluster, healthy
    zk = c.zookeepers[0]
    with c.monitor(interval=0.2) as mon:
        zk.stop()
        check(zk.mode() is None, "ZooKeeper still serving after stop()", c)
        time.sleep(3)
        t_start = time.monotonic()
        zk.start()                        # returns once it serves clients again
        t_serving = time.monotonic() - t_start
        wait_for(lambda: c.leader_name(timeout=2) == primary.name, timeout=60, interval=0.5,
                 description="leader znode = %s after the ZooKeeper restart" % primary.name, state=c.diagnostics)
        wait_for(primary.accepts_writes, timeout=TTL, interval=0.5,
                 description="%s accepting writes after the ZooKeeper restart" % primary.name,
                 state=c.diagnostics)
        print("ZooKeeper restart: serving %.1fs after start(), writes ok %.1fs after start()"
              % (t_serving, time.monotonic() - t_start))
        c.wait_healthy(timeout=HEALTHY_TIMEOUT)
        time.sleep(LOOP_WAIT + 2)         # one more HA loop: no late role change
    with_diag = "\n".join([mon.timeline(), c.diagnostics()])
    print(mon.timeline())
    assert min(len(v) for v in mon.samples.values()) >= 10, "monitor barely polled\n" + with_diag
    assert mon.answered_200() <= {primary.name}, "nodes that answered 200 on /primary: %s\n%s" % (
        mon.answered_200(), with_diag)
    assert mon.leaders() == [primary.name], "leader znode values: %s\n%s" % (mon.leaders(), with_diag)
    assert c.primary() is primary
    primary.accepts_writes()
