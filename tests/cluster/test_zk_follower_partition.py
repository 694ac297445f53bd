"""The lease must not outlive the ZooKeeper session when the primary's
ZooKeeper client sits on a follower that is cut from the ZooKeeper leader
(pg_ha issue 9 item 1; review 2026-12-01-reliability F1 and section 2.3).

Only the ZooKeeper leader expires sessions. A follower cut from it keeps
answering reads from its own replica until its socket to the leader times out
(syncLimit x tickTime = 5 x 2000 ms = 10 s here), so a renewal that is a plain
read answered by that follower proves nothing about the session on the
leader: the primary's lease could run up to about 8 s past the session's
expiry, i.e. past the election of a new primary.

Layout (one module cluster): a 3-server ensemble (tickTime 2000, syncLimit 5:
the harness defaults), 3 PostgreSQL nodes, ttl 10 / loop_wait 2 /
retry_timeout 2 in the `config` znode (as test_failover.py), lease margin 2 s
(default). Before the nodes start the ZooKeeper leader L is read with 'srvr';
of the two followers, F is the only server pg-1 may use
(PGHA_ZOOKEEPER_HOSTS=F) and the standbys may use only L and the other
follower T. pg-1 bootstraps and leads; 'cons' on F confirms its session is
there. The test's own kazoo client (leader watch, znode reads) talks only to
L and T, so the election time is read from the majority side.

Partition (nftables in the namespaces of pg-1 and F; the test process still
reaches both): {pg-1, F} | {L, T, pg-2, pg-3}.
  (a) the split-brain writers commit on every node through the partition;
  (b) pg-1 is idle at the cut (its rows replicated), and a writer starts on
      pg-1 only once another member's leader znode appeared (the shape where
      the review measured 200-548 acknowledged commits lost).
Both assert: no commit acknowledged by pg-1 at or after the election (the
first poll, every 50 ms, that saw another member in the leader znode), the
split-brain checker's verdict, and after healing (pg-1 rejoins as a standby of
the new primary) every row pg-1 acknowledged is on the new primary, except in
(a) the rows acknowledged between the cut and pg-1's fencing, before the
election: asynchronous replication loses those whatever the lease does, so
they are only counted (they must be acknowledged before the election).
Variant (b) first switches the leadership back to pg-1 (REST /switchover).

Why (b) is the sharp one: a leader that writes to ZooKeeper after the cut
(a new optime in `status`, its member znode) has that write forwarded to the
unreachable leader, and ZooKeeper answers a session's later reads only after
its earlier writes, so its plain-read renewals stop too and the old lease ends
about ttl - margin after the cut. Only an idle primary keeps getting read
answers from the follower. Measured before "lease: renewals" (engine 94a02c5):
(a) passed twice (last ack 8.6 / 9.8 s after the cut, election 9.6 / 11.3 s);
(b) failed twice, with 454 / 603 commits acknowledged after the election
(10.6 / 10.0 s after the cut) up to 17.1 / 17.0 s after the cut, none of them
on the new primary. After it: (a) last ack 6.1-7.9 s after the cut, (b) the
old primary fenced before the election, 0 acknowledged.
"""
import contextlib
import json
import threading
import time
import urllib.error
import urllib.request

import psycopg2
import pytest

import harness
from conftest import BOOTSTRAP_TIMEOUT
from harness import wait_for
from splitbrain import Ack, NodeWriter, SplitBrainChecker

pytestmark = pytest.mark.needs_pg_ha

TTL, LOOP_WAIT, RETRY_TIMEOUT = 10, 2, 2
FAST = {"ttl": TTL, "loop_wait": LOOP_WAIT, "retry_timeout": RETRY_TIMEOUT}
SYNC_LIMIT_MS = 5 * 2000       # harness zoo.cfg: syncLimit=5, tickTime=2000
# Session expiry on the ZooKeeper leader (<= ttl + a tick), peers check, take the lock; 2 cores.
FAILOVER_TIMEOUT = TTL + 5 * LOOP_WAIT + 20
# Without the fix the lease can run to about cut + syncLimit x tickTime + ttl - margin
# (18 s): keep watching pg-1 until well past that.
WATCH_UNTIL = SYNC_LIMIT_MS / 1000.0 + TTL + 4
REJOIN_TIMEOUT = 150           # fence, restart, pg_rewind, stream
ASYNC_SLACK = 1.0              # rows acked this long before the cut have surely replicated
IDLE_QUIET = 16.0              # > the bgwriter's standby-snapshot interval (15 s)
IDLE_TIMEOUT = 60.0


# --------------------------------------------------------------------------
# helpers

def check(cond, msg, c, *extra):
    if not cond:
        parts = [msg] + [e() if callable(e) else str(e) for e in extra] + [c.diagnostics(60)]
        raise AssertionError("\n".join(parts))


class Layout:
    """Which ZooKeeper server plays which part."""

    def __init__(self, c):
        self.leader = wait_for(c.zk_leader, timeout=30, interval=0.5, description="a ZooKeeper leader",
                               state=lambda: {z.host.hostname: z.mode() for z in c.zookeepers})
        check(self.leader.mode() == "leader", "ZooKeeper server %r is %s, not an ensemble leader"
              % (self.leader, self.leader.mode()), c)
        self.follower, self.third = [z for z in c.zookeepers if z is not self.leader]
        self.majority_zk = [self.leader, self.third]

    def describe(self):
        return "ZooKeeper: leader %s, primary's follower %s, third %s" % (
            self.leader.host.hostname, self.follower.host.hostname, self.third.host.hostname)


def zk_hosts(servers):
    return ",".join("%s:%d" % (z.host.hostname, harness.ZK_CLIENT_PORT) for z in servers)


@pytest.fixture(scope="module")
def f1(request, require_pg_ha):
    failures_before = request.session.testsfailed
    c = harness.Cluster(zk_servers=3, haproxy=False, dynamic_config=FAST)
    try:
        c.setup()
        c.start_zookeeper()
        lay = Layout(c)
        c.node("pg-1").extra_env["PGHA_ZOOKEEPER_HOSTS"] = zk_hosts([lay.follower])
        for n in ("pg-2", "pg-3"):
            c.node(n).extra_env["PGHA_ZOOKEEPER_HOSTS"] = zk_hosts(lay.majority_zk)
        c.observe_zookeepers(lay.majority_zk)
        c.start_nodes(["pg-1"])
        c.wait_for_primary(timeout=BOOTSTRAP_TIMEOUT, nodes=["pg-1"])
        c.start_nodes(["pg-2", "pg-3"])
        c.wait_healthy(timeout=BOOTSTRAP_TIMEOUT)
    except BaseException:
        c.keep_dir = True
        c.teardown()
        raise
    yield c, lay
    if request.session.testsfailed > failures_before:
        c.keep_dir = True
    c.teardown()


def members_running(c):
    m = c.members()
    return len(m) == 3 and all(v.get("state") == "running" for v in m.values())


def make_pg1_primary(c):
    """Healthy cluster led by pg-1 (a REST switchover if someone else leads)."""
    c.wait_healthy(timeout=REJOIN_TIMEOUT)
    p = c.primary()
    if p.name != "pg-1":
        wait_for(lambda: members_running(c), timeout=60, interval=0.3,
                 description="every member znode to say running", state=c.diagnostics)
        time.sleep(LOOP_WAIT + 1)           # the leader's view has them too
        body = json.dumps({"leader": p.name, "candidate": "pg-1"}).encode()
        req = urllib.request.Request("http://%s:8008/switchover" % p.ip, method="POST", data=body,
                                     headers=dict(harness.rest_auth_header(), **{"Content-Type": "application/json"}))
        try:
            with urllib.request.urlopen(req, timeout=70) as r:
                st, text = r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            st, text = e.code, e.read().decode()
        check(st == 200, "switchover %s -> pg-1 answered %s %s" % (p.name, st, text), c)
        wait_for(lambda: c.node("pg-1").is_primary() and c.node("pg-1").accepts_writes(), timeout=60,
                 interval=0.3, description="pg-1 primary after the switchover", state=c.diagnostics)
        c.wait_healthy(timeout=REJOIN_TIMEOUT)
    return c.node("pg-1")


def check_layout(c, lay, old):
    """ZooKeeper roles unchanged and the primary's session on the follower only."""
    modes = {z.host.hostname: z.mode() for z in c.zookeepers}
    check(lay.leader.mode() == "leader" and lay.follower.mode() == "follower",
          "ZooKeeper modes changed: %s (%s)" % (modes, lay.describe()), c)

    def on_follower():
        return old.ip in lay.follower.client_ips() and not any(old.ip in z.client_ips() for z in lay.majority_zk)
    wait_for(on_follower, timeout=30, interval=0.5,
             description="%s's ZooKeeper session on %s only" % (old.name, lay.follower.host.hostname),
             state=lambda: {z.host.hostname: z.client_ips() for z in c.zookeepers})


def caught_up(c, old, standbys):
    """Every standby replayed everything pg-1 wrote so far."""
    target = old.current_lsn()
    for s in standbys:
        wait_for(lambda s=s: harness.lsn_to_int(s.sql_value("select pg_last_wal_replay_lsn()::text")) >= target,
                 timeout=30, interval=0.2, description="%s replayed up to %d" % (s.name, target),
                 state=c.diagnostics)


def wait_idle(c, old, quiet=IDLE_QUIET, timeout=IDLE_TIMEOUT):
    """pg-1's WAL position unchanged for `quiet` seconds and published in the
    status znode, so its next HA loops write nothing to ZooKeeper. (A leader
    that writes, e.g. a new optime, queues its later reads behind a write the
    cut-off follower cannot commit, which ends the old lease early: only an
    idle primary shows F1.) `quiet` outlasts the bgwriter's 15 s standby
    snapshot, the last WAL record after activity."""
    st = {"lsn": None, "since": None}

    def idle():
        lsn, now = old.current_lsn(), time.monotonic()
        if lsn != st["lsn"]:
            st["lsn"], st["since"] = lsn, now
            return None
        return lsn if now - st["since"] >= quiet and c.status_optime() == lsn else None
    return wait_for(idle, timeout=timeout, interval=0.5,
                    description="%s idle (WAL position unchanged for %.0fs and in the status znode)"
                    % (old.name, quiet),
                    state=lambda: "lsn %s since %.1fs, status optime %s" % (
                        st["lsn"], time.monotonic() - (st["since"] or 0), c.status_optime()))


def cut(old, lay, standbys):
    """{pg-1, F} | {L, T, standbys}; returns the time the cut was complete."""
    majority = [z.host for z in lay.majority_zk] + [s.host for s in standbys]
    old.host.isolate("nft", peers=majority, allow_observer=True)
    lay.follower.host.isolate("nft", peers=majority, allow_observer=True)
    return time.monotonic()


def heal(old, lay):
    lay.follower.host.heal()
    old.host.heal()


def wait_new_leader(c, lw, old, after):
    def elected():
        v = lw.current()
        return v if v and v != old.name else None
    name = wait_for(elected, timeout=FAILOVER_TIMEOUT, interval=0.05,
                    description="a leader znode naming another member than %s" % old.name,
                    state=lambda: lw.describe(after) + "\n" + c.diagnostics(60))
    return c.node(name), lw.first_time(lambda v: v == name, after=after)


def wait_promoted(c, node, timeout=30):
    wait_for(lambda: node.is_primary() and node.in_recovery() is False and node.accepts_writes(),
             timeout=timeout, interval=0.2, description="%s promoted and writable" % node.name,
             state=c.diagnostics)


def wait_rejoined(c, old, new):
    def streaming():
        return old.streams_from(new) and old.is_replica() and any(
            r["client_addr"] == old.ip and r["state"] == "streaming" for r in new.replication_rows())
    wait_for(streaming, timeout=REJOIN_TIMEOUT, interval=0.5,
             description="%s streaming from %s after the heal" % (old.name, new.name), state=c.diagnostics)


def missing_on(new, node_name, acks):
    """Acks of node_name whose row is not on `new` (rows are matched by id and writer node:
    two primaries' sequences can hand out the same id)."""
    have = {r[0] for r in new.sql("select id from splitbrain_t where node = %s", (node_name,))}
    return [a for a in acks if a.row_id not in have]


def fmt(acks, t0, n=5):
    return "[%s]" % ", ".join("id %s at %+.3fs" % (a.row_id, a.acked - t0) for a in acks[:n]) + (
        " ..." if len(acks) > n else "")


class PreConnectedWriter(NodeWriter):
    """splitbrain.NodeWriter whose first connection is opened (and left idle)
    before start(), so commits after the election test the lease itself even
    when the old primary already refuses new connections; reconnects after
    errors like NodeWriter."""

    def __init__(self, node, interval, stop_event):
        super().__init__(node, interval, stop_event)
        self.conn = harness.pg_connect(node.ip, node.port, connect_timeout=self.connect_timeout,
                                       statement_timeout_ms=self.statement_timeout_ms,
                                       application_name="splitbrain-late")

    def run(self):
        conn, self.conn = self.conn, None
        end = time.monotonic() + 300
        while not self.stop_event.is_set() and time.monotonic() < end:
            if conn is None:
                try:
                    conn = harness.pg_connect(self.node.ip, self.node.port, connect_timeout=self.connect_timeout,
                                              statement_timeout_ms=self.statement_timeout_ms,
                                              application_name="splitbrain-late")
                except psycopg2.Error as exc:
                    self._error(exc)
                    self.stop_event.wait(0.2)
                    continue
            self.attempts += 1
            sent = time.monotonic()
            try:
                with conn.cursor() as cur:
                    cur.execute("select o_id, o_tl from splitbrain_write(%s)", (self.node.name,))
                    row_id, tl = cur.fetchone()
                acked = time.monotonic()
            except psycopg2.Error as exc:
                self._error(exc)
                with contextlib.suppress(psycopg2.Error):
                    conn.close()
                conn = None
                self.stop_event.wait(0.1)
                continue
            if row_id is None:
                self.standby_polls += 1
            else:
                with self.lock:
                    self.acks.append(Ack(self.node.name, int(tl, 16), sent, acked, row_id))
            self.stop_event.wait(self.interval)
        if conn is not None:
            with contextlib.suppress(psycopg2.Error):
                conn.close()


# --------------------------------------------------------------------------
# (a) writer through the partition

def test_writer_through_follower_partition_no_ack_after_election(f1):
    """Split-brain writers on every node commit every ~20 ms through the
    partition {pg-1, its ZooKeeper follower} | {ZooKeeper leader, third server,
    pg-2, pg-3}: pg-1 acknowledges nothing at or after the new leader's
    election, the checker sees one writer at a time, and after the heal every
    row pg-1 acknowledged up to 1 s before the cut, and every row the new
    primary acknowledged, is on the new primary."""
    c, lay = f1
    old = make_pg1_primary(c)
    standbys = [n for n in c.nodes if n is not old]
    check_layout(c, lay, old)
    with SplitBrainChecker(c) as sb, c.leader_watch() as lw:
        sb.wait_acks(old, 50)
        caught_up(c, old, standbys)
        t_cut = None
        try:
            t_cut = cut(old, lay, standbys)
            new, t_elect = wait_new_leader(c, lw, old, t_cut)
            wait_promoted(c, new)
            sb.wait_acks(new, 5, after=t_elect)
            time.sleep(max(0.0, t_cut + WATCH_UNTIL - time.monotonic()))
            late = sb.acks_after(old, t_elect)
            last_old = sb.last_ack(old)
            window = [a for a in sb.acks(old) if a.acked >= t_cut]
            lost_pre = missing_on(new, old.name, window)
            summary = ("follower partition (a): %s; new leader %s %.2fs after the cut; pg-1's last ack %+.3fs; "
                       "%d acks by pg-1 after the cut, %d of them at or after the election (%s); %d of the "
                       "after-cut acks not on %s before the heal"
                       % (lay.describe(), new.name, t_elect - t_cut, last_old.acked - t_cut, len(window),
                          len(late), fmt(late, t_cut), len(lost_pre), new.name))
            print("\n" + summary)
            check(not late, "%s acknowledged %d commits at or after the election of %s (%.3fs after the cut), "
                  "last %.3fs after the cut: the lease outlived the ZooKeeper session. %s"
                  % (old.name, len(late), new.name, t_elect - t_cut, last_old.acked - t_cut, summary),
                  c, lw.describe(t_cut), sb.summary)
            first_new = sb.first_ack(new, after=t_cut)
            check(last_old.acked < first_new.sent, "pg-1's last ack (%+.3fs) not before %s's first write was sent "
                  "(%+.3fs)" % (last_old.acked - t_cut, new.name, first_new.sent - t_cut), c, sb.summary)
        finally:
            heal(old, lay)
        wait_rejoined(c, old, new)
        sb.wait_acks(new, 5)
    print(sb.summary())
    sb.check()
    old_acks = sb.acks(old)
    lost = missing_on(new, old.name, old_acks)
    early = [a for a in lost if a.acked < t_cut - ASYNC_SLACK]
    check(not early, "%d rows pg-1 acknowledged more than %.1fs before the cut are missing on %s: %s"
          % (len(early), ASYNC_SLACK, new.name, fmt(early, t_cut)), c)
    check(all(a.acked < t_elect for a in lost), "rows pg-1 acknowledged after the election are missing", c)
    new_lost = missing_on(new, new.name, sb.acks(new))
    check(not new_lost, "%d rows %s acknowledged are missing on it: %s" % (len(new_lost), new.name,
                                                                          fmt(new_lost, t_cut)), c)
    print("follower partition (a): %d of %d rows pg-1 acknowledged are missing on %s, all acknowledged between "
          "%.3fs before the cut and the election (asynchronous replication)"
          % (len(lost), len(old_acks), new.name, ASYNC_SLACK))


# --------------------------------------------------------------------------
# (b) idle primary, writer after the election

def test_idle_primary_writer_after_election_no_ack_no_loss(f1):
    """pg-1 is idle at the cut (its last rows replayed by both standbys); as
    soon as another member's leader znode appears (read through the ZooKeeper
    leader's side), a writer starts committing on pg-1 every ~10 ms, first on
    a connection opened before the cut, then on new ones: it must get no
    acknowledgement, and after the heal every row pg-1 ever
    acknowledged is on the new primary. Standbys run split-brain writers
    throughout; pg-1's writers join the checker's verdict."""
    c, lay = f1
    old = make_pg1_primary(c)
    standbys = [n for n in c.nodes if n is not old]
    check_layout(c, lay, old)
    with SplitBrainChecker(c, nodes=standbys) as sb, c.leader_watch() as lw:
        stop_before = threading.Event()
        before = NodeWriter(old, 0.02, stop_before)
        before.start()
        wait_for(lambda: len(before.acks) >= 50, timeout=30, interval=0.1, description="50 acks on pg-1",
                 state=lambda: "%d acks, errors %s" % (len(before.acks), before.errors[-3:]))
        stop_before.set()
        before.join(timeout=10)
        caught_up(c, old, standbys)
        lsn_idle = wait_idle(c, old)
        stop_late = threading.Event()
        late_writer = PreConnectedWriter(old, 0.01, stop_late)   # connected now, idle until the election
        try:
            t_cut = cut(old, lay, standbys)
            new, t_elect = wait_new_leader(c, lw, old, t_cut)
            try:                           # (a read) pg-1 wrote no WAL between the cut and the election
                lsn_elect = old.current_lsn()
            except psycopg2.Error as exc:  # fenced: refusing connections or shutting down
                lsn_elect = "unreadable (%s)" % str(exc).strip().splitlines()[-1][:80]
            late_writer.start()
            t_writer = time.monotonic()
            wait_promoted(c, new)
            sb.wait_acks(new, 5, after=t_elect)
            time.sleep(max(0.0, t_cut + WATCH_UNTIL - time.monotonic()))
            stop_late.set()
            late_writer.join(timeout=10)
            # pg-1's writers join the checker (pre-cut acks under their own key)
            sb.writers[old.name] = late_writer
            sb.writers[old.name + "-before-cut"] = before
            late = [a for a in late_writer.acks if a.acked >= t_elect]
            lost_pre = missing_on(new, old.name, late_writer.acks)
            errs = late_writer.errors[:2] + late_writer.errors[-2:]
            summary = ("follower partition (b): %s; pg-1 at the election: %s (WAL %s at the cut, %s at the "
                       "election); new leader %s %.2fs after the cut; writer on pg-1 from %+.3fs: "
                       "%d attempts, %d acks at or after the election (%s), last %s; %d of them not on %s; "
                       "writer errors: %s"
                       % (lay.describe(), "still idle" if lsn_elect == lsn_idle else
                          "fenced" if isinstance(lsn_elect, str) else "NOT idle (weaker trial)",
                          lsn_idle, lsn_elect, new.name, t_elect - t_cut, t_writer - t_cut, late_writer.attempts,
                          len(late), fmt(late, t_cut),
                          "%+.3fs" % (late[-1].acked - t_cut) if late else "-", len(lost_pre), new.name,
                          "; ".join("%+.2fs %s" % (t - t_cut, e) for t, e in errs)))
            print("\n" + summary)
            check(not late, "%s acknowledged %d commits after the election of %s (%.3fs after the cut): the "
                  "lease outlived the ZooKeeper session. %s" % (old.name, len(late), new.name, t_elect - t_cut,
                                                                summary), c, lw.describe(t_cut), sb.summary)
        finally:
            stop_late.set()
            heal(old, lay)
        wait_rejoined(c, old, new)
        sb.wait_acks(new, 5)
    print(sb.summary())
    sb.check()
    old_acks = before.acks + late_writer.acks
    lost = missing_on(new, old.name, old_acks)
    check(not lost, "%d of %d rows pg-1 acknowledged are missing on %s after the heal: %s"
          % (len(lost), len(old_acks), new.name, fmt(lost, t_cut)), c)
    new_lost = missing_on(new, new.name, sb.acks(new))
    check(not new_lost, "%d rows %s acknowledged are missing on it" % (len(new_lost), new.name), c)
