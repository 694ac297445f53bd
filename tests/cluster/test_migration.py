"""A running Patroni cluster switched to pg_ha member by member (issue 12 item 8).

Three nodes run Debian's Patroni (3.0.2) with ZooKeeper and HAProxy, each
with the user's postgres0.yml (../shared/user-deployment/, addresses changed
as test_patroni_config.py does; synchronous_mode: true, archive_mode: always).
A writer commits through HAProxy's write port the whole time. Then, as the
README's "Migrating a running Patroni cluster" says:

1. on each replica in turn: stop Patroni (it stops PostgreSQL), start pg_ha
   on the same data directory with the same YAML file (no data copy: the
   system identifier, timeline and data stay);
2. a switchover (`patronictl switchover`, Patroni's leader hands over to a
   pg_ha member);
3. on the old leader, now a Patroni replica: stop Patroni, start pg_ha.

Checked: every member ends up run by pg_ha, one leader, the others
streaming, no data copied (same system identifier, the writer's rows from
before the migration on every member), no acknowledged row lost, and the
writer's outages: one longer than a second at most (the switchover), and how
long it was (printed; the closing note quotes it)."""
import contextlib
import os
import signal
import threading
import time

import psycopg2

import harness
from harness import wait_for
from test_patroni_config import chown_postgres, node_yaml, users_file_and_cluster

TIMEOUT = float(os.environ.get("PGHA_TEST_BOOTSTRAP_TIMEOUT", 300))
PASSWORD = "grespost"   # the user's postgresql.authentication.superuser


class ProxyWriter:
    """Commits increasing ids through HAProxy's write port; records the
    acknowledged ones with their time, and every failed attempt's time."""

    def __init__(self, c):
        self.c = c
        self.acked = []        # (id, monotonic time of the acknowledgement)
        self.failures = []     # (monotonic time, error)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True, name="migration-writer")
        self.deadline = time.monotonic() + 900

    def run(self):
        conn, next_id = None, 1
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            try:
                if conn is None:
                    conn = self.c.proxy_connect(write=True, password=PASSWORD, connect_timeout=2,
                                                statement_timeout_ms=3000)
                harness.query(conn, "INSERT INTO migration_writes(id) VALUES (%s)", (next_id,))
                self.acked.append((next_id, time.monotonic()))
                next_id += 1
                time.sleep(0.01)
            except psycopg2.Error as e:
                self.failures.append((time.monotonic(), str(e).strip()[:160]))
                with contextlib.suppress(Exception):
                    conn.close()
                conn = None
                next_id += 1   # its answer was lost: it may or may not be there, never reuse it
                time.sleep(0.05)
        if conn is not None:
            conn.close()

    def start(self):
        self.thread.start()

    def finish(self):
        self.stop.set()
        self.thread.join(timeout=15)
        assert not self.thread.is_alive()

    def wait_more(self, n, what):
        target = len(self.acked) + n
        wait_for(lambda: len(self.acked) >= target, timeout=90, interval=0.2,
                 description="the writer to commit %d more rows %s (failures: %s)"
                 % (n, what, self.failures[-3:]))

    def outages(self, longer_than=1.0):
        """(start, length) of every gap between consecutive acknowledgements longer than `longer_than`."""
        times = [t for _, t in self.acked]
        return [(a, b - a) for a, b in zip(times, times[1:]) if b - a > longer_than]


def patroni_pids(node):
    return node.process_pids("/usr/bin/patroni")


def start_patroni(node):
    for d in (node.dir, node.socket_dir):
        d.mkdir(parents=True, exist_ok=True)
        chown_postgres(d)
    node.host.spawn(["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups",
                     "/usr/bin/patroni", node.patroni_yaml], node.dir / "patroni.log",
                    env={"PATH": harness.SAFE_PATH, "LANG": "C.UTF-8", "HOME": str(node.dir)})


def stop_patroni(node):
    """SIGTERM to Patroni, as `systemctl stop patroni`: it stops PostgreSQL (fast) and exits."""
    pids = patroni_pids(node)
    assert pids, "no Patroni process on %s" % node.name
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not patroni_pids(node) and node.postmaster_pid() is None, timeout=60, interval=0.2,
             description="Patroni and PostgreSQL on %s to stop" % node.name)


def start_pg_ha(node):
    """The same data directory and YAML file, now through pg_hactl boot --patroni-config."""
    node.patroni_config = node.patroni_yaml
    node.start()


def members(c):
    """{member name: its member znode} (Patroni's and pg_ha's members alike)."""
    return {m: c.zk_json("members/" + m) for m in c.zk_children(c.zk_path("members"))}


def running_replica(member):
    m = member if isinstance(member, dict) else {}
    return m.get("role") == "replica" and m.get("state") in ("running", "streaming")


def runs_pg_ha(node):
    return bool(node.process_pids("pg_ha worker"))


def test_patroni_cluster_migrates_to_pg_ha_member_by_member(make_cluster, require_pg_ha):
    text, c = users_file_and_cluster(make_cluster)
    for i, node in enumerate(c.nodes):
        node.dir.mkdir(parents=True, exist_ok=True)
        chown_postgres(node.dir)
        node.member = "postgresql%d" % i
        node.patroni_yaml = node.dir / ("postgres%d.yml" % i)
        y = node_yaml(text, i, node, post_init=False)
        # The user's "." puts the socket and its lock file into the data directory; pg_basebackup
        # copies the leader's lock file, and on one machine (one PID namespace, unlike containers)
        # the PID it names is alive, so Patroni's replicas would not start.
        assert 'unix_socket_directories: "."' in y
        y = y.replace('unix_socket_directories: "."', 'unix_socket_directories: "%s"' % node.socket_dir)
        node.patroni_yaml.write_text(y)
        os.chmod(node.patroni_yaml, 0o600)
        chown_postgres(node.patroni_yaml)
        node.password = PASSWORD

    # -- the Patroni cluster, as the user runs it today
    start_patroni(c.nodes[0])
    wait_for(lambda: c.leader_name() == "postgresql0", timeout=TIMEOUT, interval=1.0,
             description="Patroni on pg-1 to bootstrap the cluster")
    for node in c.nodes[1:]:
        start_patroni(node)
    c.start_haproxy()
    primary = c.wait_healthy(timeout=TIMEOUT)
    assert primary is c.nodes[0] and not any(runs_pg_ha(n) for n in c.nodes)
    sysid = primary.system_identifier()
    primary.sql("CREATE TABLE migration_writes (id bigint PRIMARY KEY, at timestamptz DEFAULT now())")
    table_oid = primary.sql_value("SELECT oid FROM pg_class WHERE relname = 'migration_writes'")

    w = ProxyWriter(c)
    w.start()
    w.wait_more(50, "through HAProxy to Patroni's leader")
    t_start = time.monotonic()

    try:
        # -- 1. the replicas, one at a time: stop Patroni, start pg_ha on the same data directory
        for node in c.nodes[1:]:
            stop_patroni(node)
            start_pg_ha(node)
            wait_for(lambda: runs_pg_ha(node) and node.streams_from(c.nodes[0]), timeout=120, interval=0.5,
                     description="pg_ha on %s to stream from Patroni's leader" % node.name)
            # Its member znode follows within a moment: Patroni's went with its
            # session, pg_ha's worker writes its own once it runs.
            wait_for(lambda: running_replica(members(c).get(node.member)), timeout=30, interval=0.5,
                     description="%s's member znode: a running replica" % node.member,
                     state=lambda: members(c).get(node.member))
            w.wait_more(50, "after %s moved to pg_ha" % node.name)
        assert c.leader_name() == "postgresql0" and not runs_pg_ha(c.nodes[0])

        # -- 2. the switchover: Patroni's leader hands over to a pg_ha member, in synchronous
        # mode to the synchronous standby (Patroni refuses any other: "candidate name does not
        # match with sync_standby")
        def sync_standby():
            k = c.zk_json("sync")
            name = ((k or {}).get("sync_standby") or "") if isinstance(k, dict) else ""
            return next((n for n in c.nodes[1:] if n.member == name), None)
        target = wait_for(sync_standby, timeout=60, interval=0.5,
                          description="Patroni's leader to name a pg_ha member its synchronous standby")
        ctl = c.base_dir / "patronictl.yml"
        ctl.write_text("scope: batman\nnamespace: /service/\nzookeeper:\n  hosts: [%s]\n"
                       % ", ".join("'%s'" % z.address for z in c.zookeepers))
        t_switch = time.monotonic()
        p = harness.run(["patronictl", "-c", ctl, "switchover", "--leader", "postgresql0",
                         "--candidate", target.member, "--force"], check=False, timeout=120)
        print(p.stdout + p.stderr)
        assert p.returncode == 0 and "Successfully switched over" in p.stdout, p.stdout + p.stderr
        wait_for(lambda: c.leader_name() == target.member and target.accepts_writes(), timeout=120,
                 interval=0.2, description="pg_ha's %s to lead after the switchover" % target.member)
        wait_for(lambda: c.nodes[0].streams_from(target), timeout=120, interval=0.5,
                 description="Patroni's postgresql0 to follow pg_ha's %s" % target.member)
        w.wait_more(50, "after the switchover")

        # -- 3. the old leader: stop Patroni, start pg_ha
        stop_patroni(c.nodes[0])
        start_pg_ha(c.nodes[0])
        new_primary = c.wait_healthy(timeout=TIMEOUT)
        assert new_primary is target, new_primary
        wait_for(lambda: all(runs_pg_ha(n) for n in c.nodes), timeout=60, interval=0.5,
                 description="pg_ha on every member")
        w.wait_more(50, "with every member on pg_ha")
    finally:
        w.finish()
    t_end = time.monotonic()

    # no data copied: the same system, the table from before, on every member
    for n in c.nodes:
        assert n.system_identifier() == sysid, n.name
    # no acknowledged row lost
    wait_for(lambda: all(n.sql_value("SELECT count(*) FROM migration_writes") >= len(w.acked) for n in c.nodes),
             timeout=60, interval=0.5, description="every member to replay the writer's rows")
    ids = {r[0] for r in new_primary.sql("SELECT id FROM migration_writes")}
    lost = [i for i, _ in w.acked if i not in ids]
    assert not lost, "acknowledged and lost: %s" % lost[:20]
    for n in c.nodes:
        assert n.sql_value("SELECT oid FROM pg_class WHERE relname = 'migration_writes'") == table_oid, n.name

    # one short outage: the switchover's
    outages = w.outages(1.0)
    print("migration: %.1f s, %d rows acknowledged, %d failed attempts; write outages over 1 s: %s "
          "(switchover requested at +%.1f s)" % (
              t_end - t_start, len(w.acked), len(w.failures),
              ["+%.1f s: %.2f s" % (a - t_start, d) for a, d in outages], t_switch - t_start))
    assert len(outages) <= 1, (outages, w.failures[:10])
    for a, d in outages:
        assert a >= t_switch - 1, "an outage before the switchover: %s" % ((a - t_start, d),)
        assert d < 30, "the switchover's write outage took %.1f s" % d
