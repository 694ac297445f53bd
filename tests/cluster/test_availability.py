"""No failover nobody asked for, no switchover that cannot succeed (issue 14, item 1).

One module cluster: REST basic auth on, pg-3 tagged nofailover, ttl 10 /
loop_wait 2 / retry_timeout 2 at start.

Switchover without a named candidate, on every path (SQL `ha_switchover()`,
REST POST /switchover with only {"leader": ...}, `pg_hactl switchover
--force`, `patronictl switchover --force`), each with a writer running: the
leader moves to another failover-eligible member within SWITCH_BOUND seconds,
no acknowledged row is lost, the split-brain checker sees nothing, the old
primary streams from the new one again. Before the fix the leader chose a
target but the `failover` key named nobody, so the old primary retook the free
lock and the call failed.

Leader restart at ttl 4, 20 and 30: a session's timeout is fixed at its
creation and a leader keeps its session when ttl changes, so each case sets
ttl, waits until the replicas reconnected with it (4th field of
$PGDATA/pg_ha.zksession), hands the leadership to one of them (candidate-less
SQL switchover) and then restarts that leader twice: POST /restart and
`pg_ctl stop -m fast` (the node's supervisor starts it again, as Docker's
restart policy would). Each time the same ZooKeeper session owns the leader
znode afterwards (stat.ephemeralOwner), the leader znode never names anyone
else, no node's timeline moves, only the restarted node acknowledges writes
and it does so again. Before the fix the resumed session asked for the
built-in 30 s, saw another ttl, and reconnected with a new session: the lock
was lost and a standby promoted.

A late restart (the supervisor out of the way, `pg_hactl boot` run by hand
2.5 s before the stopped leader's session would expire, ttl 10) keeps the
lock: the boot resumes the stopped worker's session, so the leader znode,
same owner, is still there 2.5 s after it would have expired, and the node
leads again.

Switchover right after a leader restart (`pg_ctl stop`, the supervisor
starts it again), asked for as soon as the leader accepts writes, while the
standbys' streams are still reconnecting: it succeeds, with a writer running
and no acknowledged row lost.

Clean stop of the primary, with the supervisor out of the way as for a host
stopped for good: `pg_hactl stop`, and a container stop (SIGINT, the image's
STOPSIGNAL, to docker/entrypoint.sh, which forwards a fast shutdown and then
runs `pg_hactl stop`). With a writer running: the leader znode names
the other eligible member within STOP_HANDOVER_BOUND seconds of the stop
command's end (the worker keeps its session for a restart; pg_hactl closes it
once the control file shows the clean shutdown), no acknowledged row is lost,
and the old primary, started again, streams from the new leader without a
rewind (the new leader had its shutdown checkpoint).

Timings are printed (run with -s to see them).
"""
import base64
import json
import os
import signal
import subprocess
import threading
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

REST_USER, REST_PASSWORD = "avadmin", "av-pass"
OP_USER, OP_PASSWORD = "av_operator", "op-pw"
TTL, LOOP_WAIT, RETRY_TIMEOUT = 10, 2, 2
NOFAILOVER = "pg-3"
ELIGIBLE = ("pg-1", "pg-2")
SWITCH_BOUND = 20.0          # s from the command to the new leader znode
STOP_HANDOVER_BOUND = 5.0    # s from the end of `pg_hactl stop` to the new leader znode (target ~2 s)
HEALTHY_TIMEOUT = 150
PG_HACTL = os.environ.get("PGHA_TEST_HACTL", str(harness.PG_HACTL))
PATRONICTL = "/usr/bin/patronictl"

TIMINGS = []                 # printed at the end of the module


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
        c.primary().sql("CREATE TABLE av_writes (id bigint PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())")
        c.primary().sql("CREATE ROLE %s LOGIN PASSWORD '%s' IN ROLE pgha_admin" % (OP_USER, OP_PASSWORD))
        wait_members_running(c)
    except BaseException:
        c.keep_dir = True
        c.teardown()
        raise
    yield c
    sys_out = "\n".join(TIMINGS)
    print("\n--- test_availability timings ---\n" + sys_out)
    if request.session.testsfailed > failures_before:
        c.keep_dir = True
    c.teardown()


# --------------------------------------------------------------------------
# helpers

def wait_members_running(c, timeout=HEALTHY_TIMEOUT):
    c.wait_healthy(timeout=timeout)
    wait_for(lambda: len(c.members()) == 3 and all((m or {}).get("state") == "running"
                                                   for m in c.members().values()),
             timeout=60, interval=0.3, description="every member znode to say running", state=c.diagnostics)
    time.sleep(c.dynamic_config().get("loop_wait", LOOP_WAIT) + 1)  # the leader's next read sees them too


class DirectWriter(harness.DirectWriter):
    """harness.DirectWriter on av_writes, with ack-time queries."""

    def __init__(self, c):
        super().__init__(c, "av_writes", "av-writer")

    def assert_no_loss(self, node):
        missing = self.missing_on(node)
        assert not missing, "acknowledged rows missing on %s: %r" % (node.name, missing[:10])

    def nodes(self, after=None):
        return {n for _, n, t in self.acked if after is None or t >= after}

    def first_ack(self, node, after):
        return next((t for _, n, t in self.acked if n == node and t >= after), None)

    def last_ack(self, node, before):
        return max((t for _, n, t in self.acked if n == node and t < before), default=None)

    def wait_ack(self, node, after, timeout):
        wait_for(lambda: self.first_ack(node, after) is not None, timeout=timeout, interval=0.1,
                 description="a write acknowledged by %s" % node, state=self.c.diagnostics)
        return self.first_ack(node, after)


def basic_auth():
    return "Basic " + base64.b64encode(("%s:%s" % (REST_USER, REST_PASSWORD)).encode()).decode()


def rest(node, method, path, body=None, timeout=70):
    req = urllib.request.Request("http://%s:8008%s" % (node.ip, path), method=method,
                                 data=json.dumps(body).encode() if body is not None else None)
    req.add_header("Content-Type", "application/json")
    req.add_header("Authorization", basic_auth())
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def sql_as(node, sql):
    conn = harness.pg_connect(node.ip, user=OP_USER, password=OP_PASSWORD, connect_timeout=3)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        conn.close()


def hactl_conf(c):
    path = c.base_dir / "av-hactl.conf"
    if not path.exists():
        path.write_text("\n".join([
            "pg_ha.scope = '%s'" % c.scope,
            "pg_ha.namespace = '%s'" % c.namespace,
            "pg_ha.zookeeper_hosts = '%s'" % ",".join(z.address for z in c.zookeepers),
            "pg_ha.restapi_username = '%s'" % REST_USER,
            "pg_ha.restapi_password = '%s'" % REST_PASSWORD,
            "pg_ha.restapi_allow_http_credentials = on", ""]))   # the test network speaks plain http
    return str(path)


def patronictl_conf(c):
    path = c.base_dir / "av-patronictl.yml"
    if not path.exists():
        path.write_text("\n".join([
            "scope: %s" % c.scope,
            "namespace: %s/" % c.namespace,
            "zookeeper:",
            "  hosts: [%s]" % ", ".join("'%s'" % z.address for z in c.zookeepers),
            "ctl:",
            "  authentication: {username: %s, password: %s}" % (REST_USER, REST_PASSWORD),
            "restapi:",
            "  authentication: {username: %s, password: %s}" % (REST_USER, REST_PASSWORD),
            ""]))
    return str(path)


def out(proc):
    return "rc=%s\nstdout:\n%s\nstderr:\n%s" % (proc.returncode, proc.stdout, proc.stderr)


def session_file(node):
    """(session id, timeout ms or None) from $PGDATA/pg_ha.zksession, or None."""
    try:
        fields = (node.data_dir / "pg_ha.zksession").read_text().split()
    except OSError:
        return None
    if len(fields) < 3 or fields[0] != node.name:
        return None
    return int(fields[1], 16), (int(fields[3]) if len(fields) > 3 else None)


def leader_owner(c):
    """(leader name, ephemeralOwner of the leader znode) or (None, 0)."""
    from kazoo.exceptions import NoNodeError
    try:
        data, stat = c.zk().get(c.zk_path("leader"))
    except NoNodeError:
        return None, 0
    return data.decode().strip(), stat.ephemeralOwner


def timelines(c):
    return {n.name: n.timeline() for n in c.nodes}


# --------------------------------------------------------------------------
# switchover without a candidate

def run_switchover(c, how, old):
    """Start a candidate-less switchover on path `how`; returns (reported target or None, detail)."""
    if how == "sql":
        got = sql_as(old, "SELECT ha_switchover()")[0][0]
        return got, "ha_switchover() -> %r" % got
    if how == "rest":
        st, body = rest(old, "POST", "/switchover", {"leader": old.name})
        assert st == 200 and body.startswith("Successfully switched over to "), (st, body)
        return body.split('"')[1], body
    if how == "pg_hactl":
        p = subprocess.run([PG_HACTL, "switchover", "--force", "--config", hactl_conf(c)],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=90)
        assert p.returncode == 0 and "switched over to" in p.stdout, out(p)
        return p.stdout.split('switched over to "', 1)[1].split('"', 1)[0], p.stdout.strip()
    if how == "patronictl":
        if not os.path.exists(PATRONICTL):
            pytest.fail("%s is missing (Debian package patroni)" % PATRONICTL)
        p = subprocess.run([PATRONICTL, "-c", patronictl_conf(c), "switchover", "--force"],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=90)
        assert p.returncode == 0, out(p)
        # The old leader stops only once its answer was written: patronictl gets it.
        assert "Successfully switched over to" in p.stdout, out(p)
        return p.stdout.split('Successfully switched over to "', 1)[1].split('"', 1)[0], p.stdout.strip()
    raise ValueError(how)


def switchover_without_candidate(c, how, during=None):
    """`during(old)`, if given, runs in a thread from the command's start until
    it returns (bounded by the caller)."""
    old = c.primary()
    assert old is not None and c.leader_name() == old.name
    log_before = len(old.log_path.read_text(errors="replace"))
    with SplitBrainChecker(c) as sb, DirectWriter(c) as w, c.leader_watch(interval=0.05) as watch:
        time.sleep(1.0)
        t0 = time.monotonic()
        error = None
        side = None
        if during is not None:
            side = threading.Thread(target=during, args=(old,), daemon=True)
            side.start()
        try:
            reported, detail = run_switchover(c, how, old)
        except (AssertionError, psycopg2.Error) as e:
            error, reported, detail = e, None, str(e)
        took = time.monotonic() - t0
        if side is not None:
            side.join(timeout=30)
            assert not side.is_alive(), "the side task did not end"
        # bounded: the leader znode names another member within SWITCH_BOUND s of the command
        try:
            wait_for(lambda: watch.first_time(lambda v: v and v != old.name, after=t0) is not None,
                     timeout=max(0.5, SWITCH_BOUND - (time.monotonic() - t0)), interval=0.1,
                     description="the leader to move off %s" % old.name, state=c.diagnostics)
        except AssertionError as e:
            raise AssertionError("%s switchover without candidate: command %.2f s, %s\n%s\n%s"
                                 % (how, took, detail, watch.describe(t0), e)) from None
        if error is not None:
            raise AssertionError("%s switchover: the leader moved but the command failed after %.2f s: %s"
                                 % (how, took, detail))
        t_leader = watch.first_time(lambda v: v and v != old.name, after=t0) - t0
        new = c.leader_name()
        assert new != old.name and new in ELIGIBLE, (new, watch.describe(t0))
        if reported is not None:
            assert reported == new, (reported, new, detail)
        wait_for(lambda: c.node(new).is_primary() and c.node(new).accepts_writes(), timeout=30, interval=0.2,
                 description="%s to accept writes" % new, state=c.diagnostics)
        t_first = w.wait_ack(new, t0, timeout=30)
        time.sleep(1.5)
    last_old = w.last_ack(old.name, t_first)
    outage = t_first - last_old if last_old is not None else None
    assert watch.values()[-2:] == [old.name, new], watch.describe(t0)
    line = ("switchover %-10s %s -> %s: command %.3f s, leader znode moved after %.3f s, writer outage %s, "
            "%d acks, %d failed attempts" % (how, old.name, new, took, t_leader,
                                              "%.3f s" % outage if outage is not None else "n/a",
                                              len(w.acked), len(w.failures)))
    TIMINGS.append(line)
    print("\n" + line)
    assert not sb.violations(), sb.summary() + "\n" + "\n".join(sb.violations())
    w.assert_no_loss(c.node(new))
    assert c.zk_get("failover") is None, c.zk_get("failover")
    wait_for(lambda: old.streams_from(c.node(new)), timeout=HEALTHY_TIMEOUT, interval=0.5,
             description="%s to stream from %s" % (old.name, new), state=c.diagnostics)
    # The old leader stopped cleanly and the new one promoted after its
    # shutdown checkpoint: it rejoins without pg_rewind (this switchover's
    # log only: an earlier test's rewind is not this one's).
    since = old.log_path.read_text(errors="replace")[log_before:]
    assert "servers diverged" not in since and "rewinding" not in since, since[-4000:]
    assert "no rewind needed" in since, since[-4000:]
    wait_members_running(c)
    return old.name, new


@pytest.mark.parametrize("how", ["sql", "rest", "pg_hactl", "patronictl"])
def test_switchover_without_candidate(cluster, how):
    switchover_without_candidate(cluster, how)


# --------------------------------------------------------------------------
# leader restart keeps leadership at any ttl

def restart_leader(c, p, how, ttl):
    """Restart the leader `p` one way; asserts it keeps its session and lock."""
    sess = session_file(p)
    name, owner = leader_owner(c)
    assert name == p.name and sess is not None and sess[0] == owner, (name, owner, sess)
    assert sess[1] == ttl * 1000, "leader %s's session was created with %s ms, not ttl %d s" % (p.name, sess[1], ttl)
    tl_before = timelines(c)
    pm_before = p.postmaster_pid()
    with SplitBrainChecker(c) as sb, DirectWriter(c) as w, c.leader_watch(interval=0.05) as watch:
        w.wait_ack(p.name, time.monotonic() - 60, timeout=30)
        time.sleep(1.0)
        t0 = time.monotonic()
        if how == "rest":
            st, body = rest(p, "POST", "/restart", {})
            assert st == 200, (st, body)
        else:
            p.restart_postgres("fast")
        t_cmd = time.monotonic() - t0
        wait_for(lambda: p.postmaster_pid() not in (None, pm_before), timeout=60, interval=0.1,
                 description="%s's postmaster restarted" % p.name, state=c.diagnostics)
        t_pm = time.monotonic()
        wait_for(lambda: p.is_primary() and p.accepts_writes(), timeout=90, interval=0.1,
                 description="%s back as primary" % p.name, state=c.diagnostics)
        t_back = time.monotonic() - t0
        t_ack = w.wait_ack(p.name, t_pm, timeout=30)
        time.sleep(max(2.0, c.dynamic_config().get("loop_wait", LOOP_WAIT) + 1.0))
    gaps = [b[2] - a[2] for a, b in zip(w.acked, w.acked[1:])]
    line = ("restart ttl %2d %-6s %s: command %.2f s, /primary+write back %.2f s, first writer ack %.2f s, "
            "longest ack gap %.2f s, leader znode: %s"
            % (ttl, how, p.name, t_cmd, t_back, t_ack - t0, max(gaps) if gaps else -1, watch.describe(t0)))
    TIMINGS.append(line)
    print("\n" + line)
    name_after, owner_after = leader_owner(c)
    assert name_after == p.name, "leader after the restart: %s\n%s" % (name_after, line)
    assert watch.values() == [p.name], "the leader znode named someone else: " + watch.describe(t0)
    assert owner_after == owner, ("the leader znode's owner changed 0x%x -> 0x%x (a new session: the lock was lost "
                                  "and retaken)\n%s\n%s" % (owner, owner_after, line, p.log_tail(60)))
    # no standby promoted: both still in recovery and streaming from p again, on the same timeline
    wait_for(lambda: all(n.streams_from(p) for n in c.nodes if n is not p), timeout=60, interval=0.3,
             description="the standbys to stream from %s again" % p.name, state=c.diagnostics)
    assert timelines(c) == tl_before, (tl_before, timelines(c))
    assert w.nodes() == {p.name}, "writes acknowledged by %s" % w.nodes()
    assert not sb.violations(), sb.summary() + "\n" + "\n".join(sb.violations())
    assert {a.node for a in sb.acks()} == {p.name}, sb.summary()
    w.assert_no_loss(p)
    wait_members_running(c)


def test_late_restart_boot_keeps_the_lock(cluster):
    """A restart whose boot starts late and then needs more than what is left
    of ttl keeps the lock: pg_hactl boot resumes the stopped worker's saved
    ZooKeeper session first thing, which restarts ZooKeeper's expiry clock for
    it. (CI on a loaded machine measured a 4.9 s restart at ttl 4 losing the
    lock to a standby.) The supervisor is out of the way: the leader's server
    stops, `pg_hactl boot` runs by hand 2.5 s before the session would
    expire, the leader znode is checked 2.5 s after it would have (ZooKeeper
    expires a session up to one tickTime, 2 s here, late), then the node
    starts and leads again,
    all with the same session. Runs at the module's first ttl (10 s, the
    leader's session timeout is read from its session file)."""
    c = cluster
    wait_members_running(c)
    p = c.primary()
    name, owner = leader_owner(c)
    sess = session_file(p)
    assert p is not None and name == p.name and owner and sess and sess[0] == owner, (p, name, owner, sess)
    ttl = (sess[1] or TTL * 1000) / 1000.0
    p.stop_supervisor()
    p.restart_postgres("fast")     # pg_ctl stop; nothing starts it again
    t_down = time.monotonic()
    time.sleep(max(0.0, ttl - 2.5))
    boot = p.host.exec(["runuser", "-u", "postgres", "--", PG_HACTL, "boot", "--config", p.config_file,
                        "--pgdata", p.data_dir], env=p.env(), check=False, timeout=60)
    said = (boot.stdout or "") + (boot.stderr or "")
    t_boot = time.monotonic() - t_down
    assert boot.returncode == 0, said
    assert "resumed ZooKeeper session" in said, said
    time.sleep(max(0.0, t_down + ttl + 2.5 - time.monotonic()))
    after = leader_owner(c)
    TIMINGS.append("late boot, session timeout %.0f s: pg_hactl boot ended %.2f s after the stop; leader znode "
                   "%.2f s after the stop: %s" % (ttl, t_boot, time.monotonic() - t_down, after[0]))
    assert after == (name, owner), ("the leader znode %.0f s after the stop: %s (was %s, 0x%x)\n%s"
                                    % (ttl + 2.5, after, name, owner, said))
    p.start_host()
    wait_for(lambda: p.is_primary() and p.accepts_writes(), timeout=90, interval=0.1,
             description="%s back as primary" % p.name, state=c.diagnostics)
    assert leader_owner(c) == (name, owner), leader_owner(c)
    wait_members_running(c)


@pytest.mark.parametrize("ttl", [30, 20, 4])
def test_leader_restart_keeps_leadership(cluster, ttl):
    c = cluster
    loop_wait = retry = 1 if ttl < 10 else 2
    c.set_dynamic_config({"ttl": ttl, "loop_wait": loop_wait, "retry_timeout": retry})
    leader = c.leader_name()
    replicas = [n for n in c.nodes if n.name != leader]
    # A leader keeps its session when ttl changes; the replicas reconnect with it.
    wait_for(lambda: all((session_file(n) or (0, 0))[1] == ttl * 1000 for n in replicas), timeout=60,
             interval=0.5, description="the replicas' sessions to be created with ttl %d s" % ttl,
             state=lambda: {n.name: session_file(n) for n in c.nodes})
    wait_members_running(c)
    # hand the lock to a member whose session has this ttl
    switchover_without_candidate(c, "sql")
    p = c.primary()
    restart_leader(c, p, "rest", ttl)
    restart_leader(c, p, "pg_ctl", ttl)


def break_streams_until_fenced(p):
    """Terminate p's walsenders every 50 ms until p refuses new sessions (its
    switchover fence), bounded: the standbys are then reconnecting while the
    old leader is fenced (a standby retries at once after a long-working stream
    broke, then only every wal_retrieve_retry_interval)."""
    broken, end = 0, time.monotonic() + 15
    while time.monotonic() < end:
        try:
            broken += p.sql_value("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_replication", timeout=2)
        except psycopg2.OperationalError as e:
            # refused: fenced (or already past it: shutting down, restarting)
            TIMINGS.append("streams broken until %s refused sessions (%s): %d walsenders terminated"
                           % (p.name, str(e).strip().splitlines()[-1][:80], broken))
            return
        time.sleep(0.05)
    raise AssertionError("%s was not fenced within 15 s of the switchover request" % p.name)


def test_switchover_right_after_leader_restart(cluster):
    """A switchover asked for as soon as a restarted leader accepts writes again,
    with the standbys' streams broken up to the moment the old leader fences,
    so they are reconnecting while it is fenced. Issue 14 measured every
    switchover shortly after a leader restart aborting: the fenced old leader
    refused the candidate's stream, then gave up after 10 s. A fenced node now
    admits physical replication connections."""
    c = cluster
    wait_members_running(c)
    p = c.primary()
    assert p is not None and p.name in ELIGIBLE, p
    pm = p.postmaster_pid()
    p.restart_postgres("fast")     # the supervisor starts it again; it keeps the lock
    wait_for(lambda: p.postmaster_pid() not in (None, pm) and p.is_primary() and p.accepts_writes(), timeout=90,
             interval=0.05, description="%s back as primary" % p.name, state=c.diagnostics)
    # A bgwriter logs its first standby snapshot (RUNNING_XACTS) 15 s after it
    # starts, whatever happened. Landing between the lock release and the
    # immediate shutdown, that record made the old leader need a rewind in one
    # CI run (known weakness, see the README's switchover paragraph): start
    # the switchover after it.
    up = p.sql_value("SELECT extract(epoch FROM now() - pg_postmaster_start_time())")
    time.sleep(max(0.0, 16.0 - float(up)))
    # Break the standbys' streams twice, so that they reconnect while the
    # switchover starts.
    p.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_replication")
    wait_for(lambda: all(n.streams_from(p) for n in c.nodes if n is not p), timeout=30, interval=0.05,
             description="the standbys to stream again", state=c.diagnostics)
    p.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_replication")
    streaming = [n.name for n in c.nodes if n is not p and n.streams_from(p)]
    TIMINGS.append("switchover right after a restart of %s: standbys streaming at the request: %s"
                   % (p.name, streaming or "none"))
    switchover_without_candidate(c, "sql", during=break_streams_until_fenced)


def test_switchover_to_a_member_right_after_it_rejoined(cluster):
    """Issue 14 item 2: a restarted standby is published "running" as soon as
    it accepts connections (it was "starting" for a whole loop_wait while it
    already streamed, and a switchover to it was refused with 412 "is not
    running"). The standby is restarted, and a switchover naming it is asked
    for the moment the leader sees it stream."""
    c = cluster
    wait_members_running(c)
    p = c.primary()
    s = c.node(next(n for n in ELIGIBLE if n != p.name))
    pm = s.postmaster_pid()
    s.restart_postgres("fast")  # the supervisor starts it again
    wait_for(lambda: s.postmaster_pid() not in (None, pm), timeout=60, interval=0.05,
             description="%s's postmaster restarted" % s.name, state=c.diagnostics)
    t0 = time.monotonic()
    wait_for(lambda: s.streams_from(p), timeout=60, interval=0.02,
             description="%s to stream from %s again" % (s.name, p.name), state=c.diagnostics)
    t_stream = time.monotonic() - t0
    published = (c.members().get(s.name) or {}).get("state")
    wait_for(lambda: (c.members().get(s.name) or {}).get("state") == "running", timeout=30, interval=0.02,
             description="%s's member znode to say running" % s.name, state=c.diagnostics)
    t_running = time.monotonic() - t0
    line = ("rejoined standby %s: streaming %.2f s after its postmaster, member znode said %r then, running "
            "%.2f s after its postmaster (loop_wait %s s)" % (s.name, t_stream, published, t_running,
                                                             c.dynamic_config().get("loop_wait", LOOP_WAIT)))
    TIMINGS.append(line)
    print("\n" + line)
    # Asked for at once: the leader reads the cluster before it checks.
    got = sql_as(p, "SELECT ha_switchover('%s')" % s.name)[0][0]
    assert got == s.name, (got, line)
    wait_for(lambda: c.leader_name() == s.name and s.is_primary() and s.accepts_writes(), timeout=SWITCH_BOUND,
             interval=0.1, description="%s to lead" % s.name, state=c.diagnostics)
    assert t_running - t_stream < 1.0, "the member znode said running %.2f s after the stream: %s" % (
        t_running - t_stream, line)
    wait_for(lambda: p.streams_from(s), timeout=HEALTHY_TIMEOUT, interval=0.5,
             description="%s to stream from %s" % (p.name, s.name), state=c.diagnostics)
    wait_members_running(c)


def test_a_standby_sees_another_members_news_at_once(cluster):
    """Issue 14 items 2 and 4: a standby leaves no watch on member rows
    (positions, written every loop_wait, are read by the leader alone, so
    ZooKeeper's load stays linear in the members); a member's news (state,
    role, timeline, tags, pending_restart) replaces its row in one
    transaction (same session, new znode), which every member's watch on
    members/ sees. Here the news is a restart-only parameter changed on one
    standby: the other standby's /cluster shows it within a second of the
    znode, and again when it is undone."""
    c = cluster
    wait_members_running(c)
    p = c.primary()
    s = c.node(NOFAILOVER)
    t = c.node(next(n for n in ELIGIBLE if n != p.name))
    zpath = c.zk_path("members", s.name)

    def znode():
        data, stat = c.zk().get(zpath)
        return bool(json.loads(data.decode()).get("pending_restart")), stat

    def seen_by_t():
        code, body = rest(t, "GET", "/cluster", timeout=3)
        assert code == 200, (code, body)
        row = next((m for m in json.loads(body).get("members", []) if m.get("name") == s.name), None)
        assert row is not None, body
        return bool(row.get("pending_restart"))

    def follow(want, what):
        t0 = time.monotonic()
        z_at = v_at = None
        for _ in range(3000):  # 60 s at 20 ms
            now = time.monotonic() - t0
            if z_at is None and znode()[0] == want:
                z_at = now
            if v_at is None and seen_by_t() == want:
                v_at = now
            if z_at is not None and v_at is not None:
                break
            time.sleep(0.02)
        line = "%s: %s's znode after %s s, %s's /cluster after %s s" % (
            what, s.name, "%.2f" % z_at if z_at is not None else "never", t.name,
            "%.2f" % v_at if v_at is not None else "never")
        TIMINGS.append(line)
        print("\n" + line)
        assert z_at is not None and v_at is not None, line
        assert v_at - z_at < 1.0, line

    before, stat0 = znode()
    assert not before and not seen_by_t()
    try:
        s.sql("ALTER SYSTEM SET shared_buffers = '129MB'")
        s.sql("SELECT pg_reload_conf()")
        follow(True, "pending_restart set")
        _, stat1 = znode()
        assert stat1.ephemeralOwner == stat0.ephemeralOwner, "the same session"
        assert stat1.czxid != stat0.czxid, "the news replaced the znode (a set would reach the leader alone)"
    finally:
        s.sql("ALTER SYSTEM RESET shared_buffers")
        s.sql("SELECT pg_reload_conf()")
    follow(False, "pending_restart cleared")
    wait_members_running(c)


# --------------------------------------------------------------------------
# clean stop of the primary

@pytest.mark.parametrize("how", ["pg_hactl", "container_stop"])
def test_clean_stop_hands_over_at_once(cluster, how):
    c = cluster
    wait_members_running(c)
    old = c.primary()
    assert old is not None and old.name in ELIGIBLE, old
    other = next(n for n in ELIGIBLE if n != old.name)
    # A host stopped for good: nothing restarts PostgreSQL (kill the supervisor loop only).
    old.stop_supervisor()
    log_before = len(old.log_path.read_text(errors="replace"))
    with SplitBrainChecker(c) as sb, DirectWriter(c) as w, c.leader_watch(interval=0.05) as watch:
        time.sleep(1.0)
        t0 = time.monotonic()
        if how == "pg_hactl":
            p = old.host.exec(["runuser", "-u", "postgres", "--", PG_HACTL, "stop", "--config",
                               str(old.config_file), "--pgdata", str(old.data_dir)], timeout=120, check=False)
            t_stopped = time.monotonic()
            assert p.returncode == 0, out(p)
            assert "released the leader lock" in p.stderr, out(p)
        else:
            # `docker stop`: the image's STOPSIGNAL (SIGINT) to the entrypoint, PID 1 of the container
            entry = old.process_pids("docker/entrypoint.sh")
            assert len(entry) == 1, entry
            os.kill(entry[0], signal.SIGINT)
            wait_for(lambda: not old.process_pids("docker/entrypoint.sh"), timeout=60, interval=0.02,
                     description="%s's entrypoint to exit" % old.name, state=c.diagnostics)
            t_stopped = time.monotonic()
            assert "released the leader lock" in old.log_path.read_text(errors="replace")[log_before:], \
                old.log_tail(30)
        wait_for(lambda: watch.first_time(lambda v: v == other, after=t0) is not None,
                 timeout=STOP_HANDOVER_BOUND + 10, interval=0.05,
                 description="%s to take the leader lock" % other, state=c.diagnostics)
        t_leader = watch.first_time(lambda v: v == other, after=t0)
        t_first = w.wait_ack(other, t0, timeout=30)
        time.sleep(1.0)
    last_old = w.last_ack(old.name, t_first)
    line = ("clean stop of %s (%s): the stop took %.3f s, leader znode names %s %.3f s after it ended, "
            "writer outage %s" % (old.name, how, t_stopped - t0, other, t_leader - t_stopped,
                                  "%.3f s" % (t_first - last_old) if last_old is not None else "n/a"))
    TIMINGS.append(line)
    print("\n" + line)
    assert t_leader - t_stopped <= STOP_HANDOVER_BOUND, line + "\n" + watch.describe(t0)
    assert not sb.violations(), sb.summary() + "\n" + "\n".join(sb.violations())
    w.assert_no_loss(c.node(other))
    # stopped for good: nothing started it again, and the lock did not come back
    time.sleep(2.0)
    assert old.postmaster_pid() is None, "%s runs again" % old.name
    assert c.leader_name() == other, c.leader_name()
    # started again: a standby of the new leader, without a rewind
    wait_for(lambda: old.supervisor is None or old.supervisor.poll() is not None, timeout=10, interval=0.1,
             description="%s's old reaper to exit" % old.name)
    old.start_host()
    wait_for(lambda: old.streams_from(c.node(other)), timeout=HEALTHY_TIMEOUT, interval=0.5,
             description="%s to stream from %s" % (old.name, other), state=c.diagnostics)
    since = old.log_path.read_text(errors="replace")[log_before:]
    # (pg_rewind prints "servers diverged at <fork>" also when the fork is after the local WAL)
    assert "pg_hactl: diverged:" not in since and "rewinding from last common checkpoint" not in since, since[-3000:]
    assert "no rewind required" in since or "no rewind needed" in since, since[-3000:]
    wait_members_running(c)
