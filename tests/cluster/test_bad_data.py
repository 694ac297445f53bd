"""Bad data in ZooKeeper must not switch fencing off (issue 8 item 1;
reliability review F4, architecture review B3).

Invalid UTF-8 written with kazoo into znodes the nodes read every loop. Before
the fix, `Engine::publish()`'s strict nlohmann `dump()` throws on it,
`pgha_engine_step` zeroes its outputs and the worker stores lease 0 with
lease_enforced=0 and fenced=0 until the next step: commit-time fencing is off
for a step, once per decision, and the step's log lines are replaced by a bare
"pg_ha engine step failed; retrying".

1. a replica's `members/<name>` (runs first: changes no role): the member is
   rejected and logged as bad data, the replica rewrites its own znode, the
   leader keeps taking writes, no role change, no worker or postmaster restart.
2. the `initialize` znode (the cluster's system identifier) for 12 s, then
   repaired: every node takes no action, so the leader's lease is 0; no commit
   may be acknowledged while the committing node's lease is 0 (today: about
   two per decision, every loop_wait), the standbys' workers keep running,
   the logs say what is wrong; healthy again after the repair.
3. the `leader` znode's content (it stays ephemeral and owned by the leader's
   session: `set` changes only the content). Accepted end states: the old
   primary keeps leading (it owns the lock) or it fences and another node
   leads; either way never two writers, no commit with lease 0, no commit after
   the node refused a connection as fenced on the same timeline, nothing from
   the old primary after another node was elected, no worker restart before
   the leader is resolved, every "engine step failed" line has the exception
   text, and the old primary's worker says why it stopped leading.

The writers (LeaseWriter, 3 connections per node, a commit every ~2 ms each)
record ha_lease_remaining_ms() inside each committed transaction, so a window
of a few ms without enforcement shows as an acknowledged commit with lease 0.
The split-brain checker runs too. One module cluster (dynamic config ttl 10 /
loop_wait 2 / retry_timeout 2, as in test_failover.py), pg-1 bootstrapped
first; about 75 s in all on 2 cores.
"""
import re
import sys
import threading
import time

import psycopg2
import pytest

import harness
from conftest import BOOTSTRAP_TIMEOUT
from harness import log_since, log_size, wait_for
from splitbrain import SplitBrainChecker

pytestmark = pytest.mark.needs_pg_ha

TTL = 10
LOOP_WAIT = 2
RETRY_TIMEOUT = 2
FAST = {"ttl": TTL, "loop_wait": LOOP_WAIT, "retry_timeout": RETRY_TIMEOUT}
# A new leader (or a repaired one) after the corruption: the old primary's
# session may live up to TTL after it stops, then a few loops, peers, promote.
RESOLVE_TIMEOUT = 2 * TTL + 10 * LOOP_WAIT + 30
REJOIN_TIMEOUT = 180          # fence, supervisor restart, pg_hactl boot (rewind), stream; 2 cores

LEADER_GARBAGE = b"\xff\xfe pg-2 \xc3\x28"
MEMBER_MARKER = "bad-member-7f3a"

SETUP_SQL = """
create table if not exists bad_data_t(
    id bigserial primary key,
    node text not null,
    tl int not null,
    lease_ms bigint,
    at timestamptz not null default clock_timestamp());
-- the lease at commit time: a deferred constraint trigger fires in
-- CommitTransaction just before the PRE_COMMIT callback that checks the lease
alter table bad_data_t add column if not exists lease_commit_ms bigint;
create or replace function bad_data_write(p_node text, out o_id bigint, out o_tl text, out o_lease bigint)
language plpgsql as $$
begin
    if pg_is_in_recovery() then
        return;                        -- a standby: nothing to write
    end if;
    -- the lease as this transaction sees it before its commit check
    o_lease := ha_lease_remaining_ms();
    o_tl := substr(pg_walfile_name(pg_current_wal_insert_lsn()), 1, 8);
    insert into bad_data_t(node, tl, lease_ms) values (p_node, ('x' || o_tl)::bit(32)::int, o_lease)
        returning id into o_id;
end $$;
create or replace function bad_data_at_commit() returns trigger language plpgsql as $$
begin
    update bad_data_t set lease_commit_ms = ha_lease_remaining_ms() where id = new.id;
    return null;
end $$;
drop trigger if exists bad_data_commit on bad_data_t;
create constraint trigger bad_data_commit after insert on bad_data_t
    deferrable initially deferred for each row execute function bad_data_at_commit();
"""

WRITER_CONNECTIONS = 3        # per node (standbys only poll, every 50 ms)
FENCED_TEXT = "being demoted"                    # pgha_client_auth: fenced = 1
LEASE_TEXT = "does not hold a valid leader lease"  # the PRE_COMMIT check refused


# --------------------------------------------------------------------------
# helpers

def check(cond, msg, c, *extra):
    if not cond:
        parts = [msg] + [e() if callable(e) else str(e) for e in extra] + [c.diagnostics(60)]
        raise AssertionError("\n".join(parts))




class LeaseWriter:
    """One node, `connections` threads: each commits a row every `interval` s
    over its own direct connection (autocommit; reconnecting after connection
    errors, keeping the session after refusals), recording (ack time,
    timeline, lease_ms seen by the transaction) per acknowledged commit and
    (time, text) per error. Several connections close the gaps between one
    connection's commits, so even a window of a few ms without fencing shows."""

    def __init__(self, node, connections=1, interval=0.002, max_duration=900.0):
        self.node = node
        self.interval = interval
        self.deadline = time.monotonic() + max_duration
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.acks = []          # [(acked, tl, lease_ms, row id)]
        self.errors = []        # [(time, text)], bounded
        self.error_count = 0
        self.first_fenced = None  # time of the first "being demoted" refusal
        self.last_lease_refusal = None  # time of the last refusal by the commit-time lease check
        self.threads = [threading.Thread(target=self.run, daemon=True, name="lease-writer-%s-%d" % (node.name, i))
                        for i in range(connections)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def _error(self, exc):
        now = time.monotonic()
        text = "%s: %s" % (type(exc).__name__, (str(exc).strip().splitlines() or [""])[0][:200])
        with self.lock:
            self.error_count += 1
            if FENCED_TEXT in str(exc) and self.first_fenced is None:
                self.first_fenced = now
            if LEASE_TEXT in str(exc):
                self.last_lease_refusal = now
            if len(self.errors) >= 200:
                del self.errors[100:101]
            self.errors.append((now, text))

    def run(self):
        conn = None
        while not self.stop_event.is_set() and time.monotonic() < self.deadline:
            if conn is None:
                try:
                    conn = harness.pg_connect(self.node.ip, self.node.port, connect_timeout=2,
                                              statement_timeout_ms=3000, application_name="bad-data-writer")
                except psycopg2.Error as exc:
                    self._error(exc)
                    self.stop_event.wait(0.05)
                    continue
            try:
                with conn.cursor() as cur:
                    cur.execute("select o_id, o_tl, o_lease from bad_data_write(%s)", (self.node.name,))
                    row_id, tl, lease = cur.fetchone()
                acked = time.monotonic()
            except psycopg2.Error as exc:
                self._error(exc)
                if conn.closed or isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)):
                    try:
                        conn.close()
                    except psycopg2.Error:
                        pass
                    conn = None
                    self.stop_event.wait(0.05)
                else:                        # e.g. refused by the lease: the session is fine, go on
                    self.stop_event.wait(self.interval)
                continue
            if row_id is None:           # a standby: look again less often
                self.stop_event.wait(0.05)
                continue
            with self.lock:
                self.acks.append((acked, int(tl, 16), lease, row_id))
            self.stop_event.wait(self.interval)
        if conn is not None:
            try:
                conn.close()
            except psycopg2.Error:
                pass

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=10)

    def snapshot(self):
        with self.lock:
            return sorted(self.acks), sorted(self.errors), self.first_fenced

    def describe(self, t0):
        acks, errors, fenced = self.snapshot()
        tls = sorted({a[1] for a in acks})
        shown = errors[:3] + errors[-3:] if len(errors) > 6 else errors
        return "%s: %d acks (timelines %s, last %s), %d errors, first fenced refusal %s; errors: %s" % (
            self.node.name, len(acks), tls, "%+.3fs" % (acks[-1][0] - t0) if acks else "-", self.error_count,
            "%+.3fs" % (fenced - t0) if fenced else "never",
            "; ".join("%+.3fs %s" % (t - t0, e) for t, e in shown))


def start_writers(c, primary):
    def setup():
        primary.sql(SETUP_SQL)
        return True
    wait_for(setup, timeout=30, interval=1.0, description="bad_data_write() on %s" % primary.name,
             state=c.diagnostics)
    for n in c.nodes:
        wait_for(lambda n=n: n.sql_value("select count(*) from pg_proc where proname = 'bad_data_write'") == 1,
                 timeout=30, interval=0.5, description="bad_data_write() on %s" % n.name, state=c.diagnostics)
    writers = {n.name: LeaseWriter(n, connections=WRITER_CONNECTIONS) for n in c.nodes}
    for w in writers.values():
        w.start()
    return writers


def step_failure_problems(texts):
    """Every "engine step failed" line must say what failed (e.what())."""
    problems = []
    for name, text in sorted(texts.items()):
        bare = [ln for ln in text.splitlines()
                if "engine step failed" in ln and not re.search(r"engine step failed: \S", ln)]
        if bare:
            problems.append("%s logged %d engine step failures without the exception text, e.g. %r"
                            % (name, len(bare), bare[0][-160:]))
    return problems


RENEWAL_SLACK = 0.1   # s: refusals checked before a renewal may reach the client after a later ack
RENEWAL_END = 0.5     # s: an excused commit follows the node's last lease refusal this closely


def zero_lease_acks(c, writer, t_bad):
    """Acknowledged commits after t_bad that held no lease. The lease the
    statement read can be 0 and then renewed before the commit check (a
    renewal landing between the two is legitimate), so a zero read counts
    only when the lease at commit time, recorded in the row by the deferred
    trigger, was 0 too, or the row cannot be found (rewound away). The trigger
    still runs a moment before the PRE_COMMIT check, so a renewal can land
    between those two as well: a commit whose trigger saw 0 is excused only
    when it ended a spell of refusals on that node: the lease check refused
    commits there up to RENEWAL_END before it and none after it
    (RENEWAL_SLACK for refusals already under way). Fencing switched off while
    the lease is 0 acknowledges commits with refusals after them, or without
    refusals at all."""
    acks, _, _ = writer.snapshot()
    with writer.lock:
        last_refusal = writer.last_lease_refusal
    suspects = [a for a in acks if a[2] == 0 and a[0] >= t_bad]
    if not suspects:
        return []
    p = c.wait_healthy(timeout=60)
    rows = dict(p.sql("select id, lease_commit_ms from bad_data_t where id = any(%s)",
                      ([a[3] for a in suspects],)) or [])
    zero = [a for a in suspects if not rows.get(a[3])]
    return [a for a in zero
            if a[3] not in rows or last_refusal is None
            or not a[0] - RENEWAL_END <= last_refusal <= a[0] + RENEWAL_SLACK]


def worker_lines(text, pattern):
    """Lines the pg_ha worker logged ("pg_ha: ..."; not pg_hactl's) matching pattern."""
    return [ln for ln in text.splitlines() if "pg_ha: " in ln and re.search(pattern, ln)]


def set_raw(c, path, data):
    """Overwrite a znode's content with raw bytes (any version); returns the new stat."""
    return c.zk().set(c.zk_path(path), data)


# --------------------------------------------------------------------------
# the module's cluster

@pytest.fixture(scope="module")
def bad_cluster(request, require_pg_ha):
    """3 nodes, pg-1 bootstrapped first (so it is the primary), FAST timings."""
    failures_before = request.session.testsfailed
    c = harness.Cluster(dynamic_config=dict(FAST), haproxy=False)
    try:
        c.setup()
        c.start_zookeeper()
        c.start_nodes(["pg-1"])
        c.wait_for_primary(timeout=BOOTSTRAP_TIMEOUT, nodes=["pg-1"])
        c.start_nodes(["pg-2", "pg-3"])
        c.wait_healthy(timeout=BOOTSTRAP_TIMEOUT)
    except BaseException:
        c.keep_dir = True
        sys.stderr.write("\ncluster start failed; run directory kept: %s\n" % c.base_dir)
        c.teardown()
        raise
    yield c
    if request.session.testsfailed > failures_before:
        c.keep_dir = True
        sys.stderr.write("\nkept run directory of module with failures: %s\n" % c.base_dir)
    c.teardown()


# --------------------------------------------------------------------------
# 1. a replica's member znode

def test_invalid_utf8_member_is_ignored_and_cluster_keeps_working(bad_cluster):
    """Raw invalid UTF-8 in members/<replica> (ephemeral, owned by the
    replica's session; `set` keeps the owner). The nodes reject it as bad data
    (logged with the marker in the first bytes), the replica rewrites its own
    znode, the leader keeps committing (no gap > 3 s), the leader znode and
    every node's role stay the same, and no worker or postmaster restarts."""
    c = bad_cluster
    primary = c.wait_healthy(timeout=60)
    replica = next(n for n in c.nodes if n is not primary)
    workers = {n.name: n.worker_pid() for n in c.nodes}
    postmasters = {n.name: n.postmaster_pid() for n in c.nodes}
    check(all(workers.values()), "a node has no pg_ha worker: %s" % workers, c)
    offsets = {n.name: log_size(n) for n in c.nodes}
    # the marker and the invalid bytes within the first 80 bytes (the log quotes those)
    garbage = ('{"note":"%s ' % MEMBER_MARKER).encode() + b'\xff\xfe \xc3\x28", ' + (
        '"conn_url":"postgres://%s:5432/postgres","api_url":"http://%s:8008/patroni",'
        '"state":"running","role":"replica"}' % (replica.ip, replica.ip)).encode()
    problems = []
    with SplitBrainChecker(c) as sb, c.leader_watch() as lw:
        sb.wait_acks(primary, 20)
        t0 = time.monotonic()
        # corrupt it a few times: the replica may repair it within a loop
        for _ in range(3):
            set_raw(c, "members/" + replica.name, garbage)
            time.sleep(LOOP_WAIT + 1)
        logged = {}

        def rejected():
            logged.update({n.name: log_since(n, offsets[n.name]) for n in c.nodes})
            return [name for name, text in logged.items()
                    if re.search(r"bad data.*" + MEMBER_MARKER, text)]
        who = wait_for(rejected, timeout=3 * LOOP_WAIT + 20, interval=0.5,
                       description="a node logs the member data as rejected bad data (marker %s)" % MEMBER_MARKER,
                       state=c.diagnostics)
        wait_for(lambda: isinstance(c.members().get(replica.name), dict), timeout=3 * LOOP_WAIT + 20, interval=0.5,
                 description="%s rewrites its member znode with valid JSON" % replica.name,
                 state=lambda: c.dump_znodes())
        time.sleep(2 * LOOP_WAIT)
        t_end = time.monotonic()
        gap = sb.max_gap(primary, t0, t_end)
        if gap >= 3.0:
            problems.append("writes on %s stalled %.2fs after the member znode was corrupted" % (primary.name, gap))
        if lw.values() != [primary.name]:
            problems.append("leader znode changed: %s" % lw.describe(t0))
        roles = {n.name: (n.is_primary(), n.is_replica()) for n in c.nodes}
        for n in c.nodes:
            want = (True, False) if n is primary else (False, True)
            if roles[n.name] != want:
                problems.append("%s: /primary, /replica = %s, expected %s" % (n.name, roles[n.name], want))
    for n in c.nodes:
        if n.worker_pid() != workers[n.name] or n.postmaster_pid() != postmasters[n.name]:
            problems.append("%s restarted: worker %s -> %s, postmaster %s -> %s" % (
                n.name, workers[n.name], n.worker_pid(), postmasters[n.name], n.postmaster_pid()))
    problems += step_failure_problems({n.name: log_since(n, offsets[n.name]) for n in c.nodes})
    print("bad member: rejected in the logs of %s; longest write gap on %s %.2fs" % (who, primary.name, gap))
    check(not problems, "bad member data:\n  " + "\n  ".join(problems), c, sb.summary)
    sb.check()


# --------------------------------------------------------------------------
# 2. the initialize znode (the same strict dump, without a role change)

def test_invalid_utf8_initialize_never_turns_fencing_off(bad_cluster):
    """Raw invalid UTF-8 in the `initialize` znode (the cluster's system
    identifier) for a few loops, then the original content back. Every node
    sees a cluster that is not its own and takes no action; the leader stops
    counting itself leader, so its lease is 0, and that must mean no commit:
    no commit acknowledged while the committing node's lease is 0 (today the
    step that decides throws in publish() and the worker stores
    lease_enforced=0 until the next step, once per loop), no two writers, the
    standbys' workers keep running, every "engine step failed" line carries
    the exception text, and some worker logs the mismatch or the exception.
    After the repair the cluster is healthy and commits again."""
    c = bad_cluster
    primary = c.wait_healthy(timeout=60)
    others = [n for n in c.nodes if n is not primary]
    workers = {n.name: n.worker_pid() for n in c.nodes}
    offsets = {n.name: log_size(n) for n in c.nodes}
    original, _ = c.zk().get(c.zk_path("initialize"))
    check(original and original.strip().isdigit(), "initialize znode holds %r" % original, c)
    observe = 5 * LOOP_WAIT + 2            # several decisions of every node
    problems = []
    writers = start_writers(c, primary)
    try:
        with SplitBrainChecker(c) as sb, c.leader_watch() as lw:
            sb.wait_acks(primary, 20)
            t_bad = time.monotonic()
            set_raw(c, "initialize", b"\xff\xfe " + original[:6] + b" \xc3\x28")
            try:
                time.sleep(observe)
            finally:
                set_raw(c, "initialize", original)
            t_fixed = time.monotonic()
            p = c.wait_healthy(timeout=REJOIN_TIMEOUT)
            sb.wait_acks(p, 20, timeout=60)
            time.sleep(LOOP_WAIT)
    finally:
        for w in writers.values():
            w.stop()
    for name, w in writers.items():
        zero = zero_lease_acks(c, w, t_bad)
        if zero:
            problems.append("%s acknowledged %d commits while its lease was 0 (fencing off), %+.3fs..%+.3fs "
                            "after the corruption" % (name, len(zero), zero[0][0] - t_bad, zero[-1][0] - t_bad))
    for n in others:
        if n.worker_pid() != workers[n.name]:
            problems.append("%s's pg_ha worker changed: %s -> %s" % (n.name, workers[n.name], n.worker_pid()))
    texts = {n.name: log_since(n, offsets[n.name]) for n in c.nodes}
    problems += step_failure_problems(texts)
    if not any(worker_lines(t, r"engine step failed: \S|does not belong to the cluster") for t in texts.values()):
        problems.append("no node's pg_ha worker logged the exception text or the system identifier mismatch")
    summary = "\n".join([lw.describe(t_bad)] + [w.describe(t_bad) for w in writers.values()] + [sb.summary()])
    print("bad initialize: %.0fs corrupt, healthy again %.1fs after the repair (primary %s)\n%s"
          % (t_fixed - t_bad, time.monotonic() - t_fixed, p.name, summary))
    check(not problems, "invalid UTF-8 in the initialize znode:\n  " + "\n  ".join(problems), c, summary)
    sb.check()


# --------------------------------------------------------------------------
# 3. the leader znode

def test_invalid_utf8_leader_never_turns_fencing_off(bad_cluster):
    """Raw invalid UTF-8 in the leader znode's content while pg-1 leads (the
    znode stays ephemeral and owned by pg-1's session). Whatever the outcome
    (pg-1 keeps leading by ownership, or fences and another node leads):
    no two writers (split-brain checker), no commit acknowledged while the
    committing node's lease is 0 (only possible with enforcement off), no
    commit after the node's writer was refused with "being demoted" on the
    same timeline, no commit on the old primary once another leader is
    elected, the other nodes' workers keep running and answering /patroni
    until the leader is resolved (a rewind restart after a failover is
    fine), every "engine step failed" line carries the exception text, the
    old primary's worker says why it stopped leading, and the cluster is
    healthy again with a leader znode naming the primary."""
    c = bad_cluster
    old = c.wait_healthy(timeout=60)
    others = [n for n in c.nodes if n is not old]
    check(c.leader_name() == old.name, "leader znode %r, primary %s" % (c.leader_name(), old.name), c)
    workers = {n.name: n.worker_pid() for n in c.nodes}
    offsets = {n.name: log_size(n) for n in c.nodes}
    from kazoo.exceptions import NoNodeError
    problems = []
    writers = start_writers(c, old)
    try:
        with SplitBrainChecker(c) as sb, c.leader_watch() as lw:
            sb.wait_acks(old, 20)
            wait_for(lambda: len(writers[old.name].snapshot()[0]) >= 50, timeout=20, interval=0.1,
                     description="the lease writer committing on %s" % old.name,
                     state=lambda: writers[old.name].describe(time.monotonic()))
            _, stat = c.zk().get(c.zk_path("leader"))
            owner = stat.ephemeralOwner
            check(owner != 0, "the leader znode is not ephemeral", c)
            t_bad = time.monotonic()
            bad_stat = set_raw(c, "leader", LEADER_GARBAGE)
            check(bad_stat.ephemeralOwner == owner, "set changed the leader znode's owner", c)

            # resolution: a valid member name in the leader znode again (the old
            # primary repairing it, or a new leader after it let go)
            names = {n.name for n in c.nodes}
            answered = {n.name: [0, 0] for n in others}     # [polls, answers] of /patroni

            restarted = {}                                  # worker pid changes before the resolution

            def resolved():
                for n in others:
                    pid = n.worker_pid()
                    if pid != workers[n.name] and n.name not in restarted:
                        restarted[n.name] = (time.monotonic() - t_bad, pid)
                    answered[n.name][0] += 1
                    if n.http("GET", "/patroni", timeout=2.0)[0] is not None:
                        answered[n.name][1] += 1
                try:
                    data, st = c.zk().get(c.zk_path("leader"))
                except NoNodeError:
                    return None
                v = data.decode("utf-8", "replace")
                # rewritten or re-created after the corruption
                return v if v in names and max(st.mzxid, st.czxid) > bad_stat.mzxid else None
            leader = wait_for(resolved, timeout=RESOLVE_TIMEOUT, interval=1.0,
                              description="a valid member name in the leader znode after the corruption",
                              state=lambda: lw.describe(t_bad) + "\n" + "\n".join(
                                  w.describe(t_bad) for w in writers.values()) + "\n" + c.diagnostics(60))
            t_resolved = time.monotonic()
            new = c.node(leader)
            t_elect = None if new is old else (lw.first_time(lambda v: v == new.name, after=t_bad) or t_resolved)
            primary = c.wait_healthy(timeout=REJOIN_TIMEOUT)
            check(primary is new, "%s leads in ZooKeeper but %s is the healthy primary" % (new.name, primary.name),
                  c, lambda: lw.describe(t_bad))
            try:
                data, st = c.zk().get(c.zk_path("leader"))
            except NoNodeError:
                data, st = None, None
            check(data == primary.name.encode() and st is not None and st.ephemeralOwner != 0,
                  "leader znode %r (owner %s) with %s primary" % (data, st and hex(st.ephemeralOwner), primary.name), c)
            sb.wait_acks(primary, 20, timeout=60)
            time.sleep(LOOP_WAIT)
    finally:
        for w in writers.values():
            w.stop()
    t_end = time.monotonic()

    # 1. commits the lease could not have allowed, fenced nodes that committed again
    for name, w in writers.items():
        acks, errors, first_fenced = w.snapshot()
        zero = zero_lease_acks(c, w, t_bad)
        if zero:
            problems.append("%s acknowledged %d commits while its lease was 0 (fencing off), %+.3fs..%+.3fs "
                            "after the corruption" % (name, len(zero), zero[0][0] - t_bad, zero[-1][0] - t_bad))
        if first_fenced is not None:
            fenced_tl = [a[1] for a in acks if a[0] < first_fenced]
            tl = fenced_tl[-1] if fenced_tl else None
            late = [a for a in acks if a[0] > first_fenced and a[1] == tl]
            if late:
                problems.append("%s committed %d times on timeline %s after refusing a connection as fenced "
                                "(%+.3fs), last %+.3fs after the corruption" % (
                                    name, len(late), tl, first_fenced - t_bad, late[-1][0] - t_bad))
    if t_elect is not None:
        acks = writers[old.name].snapshot()[0]
        before = [a for a in acks if a[0] < t_bad]
        old_tl = before[-1][1] if before else None
        late = [a for a in acks if a[0] >= t_elect and a[1] == old_tl]
        if late:
            problems.append("%s acknowledged %d commits on its old timeline %s after %s was elected (%+.3fs), "
                            "last %+.3fs after the corruption" % (old.name, len(late), old_tl, new.name,
                                                                  t_elect - t_bad, late[-1][0] - t_bad))
    # 2. the other nodes' workers survived the bad data and kept answering (a
    # restart after the new leader was elected, e.g. to rewind, is no failure)
    for n in others:
        if n.name in restarted:
            problems.append("%s's pg_ha worker changed %.1fs after the corruption, before a leader was "
                            "resolved: %s -> %s" % (n.name, restarted[n.name][0], workers[n.name],
                                                    restarted[n.name][1]))
        polls, answers = answered[n.name]
        if answers < polls / 2:
            problems.append("%s answered GET /patroni %d of %d times after the corruption" % (n.name, answers, polls))
        try:
            n.sql("select * from ha_node()")
        except psycopg2.Error as exc:
            problems.append("%s: ha_node() failed: %s" % (n.name, exc))
    # 3. the logs say what went wrong
    texts = {n.name: log_since(n, offsets[n.name]) for n in c.nodes}
    problems += step_failure_problems(texts)
    described = [name for name, text in texts.items()
                 if worker_lines(text, r"engine step failed: \S|(\ufffd|\\x[0-9a-fA-F]{2}|\\u[0-9a-fA-F]{4}) pg-2 ")]
    if not described:
        problems.append("no node's pg_ha worker logged the exception text or the corrupt leader value")
    if new is not old and not worker_lines(texts[old.name], r"demot|fenc|engine step failed: \S"):
        problems.append("%s gave up leading but its pg_ha worker never logged why (no demoting/fencing line, "
                        "no exception text)" % old.name)

    summary = "\n".join([lw.describe(t_bad)] + [w.describe(t_bad) for w in writers.values()] + [sb.summary()])
    print("bad leader: resolved to %s %.1fs after the corruption (%s); run %.0fs\n%s" % (
        leader, t_resolved - t_bad, "kept by ownership" if new is old else "new leader", t_end - t_bad, summary))
    check(not problems, "invalid UTF-8 in the leader znode:\n  " + "\n  ".join(problems), c, summary)
    sb.check()
