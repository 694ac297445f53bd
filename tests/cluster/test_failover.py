"""Automatic failover, fencing, rejoin and the watchdog (issue 3; DESIGN.md §2).

Every test builds its own cluster (failover mutates it too much to share),
bootstraps pg-1 first so roles are known, and runs the split-brain checker
(splitbrain.py: a writer per node, direct connections, every ~20 ms) across
its fault; SplitBrainChecker.check() fails on two writers.

Timings (unless a test says otherwise): dynamic config ttl 10, loop_wait 2,
retry_timeout 2 written to the `config` znode before the first node starts,
so the nodes ask ZooKeeper for a 10 s session (ZooKeeper: tickTime 2000,
minSessionTimeout 1000, maxSessionTimeout 40000, so 10 s is granted as asked).
Shorter than the defaults (30/10/10) only to keep the file near 10 minutes on
2 cores; every bound below is derived from TTL and LOOP_WAIT. The lease
margin is pg_ha's default (2 s), so a fenced primary stops committing at the
latest ~8 s after its last answered ZooKeeper request.
"""
import re
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
# Leader znode gone after at most TTL (session timeout), plus a few HA loops to
# notice, compare peers over REST, take the lock and promote; 2 cores.
FAILOVER_TIMEOUT = TTL + 5 * LOOP_WAIT + 20
REJOIN_TIMEOUT = 150         # fence, supervisor restart, boot (rewind), start, stream
HAPROXY_TIMEOUT = 60         # inter 3s, rise 3 / fall 3, slowstart; 2 cores
LAG_LIMIT = 1024 * 1024      # maximum_lag_on_failover in the lag tests


# --------------------------------------------------------------------------
# helpers

def check(cond, msg, c, *extra):
    if not cond:
        parts = [msg] + [e() if callable(e) else str(e) for e in extra] + [c.diagnostics(60)]
        raise AssertionError("\n".join(parts))


def start_cluster(make_cluster, config=None, first="pg-1", **kw):
    """A healthy cluster whose primary is `first` (started alone, the others after)."""
    kw.setdefault("haproxy", False)
    c = make_cluster(dynamic_config=dict(FAST if config is None else config), **kw)
    c.start_zookeeper()
    c.start_haproxy()
    c.start_nodes([first])
    c.wait_for_primary(timeout=BOOTSTRAP_TIMEOUT, nodes=[first])
    c.start_nodes([n.name for n in c.nodes if n.name != first])
    primary = c.wait_healthy(timeout=BOOTSTRAP_TIMEOUT)
    check(primary.name == first, "%s bootstrapped first but %s is primary" % (first, primary.name), c)
    cfg = c.dynamic_config()
    for k, v in (config or FAST).items():
        check(cfg.get(k) == v, "config znode %s = %r, wrote %r" % (k, cfg.get(k), v), c)
    return c


def wait_new_leader(c, lw, old, after, timeout=FAILOVER_TIMEOUT, allowed=None):
    """Wait for a leader znode naming another node than `old`; returns (node, election time)."""
    allowed = {getattr(n, "name", n) for n in (allowed or c.nodes)} - {old.name}

    def elected():
        v = lw.current()
        return v if v and v != old.name else None

    name = wait_for(elected, timeout=timeout, interval=0.05,
                    description="a new leader znode (not %s)" % old.name,
                    state=lambda: lw.describe(after) + "\n" + c.diagnostics(60))
    check(name in allowed, "leader %s is not one of %s" % (name, sorted(allowed)), c, lw.describe(after))
    return c.node(name), lw.first_time(lambda v: v == name, after=after)


def wait_promoted(c, node, timeout=30):
    """node answers /primary, is out of recovery and commits a write."""
    def promoted():
        return node.is_primary() and node.in_recovery() is False and node.accepts_writes()
    wait_for(promoted, timeout=timeout, interval=0.2, description="%s promoted and writable" % node.name,
             state=c.diagnostics)


def wait_streaming(c, standby, upstream, timeout=REJOIN_TIMEOUT):
    """standby in recovery, its WAL receiver streams from upstream, and upstream's
    pg_stat_replication lists it as streaming, and /replica answers 200."""
    def streaming():
        if not standby.streams_from(upstream):
            return False
        rows = upstream.replication_rows()
        return any(r["client_addr"] == standby.ip and r["state"] == "streaming" for r in rows) \
            and standby.is_replica()
    wait_for(streaming, timeout=timeout, interval=0.5,
             description="%s streaming from %s" % (standby.name, upstream.name), state=c.diagnostics)


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class KeptSessionWriter(threading.Thread):
    """ONE connection to a node, committing INSERT ... RETURNING in autocommit
    back to back; never reconnects. Records (ack time, id, timeline) and errors."""

    def __init__(self, node, interval=0.005):
        super().__init__(daemon=True, name="kept-writer-%s" % node.name)
        self.node = node
        self.interval = interval
        self.conn = node.connect(statement_timeout_ms=5000, application_name="kept-writer")
        harness.query(self.conn, "create table if not exists kept_t(id bigserial primary key, "
                                 "at timestamptz default clock_timestamp())")
        self.acks = []          # [(monotonic ack time, id, timeline)]
        self.errors = []        # [(monotonic time, text)]
        self.closed_at = None
        self.stop_event = threading.Event()

    def run(self):
        deadline = time.monotonic() + 900
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            try:
                rows = harness.query(self.conn, "insert into kept_t default values returning id, "
                                                "substr(pg_walfile_name(pg_current_wal_insert_lsn()), 1, 8)")
                self.acks.append((time.monotonic(), rows[0][0], int(rows[0][1], 16)))
            except psycopg2.Error as exc:
                self.errors.append((time.monotonic(), "%s: %s" % (type(exc).__name__, str(exc).strip()[:200])))
                if self.conn.closed:
                    self.closed_at = time.monotonic()
                    return
                self.stop_event.wait(0.05)
                continue
            self.stop_event.wait(self.interval)

    def stop(self):
        self.stop_event.set()
        self.join(timeout=10)
        try:
            self.conn.close()
        except psycopg2.Error:
            pass

    def last_ack(self):
        return self.acks[-1][0] if self.acks else None

    def acks_after(self, t):
        return [a for a in self.acks if a[0] >= t]

    def describe(self, t0):
        errs = self.errors[:2] + self.errors[-2:] if len(self.errors) > 4 else self.errors
        return "kept writer on %s: %d acks (last %s), %d errors, closed %s; errors: %s" % (
            self.node.name, len(self.acks),
            "%+.3fs" % (self.last_ack() - t0) if self.acks else "-", len(self.errors),
            "%+.3fs" % (self.closed_at - t0) if self.closed_at else "no",
            "; ".join("%+.3fs %s" % (t - t0, e) for t, e in errs))


def hold(seconds, predicate, description, c, interval=0.5):
    """Assert predicate() stays truthy for `seconds` (bounded)."""
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
        ok = predicate()
        check(ok, "after %.1fs of %.1fs: no longer %s (got %r)" % (
            seconds - (end - time.monotonic()), seconds, description, ok), c)
        time.sleep(interval)
    return n


# --------------------------------------------------------------------------
# 1. host loss

def test_host_loss_failover_haproxy_and_rewind_rejoin(make_cluster):
    """SIGKILL every process of the primary's host; the best standby promotes,
    the other follows it, HAProxy's write port moves; the old host restarts and
    rejoins through pg_rewind. The old primary is first cut from its standbys
    (ZooKeeper still reachable) and commits rows they never receive, so it has
    diverged and rewind is required. Timings: ttl 10 / loop_wait 2 /
    retry_timeout 2 (module docstring); failover expected within ~ttl.
    On 17+ every node also writes WAL summaries (summarize_wal, for incremental
    backups): pg_rewind and pg_basebackup must not trip over pg_wal/summaries."""
    summaries = harness.pg_major() >= 17
    c = start_cluster(make_cluster, haproxy=True, extra_settings="summarize_wal = on" if summaries else "")
    old = c.node("pg-1")
    standbys = [n for n in c.nodes if n is not old]
    c.haproxy.wait_routing(old, readers=standbys, timeout=HAPROXY_TIMEOUT, state=c.diagnostics)
    old.sql("create table failover_t(id int primary key, phase text)")
    old.sql("insert into failover_t values (1, 'before')")
    for s in standbys:
        wait_for(lambda s=s: s.sql_value("select count(*) from failover_t") == 1, timeout=30, interval=0.3,
                 description="row replicated to %s" % s.name, state=c.diagnostics)
    tl_old = old.timeline()
    if summaries:
        old.sql("CHECKPOINT")
        wait_for(lambda: old.sql_value("SELECT count(*) FROM pg_catalog.pg_available_wal_summaries()") > 0,
                 timeout=30, interval=0.5, description="WAL summaries on %s" % old.name)
    # A restore_command in the old primary's configuration: its rewind may
    # fetch WAL from the archive (--restore-target-wal; none is needed here,
    # and `false` finds nothing, as an empty archive would).
    old.sql("ALTER SYSTEM SET restore_command = 'false'")

    with SplitBrainChecker(c) as sb, c.leader_watch() as lw:
        sb.wait_acks(old, 20)
        # diverge: the standbys stop receiving, the old primary commits 100 more rows
        old.host.isolate("nft", peers=[s.host for s in standbys])
        old.sql("insert into failover_t select g, 'lost' from generate_series(100, 199) g")
        time.sleep(0.5)
        offset = log_size(old)
        t_kill = time.monotonic()
        old.kill_host()
        t_killed = time.monotonic()          # every process of the host is gone

        new, t_elect = wait_new_leader(c, lw, old, t_kill, allowed=standbys)
        wait_promoted(c, new)
        t_writable = time.monotonic()
        other = next(s for s in standbys if s is not new)
        check(new.timeline() > tl_old, "%s writes on timeline %d, old was %d" % (new.name, new.timeline(), tl_old), c)
        wait_streaming(c, other, new, timeout=60)
        t_follow = time.monotonic()

        # The new leader records its promotion once the checkpoint after it is
        # done (off its loop): moments after it accepts writes.
        wait_for(lambda: isinstance(c.zk_json("history"), list) and c.zk_json("history")
                 and c.zk_json("history")[-1][0] == tl_old, timeout=10, interval=0.1,
                 description="the history znode to record timeline %d" % tl_old,
                 state=lambda: c.zk_json("history"))
        history = c.zk_json("history")
        if len(history[-1]) >= 5:
            check(history[-1][4] == new.name, "history names %r, new leader %s" % (history[-1][4], new.name), c)

        c.haproxy.wait_routing(new, readers=[other], timeout=HAPROXY_TIMEOUT, state=c.diagnostics)
        t_proxy = time.monotonic()
        conn = c.proxy_connect(write=True)
        try:
            addr, rec = harness.query(conn, "select host(inet_server_addr()), pg_is_in_recovery()")[0]
            check(addr == new.ip and rec is False, "5433 reached %s (in recovery %s), new primary %s"
                  % (addr, rec, new.ip), c)
            harness.query(conn, "insert into failover_t select g, 'after' from generate_series(2, 11) g")
        finally:
            conn.close()

        print("host loss: leader %.2fs, writable %.2fs, %s follows %.2fs, haproxy %.2fs after the kill"
              % (t_elect - t_kill, t_writable - t_kill, other.name, t_follow - t_kill, t_proxy - t_kill))
        # the old host comes back
        old.host.heal()
        t_restart = time.monotonic()
        old.start_host()
        wait_streaming(c, old, new)
        t_rejoined = time.monotonic()
        wait_for(lambda: old.sql("select phase, count(*) from failover_t group by 1 order by 1")
                 == [("after", 10), ("before", 1)], timeout=30, interval=0.5,
                 description="%s has the rows written after the failover and none of the lost ones" % old.name,
                 state=lambda: "%s: %s" % (old.name, old.sql("select phase, count(*) from failover_t group by 1")))
        sb.wait_acks(new, 20)
    print("host loss: old host streaming %.2fs after restart" % (t_rejoined - t_restart))
    print(sb.summary())
    sb.check()
    # (an ack read just after kill_host() may belong to a commit from before it)
    zombie = [a for a in sb.acks(old) if a.sent > t_killed]
    check(not zombie, "%s acknowledged writes sent after it was killed: %s" % (old.name, zombie[:5]), c, sb.summary)

    text = log_since(old, offset)
    rewind = [ln for ln in text.splitlines() if re.search(r"rewind", ln, re.I)]
    print("host loss: rewind lines:\n  " + "\n  ".join(rewind[:8]))
    check(rewind, "%s's log since the restart never mentions pg_rewind" % old.name, c)
    check(any("--restore-target-wal" in ln for ln in rewind if "running:" in ln),
          "%s has a restore_command but pg_rewind ran without --restore-target-wal: %s" % (old.name, rewind[:10]), c)
    lsn = r"[0-9A-F]+/[0-9A-F]+"
    check(any(re.search(lsn, ln) for ln in text.splitlines() if re.search(r"diverg|rewind", ln, re.I)),
          "%s's log has no diverged LSN range (DESIGN §2.4); rewind lines: %s" % (old.name, rewind[:10]), c)
    c.wait_healthy(timeout=60)


# --------------------------------------------------------------------------
# 2. hung primary

def test_hung_primary_lease_stops_commits_then_rejoins(make_cluster):
    """SIGSTOP the primary's postmaster and pg_ha worker while one kept session
    commits back to back. Its backend keeps running, so only the commit-time
    lease can stop it: no commit may be acknowledged after the new leader
    znode appeared (polled every 50 ms), nor later than one session timeout
    (ttl 10 s) after the freeze. After SIGCONT the old primary commits nothing
    and rejoins as a standby of the new leader. Timings: ttl 10 / loop_wait 2 /
    retry_timeout 2; lease margin 2 s (default)."""
    c = start_cluster(make_cluster)
    old = c.node("pg-1")
    with SplitBrainChecker(c) as sb, c.leader_watch() as lw:
        kept = KeptSessionWriter(old)
        kept.start()
        try:
            wait_for(lambda: len(kept.acks) >= 50, timeout=20, interval=0.1,
                     description="kept writer committing", state=lambda: kept.describe(time.monotonic()))
            sb.wait_acks(old, 20)
            tl_old = kept.acks[-1][2]
            pids = old.freeze()
            t_freeze = time.monotonic()
            try:
                new, t_elect = wait_new_leader(c, lw, old, t_freeze)
                wait_promoted(c, new)
                time.sleep(2)                  # the kept session keeps trying after the election
                desc = kept.describe(t_freeze)
                after_election = kept.acks_after(t_elect)
                check(not after_election, "the frozen primary acknowledged %d commits after the new leader "
                      "was elected (%.3fs after the freeze); %s" % (len(after_election), t_elect - t_freeze, desc), c)
                last = kept.last_ack()
                check(last is not None and last < t_freeze + TTL,
                      "last acknowledged commit %.3fs after the freeze (session timeout %ds)"
                      % ((last or 0) - t_freeze, TTL), c, desc)
                errs = [t for t, _ in kept.errors if t > last]
                check(errs or kept.closed_at, "the kept session saw neither an error nor a cut after its last "
                      "ack: %s" % desc, c)
                check(not sb.acks_after(old, t_elect), "split-brain writer acked on %s after the election"
                      % old.name, c, sb.summary)
                acked_while_frozen = len(kept.acks_after(t_freeze))
                print("hung primary: leader %.2fs after the freeze; kept session: %d commits acked after the "
                      "freeze, last %.3fs after it; %s" % (t_elect - t_freeze, acked_while_frozen,
                                                          kept.last_ack() - t_freeze, desc))
            finally:
                old.thaw(pids)
            t_thaw = time.monotonic()
            wait_streaming(c, old, new)
            t_rejoined = time.monotonic()
            # acknowledged before the lease ran out but never replicated (async): lost on rewind
            acked_ids = [a[1] for a in kept.acks]
            have = {r[0] for r in new.sql("select id from kept_t where id >= %s", (min(acked_ids),))}
            lost = [i for i in acked_ids if i not in have]
            print("hung primary: %d of %d acknowledged commits of the kept session are missing on %s "
                  "(async replication)" % (len(lost), len(acked_ids), new.name))
            time.sleep(1)
            check(not kept.acks_after(t_elect), "the old primary acknowledged commits after SIGCONT: %s"
                  % kept.describe(t_freeze), c)
            check(not sb.acks_after(old, t_elect), "split-brain writer acked on %s after SIGCONT" % old.name,
                  c, sb.summary)
            check(all(a.tl > tl_old for a in sb.acks(new) if a.acked > t_elect),
                  "new primary wrote on an old timeline", c, sb.summary)
        finally:
            kept.stop()
    print("hung primary: rejoined %.1fs after SIGCONT" % (t_rejoined - t_thaw))
    print(sb.summary())
    sb.check()
    c.wait_healthy(timeout=60)


def test_hung_primary_watchdog_resets_host(make_cluster):
    """Same freeze (postmaster + pg_ha worker) with the emulated watchdog
    (watchdog_emulator.py on a FIFO, pg_ha.watchdog_mode = required): the
    frozen worker stops its keepalives and the emulator SIGKILLs every process
    of the host, before the leader znode expires (Patroni: the watchdog timeout
    is ttl - safety_margin). A new leader follows; powering the host back on
    rejoins it as a standby. Timings: ttl 10 / loop_wait 2 / retry_timeout 2,
    default watchdog safety margin."""
    if not harness.WATCHDOG_EMULATOR.exists():
        pytest.fail("%s does not exist" % harness.WATCHDOG_EMULATOR)
    c = start_cluster(make_cluster, watchdog=True)
    old = c.node("pg-1")
    with SplitBrainChecker(c) as sb, c.leader_watch() as lw:
        sb.wait_acks(old, 20)
        wait_for(lambda: "armed by a writer" in old.watchdog_log_text(), timeout=3 * LOOP_WAIT + 5, interval=0.2,
                 description="the primary's watchdog armed", state=lambda: old.watchdog_log_text()[-2000:])
        pids = old.freeze()
        t_freeze = time.monotonic()
        try:
            wait_for(lambda: not any(pid_alive(p) for p in pids) and not old.host.pids(), timeout=TTL + 10,
                     interval=0.05, description="the watchdog emulator to reset %s" % old.name,
                     state=lambda: "watchdog log:\n%s\n%s" % (old.watchdog_log_text()[-3000:], c.diagnostics()))
            t_reset = time.monotonic()
        finally:
            old.thaw(pids)
        new, t_elect = wait_new_leader(c, lw, old, t_freeze)
        wait_promoted(c, new)
        check(t_reset < t_elect, "the watchdog reset the host %.2fs after the freeze, after the new leader was "
              "elected (%.2fs)" % (t_reset - t_freeze, t_elect - t_freeze), c, lw.describe(t_freeze))
        check(not sb.acks_after(old, t_elect), "%s acknowledged writes after the election" % old.name,
              c, sb.summary)
        print("watchdog: host reset %.2fs, leader %.2fs after the freeze" % (t_reset - t_freeze, t_elect - t_freeze))
        check("watchdog fired" in old.watchdog_log_text(), "the emulator's log does not say it fired", c,
              lambda: old.watchdog_log_text()[-2000:])
        old.start_host()                    # the reset host boots again
        wait_streaming(c, old, new)
    print(sb.summary())
    sb.check()
    c.wait_healthy(timeout=60)


# --------------------------------------------------------------------------
# 3. partition

def test_partitioned_primary_stops_writes_before_new_leader(make_cluster):
    """Cut the primary's host from ZooKeeper and the other hosts (nftables in
    its namespace; the test process, 10.47.N.1, still reaches it, so the
    split-brain writer keeps trying on it directly). Its last acknowledged
    write must precede the new leader's election and the first write on the
    new timeline; healed, it rejoins as a standby. Timings: ttl 10 /
    loop_wait 2 / retry_timeout 2."""
    c = start_cluster(make_cluster)
    old = c.node("pg-1")
    with SplitBrainChecker(c) as sb, c.leader_watch() as lw:
        sb.wait_acks(old, 20)
        t_cut = time.monotonic()
        old.host.isolate("nft", allow_observer=True)
        new, t_elect = wait_new_leader(c, lw, old, t_cut)
        wait_promoted(c, new)
        sb.wait_acks(new, 5, after=t_elect)
        time.sleep(2)
        last_old = sb.last_ack(old)
        first_new = sb.first_ack(new, after=t_cut)
        check(last_old is not None and first_new is not None, "no acks to compare", c, sb.summary)
        check(last_old.acked < t_elect, "%s acknowledged a write %.3fs after the cut, after the new leader "
              "was elected (%.3fs)" % (old.name, last_old.acked - t_cut, t_elect - t_cut), c, sb.summary)
        check(last_old.acked < first_new.sent, "old primary's last ack (%.3fs) not before the new primary's "
              "first write was sent (%.3fs)" % (last_old.acked - t_cut, first_new.sent - t_cut), c, sb.summary)
        check(last_old.acked < t_cut + TTL, "old primary acked %.3fs after the cut (session timeout %ds)"
              % (last_old.acked - t_cut, TTL), c, sb.summary)
        print("partition: old primary's last ack %.2fs after the cut, leader %.2fs, first new ack %.2fs"
              % (last_old.acked - t_cut, t_elect - t_cut, first_new.acked - t_cut))
        old.host.heal()
        t_heal = time.monotonic()
        wait_streaming(c, old, new)
        t_rejoined = time.monotonic()
        check(not sb.acks_after(old, t_elect), "%s acknowledged writes after the election" % old.name,
              c, sb.summary)
    print("partition: rejoined %.1fs after heal" % (t_rejoined - t_heal))
    print(sb.summary())
    sb.check()
    c.wait_healthy(timeout=60)


# --------------------------------------------------------------------------
# 4. no role change; quorum loss; failsafe

def test_partitioned_standby_changes_no_role(make_cluster):
    """Cut a standby from everything for 2 x ttl (its ZooKeeper session expires):
    the leader znode never changes, nobody else answers /primary, and writes on
    the primary continue throughout (no gap > 3 s); healed, it streams again.
    Timings: ttl 10 / loop_wait 2 / retry_timeout 2."""
    c = start_cluster(make_cluster)
    primary, standby = c.node("pg-1"), c.node("pg-3")
    with SplitBrainChecker(c) as sb, c.leader_watch() as lw, c.monitor(interval=0.5) as mon:
        sb.wait_acks(primary, 20)
        t_cut = time.monotonic()
        standby.host.isolate("nft", allow_observer=True)
        time.sleep(2 * TTL + 2)
        standby.host.heal()
        wait_streaming(c, standby, primary, timeout=90)
        c.wait_healthy(timeout=60)
        time.sleep(2 * LOOP_WAIT)
        t_end = time.monotonic()
    diag = lambda: "%s\n%s\n%s" % (mon.timeline(), lw.describe(t_cut), sb.summary())  # noqa: E731
    check([v for _, v in lw.changes] == [primary.name], "leader znode changed: %s" % lw.describe(t_cut), c, diag)
    check(mon.answered_200() == {primary.name}, "nodes answering /primary: %s" % mon.answered_200(), c, diag)
    gap = sb.max_gap(primary, t_cut, t_end)
    check(gap < 3.0, "writes on %s stalled for %.2fs" % (primary.name, gap), c, diag)
    check({a.node for a in sb.acks()} == {primary.name}, "writes acknowledged by %s"
          % sorted({a.node for a in sb.acks()}), c, diag)
    print("standby partition: longest write gap on the primary %.2fs" % gap)
    sb.check()


def test_zookeeper_ensemble_one_down_no_change_quorum_loss_fences(make_cluster):
    """3-server ZooKeeper ensemble. (a) The ensemble's leader server stops:
    sessions move to the others, no role change, writes continue. (b) A second
    server stops (no quorum): the primary refuses writes within ttl (its lease
    counts from its last answered request, so no ack later than ttl after the
    quorum loss), nobody promotes. (c) Quorum back: one healthy primary.
    Timings: ttl 10 / loop_wait 2 / retry_timeout 2; ZooKeeper tickTime 2000."""
    c = start_cluster(make_cluster, zk_servers=3)
    primary = c.node("pg-1")
    with SplitBrainChecker(c) as sb, c.leader_watch() as lw, c.monitor(interval=0.5) as mon:
        sb.wait_acks(primary, 20)
        zk_leader = next(z for z in c.zookeepers if z.mode() == "leader")
        t1 = time.monotonic()
        zk_leader.stop()
        time.sleep(TTL + 2 * LOOP_WAIT)
        check(primary.accepts_writes(), "primary refuses writes with 2 of 3 ZooKeeper servers up", c)
        check(c.leader_name() == primary.name, "leader znode = %r" % c.leader_name(), c)
        gap1 = sb.max_gap(primary, t1, time.monotonic())
        check(gap1 < TTL - 2, "writes stalled %.2fs after losing one ZooKeeper server" % gap1, c, sb.summary)
        check(mon.answered_200() == {primary.name}, "nodes answering /primary: %s" % mon.answered_200(), c)
        check(lw.values() == [primary.name], "leader values with one server down: %s" % lw.values(), c)

        second = next(z for z in c.zookeepers if z is not zk_leader)
        t2 = time.monotonic()
        second.stop()
        time.sleep(TTL + 3)
        late = sb.acks_after(primary, t2 + TTL)
        check(not late, "primary acknowledged %d writes more than ttl after ZooKeeper lost quorum (last %.2fs)"
              % (len(late), late[-1].acked - t2 if late else 0), c, sb.summary)
        last = sb.last_ack(primary)
        fenced_after = (last.acked - t2) if last else None
        check({a.node for a in sb.acks()} == {primary.name}, "another node acknowledged writes", c, sb.summary)
        wait_for(lambda: not any(n.is_primary() for n in c.nodes), timeout=LOOP_WAIT * 3 + 5, interval=0.5,
                 description="no node answers /primary without ZooKeeper quorum", state=c.diagnostics)

        for z in (second, zk_leader):
            z.start(wait=False)
        for z in (second, zk_leader):
            z.wait_serving(60)
        t3 = time.monotonic()
        p = c.wait_healthy(timeout=120)
        wait_promoted(c, p)
        t_back = time.monotonic()
    print("zk ensemble: write gap with one server down %.2fs; last ack %.2fs after quorum loss; "
          "healthy %.1fs after quorum is back (primary %s)" % (gap1, fenced_after or -1, t_back - t3, p.name))
    print(mon.timeline())
    print(sb.summary())
    sb.check()


def test_failsafe_mode_keeps_primary_without_zookeeper_quorum(make_cluster):
    """failsafe_mode: true in the config znode (Patroni 3). With 2 of 3
    ZooKeeper servers down but every member reachable over REST, the primary
    keeps committing for 3 x ttl (no gap > 3 s), nobody else becomes primary,
    and after the quorum returns the roles are unchanged. Timings: ttl 10 /
    loop_wait 2 / retry_timeout 2."""
    c = start_cluster(make_cluster, zk_servers=3, config=dict(FAST, failsafe_mode=True))
    primary = c.node("pg-1")
    time.sleep(2 * LOOP_WAIT)              # a few loops with failsafe_mode known to everyone
    with SplitBrainChecker(c) as sb, c.leader_watch() as lw, c.monitor(interval=0.5) as mon:
        sb.wait_acks(primary, 20)
        down = c.zookeepers[1:]
        t_loss = time.monotonic()
        for z in down:
            z.stop()
        check(all(z.mode() is None for z in c.zookeepers), "a ZooKeeper server still serves", c)
        time.sleep(3 * TTL)
        t_restore = time.monotonic()
        gap = sb.max_gap(primary, t_loss, t_restore)
        for z in down:
            z.start(wait=False)
        for z in down:
            z.wait_serving(60)
        wait_for(lambda: c.leader_name(timeout=2) == primary.name, timeout=60, interval=0.5,
                 description="leader znode %s after the quorum returned" % primary.name, state=c.diagnostics)
        c.wait_healthy(timeout=90)
        time.sleep(2 * LOOP_WAIT)
    diag = lambda: "%s\n%s\n%s" % (mon.timeline(), lw.describe(t_loss), sb.summary())  # noqa: E731
    check(gap < 3.0, "failsafe: writes on %s stalled %.2fs while ZooKeeper had no quorum" % (primary.name, gap),
          c, diag)
    check(mon.answered_200() == {primary.name}, "nodes answering /primary: %s" % mon.answered_200(), c, diag)
    check(lw.values() == [primary.name], "leader values %s" % lw.values(), c, diag)
    print("failsafe: longest write gap on the primary without quorum %.2fs" % gap)
    sb.check()


def test_failsafe_mode_fences_when_a_member_cannot_confirm(make_cluster):
    """failsafe_mode: true, but pg-3 is cut off (nftables, the test process
    still reaches it) at the moment 2 of 3 ZooKeeper servers stop: pg-3 is
    still a member when ZooKeeper goes away, cannot answer the leader's POST
    /failsafe, so failsafe must not hold: the primary stops acknowledging
    writes within ttl, and nobody else becomes primary. Quorum back and pg-3
    healed: one healthy primary. Timings: ttl 10 / loop_wait 2 /
    retry_timeout 2."""
    c = start_cluster(make_cluster, zk_servers=3, config=dict(FAST, failsafe_mode=True))
    primary, cut = c.node("pg-1"), c.node("pg-3")
    time.sleep(2 * LOOP_WAIT)
    with SplitBrainChecker(c) as sb, c.monitor(interval=0.5) as mon:
        sb.wait_acks(primary, 20)
        down = c.zookeepers[1:]
        t_loss = time.monotonic()
        cut.host.isolate("nft", allow_observer=True)
        for z in down:
            z.stop()
        time.sleep(TTL + 4)
        late = sb.acks_after(primary, t_loss + TTL)
        last = sb.last_ack(primary)
        print("failsafe with an unreachable member: last ack %.2fs after the quorum loss"
              % ((last.acked - t_loss) if last else -1))
        check(not late, "failsafe kept %s writing although %s could not confirm: %d acks more than ttl after "
              "the quorum loss (last %.2fs)" % (primary.name, cut.name, len(late), last.acked - t_loss),
              c, sb.summary)
        cut.host.heal()
        for z in down:
            z.start(wait=False)
        for z in down:
            z.wait_serving(60)
        p = c.wait_healthy(timeout=120)
        wait_promoted(c, p)
    check(len(mon.answered_200()) <= 2, "nodes answering /primary: %s" % mon.answered_200(), c, mon.timeline)
    check({a.node for a in sb.acks()} <= {primary.name, p.name}, "writes acknowledged by %s"
          % sorted({a.node for a in sb.acks()}), c, sb.summary)
    sb.check()


# --------------------------------------------------------------------------
# 5. lag and nofailover

def make_lagging(c, primary, standby, mb=4):
    """Cut standby <-> primary (standby keeps ZooKeeper and the other hosts),
    write `mb` MB on the primary, wait until the status znode's optime covers
    it. pg_ha, like Patroni, measures a standby by max(received, replayed), so
    pausing replay alone would not make it lag. Returns the lag in bytes."""
    standby.host.isolate("nft", peers=[primary.host])
    primary.sql("create table if not exists lag_t(id int, pad text)")
    primary.sql("insert into lag_t select g, repeat('x', 1000) from generate_series(1, %d) g" % (mb * 1000))
    target = primary.current_lsn()
    wait_for(lambda: (c.status_optime() or 0) >= target, timeout=3 * LOOP_WAIT + 15, interval=0.3,
             description="status znode optime >= %d" % target,
             state=lambda: "status znode: %s" % c.zk_get("status"))
    lag = target - standby.current_lsn()
    check(lag > LAG_LIMIT, "%s lags only %d bytes" % (standby.name, lag), c)
    return lag


def test_lagging_standby_not_promoted_healthy_one_is(make_cluster):
    """pg-2 lags ~4 MB (> maximum_lag_on_failover 1 MB) when the primary's
    host dies: pg-3 is promoted, pg-2 never answers /primary; once it can
    reach the new leader pg-2 follows it. Timings: ttl 10 / loop_wait 2 /
    retry_timeout 2, maximum_lag_on_failover 1 MB."""
    c = start_cluster(make_cluster, config=dict(FAST, maximum_lag_on_failover=LAG_LIMIT))
    p1, p2, p3 = c.nodes
    with SplitBrainChecker(c) as sb, c.leader_watch() as lw, c.monitor(interval=0.5) as mon:
        lag = make_lagging(c, p1, p2)
        t_kill = time.monotonic()
        p1.kill_host()
        new, t_elect = wait_new_leader(c, lw, p1, t_kill, allowed=[p3])
        wait_promoted(c, new)
        p2.host.heal()
        wait_streaming(c, p2, p3)
        time.sleep(2 * LOOP_WAIT)
    check("pg-2" not in mon.answered_200() and "pg-2" not in lw.values(),
          "lagging pg-2 was primary/leader: %s %s" % (mon.answered_200(), lw.values()), c)
    print("lagging standby: pg-2 lagged %d bytes; pg-3 leader %.2fs after the kill" % (lag, t_elect - t_kill))
    sb.check()


def test_nofailover_and_lagging_standbys_are_never_promoted(make_cluster):
    """pg-2 is tagged nofailover (pg_ha.nofailover = on via node_settings) and
    pg-3 lags beyond maximum_lag_on_failover (1 MB) when pg-1's host dies: no
    one takes the leader lock for 2 x ttl + 5 x loop_wait after the old lock
    expired. pg-1 powered on again takes the lead back (it is the most advanced
    member). Then, with pg-3 caught up, pg-1 dies again: pg-3 is promoted,
    never pg-2 (which would win a tie by name). Timings: ttl 10 / loop_wait 2 /
    retry_timeout 2, maximum_lag_on_failover 1 MB."""
    c = start_cluster(make_cluster, config=dict(FAST, maximum_lag_on_failover=LAG_LIMIT),
                      node_settings={"pg-2": "pg_ha.nofailover = on"})
    p1, p2, p3 = c.nodes
    tags = (c.members().get("pg-2") or {}).get("tags") or {}
    check(tags.get("nofailover") is True, "pg-2's member znode tags: %r" % tags, c)
    with SplitBrainChecker(c) as sb, c.leader_watch() as lw, c.monitor(interval=0.5) as mon:
        lag = make_lagging(c, p1, p3)
        t_kill = time.monotonic()
        p1.kill_host()
        wait_for(lambda: lw.current() is None and lw.changes[-1][0] > t_kill, timeout=TTL + 10, interval=0.1,
                 description="the leader znode to expire", state=lambda: lw.describe(t_kill))
        t_gone = time.monotonic()
        hold_for = 2 * TTL + 5 * LOOP_WAIT
        hold(hold_for, lambda: lw.current() is None and not p2.is_primary() and not p3.is_primary(),
             "without a leader", c)
        check(p2.in_recovery() and p3.in_recovery(), "a standby left recovery", c)
        behind = (c.status_optime() or 0) - p3.current_lsn()
        check(behind > LAG_LIMIT, "pg-3 is only %d bytes behind the status optime now" % behind, c)
        # recovery: the old primary powers on and leads again
        p3.host.heal()
        p1.start_host()
        wait_for(lambda: lw.current() == "pg-1", timeout=REJOIN_TIMEOUT, interval=0.2,
                 description="pg-1 to take the leader lock back", state=c.diagnostics)
        c.wait_healthy(timeout=REJOIN_TIMEOUT)
        # the split-brain checker writes every 20 ms: read the primary's
        # position first, then the standby's (the other order never catches up)
        wait_for(lambda: (lambda target: p3.current_lsn() >= target)(p1.current_lsn()), timeout=30,
                 interval=0.5, description="pg-3 caught up", state=c.diagnostics)
        # phase B: pg-3 is eligible, pg-2 still tagged
        time.sleep(2 * LOOP_WAIT)             # the status znode and member znodes catch up
        t_kill2 = time.monotonic()
        p1.kill_host()
        new, t_elect = wait_new_leader(c, lw, p1, t_kill2, allowed=[p3])
        wait_promoted(c, new)
        wait_streaming(c, p2, p3, timeout=60)
        time.sleep(2 * LOOP_WAIT)
    diag = lambda: "%s\n%s" % (mon.timeline(), lw.describe(t_kill))  # noqa: E731
    check("pg-2" not in mon.answered_200() and "pg-2" not in lw.values(),
          "nofailover pg-2 became primary/leader", c, diag)
    check(lw.values() == ["pg-1", "pg-3"], "leader values %s" % lw.values(), c, diag)
    print("ineligible standbys: pg-3 lagged %d bytes; no leader for %.0fs after the lock expired "
          "(%.1fs after the kill); phase B: pg-3 leader %.2fs after the kill"
          % (lag, hold_for, t_gone - t_kill, t_elect - t_kill2))
    sb.check()
