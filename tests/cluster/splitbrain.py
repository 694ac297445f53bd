"""Split-brain checker: one writer per node, each committing a row every ~20 ms
over its own direct connection (not through HAProxy), recording for every
acknowledged commit the node, the timeline it was written on and the
client-side acknowledgement time.

check() fails when
  - two nodes acknowledged commits on the same timeline (two writers on one
    history), or
  - the acknowledgement windows of two timelines overlap: for T1 < T2 every
    ack on T1 must precede every ack on T2 (a node that acknowledged a write on
    the old timeline after the new one took writes is a second writer).

Standbys are asked too: the write function does nothing in recovery, so a
node that is a standby only shows up as "standby" polls, never as an error.

    with SplitBrainChecker(cluster) as sb:
        ... fault ...
    sb.check()              # raises AssertionError with a summary

Times are time.monotonic(), like harness.LeaderWatch.
"""
import threading
import time

import psycopg2

import harness

SETUP_SQL = """
create table if not exists splitbrain_t(
    id bigserial primary key,
    node text not null,
    tl int not null,
    at timestamptz not null default clock_timestamp());
create or replace function splitbrain_write(p_node text, out o_id bigint, out o_tl text)
language plpgsql as $$
begin
    if pg_is_in_recovery() then
        return;                        -- a standby: no write, no error in its log
    end if;
    o_tl := substr(pg_walfile_name(pg_current_wal_insert_lsn()), 1, 8);
    insert into splitbrain_t(node, tl) values (p_node, ('x' || o_tl)::bit(32)::int)
        returning id into o_id;
end $$;
"""


class Ack:
    __slots__ = ("node", "tl", "sent", "acked", "row_id")

    def __init__(self, node, tl, sent, acked, row_id):
        self.node, self.tl, self.sent, self.acked, self.row_id = node, tl, sent, acked, row_id

    def __repr__(self):
        return "Ack(%s tl=%d id=%s at %.3f)" % (self.node, self.tl, self.row_id, self.acked)


class NodeWriter(threading.Thread):
    """Writes through one node, reconnecting after errors."""

    def __init__(self, node, interval, stop_event, connect_timeout=2, statement_timeout_ms=3000):
        super().__init__(daemon=True, name="splitbrain-%s" % node.name)
        self.node = node
        self.interval = interval
        self.stop_event = stop_event
        self.connect_timeout = connect_timeout
        self.statement_timeout_ms = statement_timeout_ms
        self.acks = []                 # [Ack]
        self.standby_polls = 0
        self.errors = []               # [(time, short text)] (bounded)
        self.error_count = 0
        self.attempts = 0
        self.lock = threading.Lock()

    def _error(self, exc):
        self.error_count += 1
        text = "%s: %s" % (type(exc).__name__, str(exc).strip().splitlines()[0] if str(exc).strip() else "")
        with self.lock:
            if len(self.errors) >= 200:
                del self.errors[100:101]   # keep the first 100 and the newest
            self.errors.append((time.monotonic(), text[:200]))

    def run(self):
        conn = None
        while not self.stop_event.is_set():
            if conn is None:
                try:
                    conn = harness.pg_connect(self.node.ip, self.node.port, connect_timeout=self.connect_timeout,
                                              statement_timeout_ms=self.statement_timeout_ms,
                                              application_name="splitbrain")
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
                if conn.closed:
                    conn = None
                else:
                    try:
                        conn.close()
                    except psycopg2.Error:
                        pass
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
            try:
                conn.close()
            except psycopg2.Error:
                pass


class SplitBrainChecker:
    def __init__(self, cluster, nodes=None, interval=0.02, max_duration=1800.0):
        self.cluster = cluster
        self.nodes = list(nodes or cluster.nodes)
        self.interval = interval
        self.max_duration = max_duration
        self._stop = threading.Event()
        self.writers = {}
        self.t_start = None
        self.t_stop = None
        self._timer = None

    # -- lifecycle
    def start(self, setup_on=None, timeout=30.0):
        """Create the table and function on the primary (setup_on, default the
        current primary), wait until every running standby has them, start the writers."""
        primary = setup_on or self.cluster.wait_for_primary(timeout=timeout)
        def setup():
            primary.sql(SETUP_SQL)
            return True
        harness.wait_for(setup, timeout=timeout, interval=1.0,
                         description="split-brain table and function on %s" % primary.name)
        for n in self.nodes:
            if n is primary:
                continue

            def has_function(n=n):
                return n.sql_value("select count(*) from pg_proc where proname = 'splitbrain_write'") == 1
            harness.wait_for(has_function, timeout=timeout, interval=0.5,
                             description="splitbrain_write() replicated to %s" % n.name)
        self.t_start = time.monotonic()
        for n in self.nodes:
            w = NodeWriter(n, self.interval, self._stop)
            self.writers[n.name] = w
            w.start()
        self._timer = threading.Timer(self.max_duration, self._stop.set)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self):
        self._stop.set()
        if self._timer:
            self._timer.cancel()
        for w in self.writers.values():
            w.join(timeout=10)
        self.t_stop = time.monotonic()
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- queries
    def acks(self, node=None):
        out = []
        for name, w in self.writers.items():
            if node is None or name == getattr(node, "name", node):
                with w.lock:
                    out.extend(w.acks)
        return sorted(out, key=lambda a: a.acked)

    def last_ack(self, node, before=None):
        acks = [a for a in self.acks(node) if before is None or a.acked < before]
        return acks[-1] if acks else None

    def first_ack(self, node, after=None):
        acks = [a for a in self.acks(node) if after is None or a.acked >= after]
        return acks[0] if acks else None

    def acks_after(self, node, t):
        return [a for a in self.acks(node) if a.acked >= t]

    def max_gap(self, node, start, end):
        """Longest time without an ack on node within [start, end] (edges included)."""
        times = [start] + [a.acked for a in self.acks(node) if start <= a.acked <= end] + [end]
        return max(b - a for a, b in zip(times, times[1:]))

    def wait_acks(self, node, count=1, after=None, timeout=30.0):
        """Wait until node acknowledged `count` writes after `after` (default now)."""
        after = time.monotonic() if after is None else after
        return harness.wait_for(lambda: len(self.acks_after(node, after)) >= count, timeout=timeout,
                                interval=0.1, description="%d acked writes on %s" % (count, getattr(node, "name", node)),
                                state=self.summary)

    # -- verdict
    def violations(self):
        acks = self.acks()
        by_tl = {}
        for a in acks:
            by_tl.setdefault(a.tl, []).append(a)
        problems = []
        for tl, items in sorted(by_tl.items()):
            nodes = sorted({a.node for a in items})
            if len(nodes) > 1:
                per = {n: (min(a.acked for a in items if a.node == n), max(a.acked for a in items if a.node == n))
                       for n in nodes}
                problems.append("timeline %d acknowledged by several nodes: %s" % (
                    tl, ", ".join("%s %.3f..%.3f" % (n, lo - self.t_start, hi - self.t_start)
                                  for n, (lo, hi) in per.items())))
        tls = sorted(by_tl)
        for i, t1 in enumerate(tls):
            last1 = max(by_tl[t1], key=lambda a: a.acked)
            for t2 in tls[i + 1:]:
                first2 = min(by_tl[t2], key=lambda a: a.acked)
                if last1.acked >= first2.acked:
                    overlap = [a for a in by_tl[t1] if a.acked >= first2.acked]
                    problems.append(
                        "timelines %d and %d overlap: %d acks on timeline %d (%s) at or after the first ack on "
                        "timeline %d (%s at %.3fs); last one %s at %.3fs" % (
                            t1, t2, len(overlap), t1, last1.node, t2, first2.node, first2.acked - self.t_start,
                            last1.node, last1.acked - self.t_start))
        return problems

    def summary(self):
        lines = ["split-brain writers (times relative to their start):"]
        for name, w in sorted(self.writers.items()):
            acks = self.acks(name)
            tls = sorted({a.tl for a in acks})
            span = ""
            if acks:
                parts = []
                for tl in tls:
                    on = [a.acked - self.t_start for a in acks if a.tl == tl]
                    parts.append("tl %d: %d acks %.2f..%.2fs" % (tl, len(on), min(on), max(on)))
                span = "; ".join(parts)
            lines.append("  %s: %d attempts, %d acks, %d standby polls, %d errors; %s" % (
                name, w.attempts, len(acks), w.standby_polls, w.error_count, span))
            with w.lock:
                errs = list(w.errors)
            shown = errs[:3] + (errs[-3:] if len(errs) > 6 else errs[3:])
            for t, text in shown:
                lines.append("    error at %.2fs: %s" % (t - self.t_start, text))
        return "\n".join(lines)

    def check(self, min_acks=1):
        """Raise AssertionError on a violation, or when fewer than min_acks
        writes were acknowledged in total (the checker must have seen writes)."""
        problems = self.violations()
        total = len(self.acks())
        if total < min_acks:
            problems.append("only %d acknowledged writes (expected at least %d): the checker saw nothing"
                            % (total, min_acks))
        if problems:
            raise AssertionError("split brain checker: %s\n%s" % ("\n".join(problems), self.summary()))
        return self.summary()
