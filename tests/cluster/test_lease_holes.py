"""Commits that used to slip past the commit-time lease (issue 9; review
2026-12-01-reliability F2, F7).

One cluster (pg-1 primary, pg-2 standby; max_prepared_transactions = 10 on
both, a standby needs at least the primary's value). Sessions to pg-1 are
opened and prepared while its lease is valid; then its postmaster and pg_ha
worker are frozen (SIGSTOP: the backends keep running, the lease is no longer
renewed), pg-2 is elected and promotes, and only then, with the old
primary's lease long over, the kept sessions try:

  A  COMMIT PREPARED of a transaction prepared before the freeze: it runs in a
     transaction without an XID, so the pre-commit check did not see it (F2).
     Must fail or cut the connection, and the row must not be visible on the
     new leader (where the transaction is still prepared).
  B  pg_logical_emit_message(false, ...) in BEGIN/COMMIT (WAL without an XID;
     now refused before it writes), a NOTIFY-only transaction and an
     autocommit pg_notify() (the XID is assigned only after the pre-commit
     check; local listeners got the notification) (F7). Must be refused; a
     listener must get nothing.

Controls that must keep working after the deadline: ROLLBACK PREPARED, a
read-only transaction, and a read that sets hint bits (with data checksums it
writes full-page images: WAL without an XID that is no client write).

Before issue 9 the assertions marked "fails before issue 9" failed.
Timings: ttl 10 / loop_wait 2 / retry_timeout 2 (as test_failover.py); lease
margin 2 s, so the frozen primary's lease ends at most ~8 s after the freeze
and the new leader appears ~10-14 s after it.
"""
import time

import psycopg2
import pytest

import harness
from conftest import BOOTSTRAP_TIMEOUT
from harness import wait_for

pytestmark = pytest.mark.needs_pg_ha

TTL = 10
FAST = {"ttl": TTL, "loop_wait": 2, "retry_timeout": 2}
FAILOVER_TIMEOUT = TTL + 5 * 2 + 20
SETTINGS = "max_prepared_transactions = 10"


def check(cond, msg, c, *extra):
    if not cond:
        parts = [msg] + [e() if callable(e) else str(e) for e in extra] + [c.diagnostics(60)]
        raise AssertionError("\n".join(parts))


def attempt(conn, statements):
    """Run statements one by one on conn (autocommit; "begin" opens a block).
    Returns ("ack", None), ("error", text) with the session still open, or
    ("cut", text) when the connection was closed."""
    try:
        for s in statements:
            harness.query(conn, s)
    except psycopg2.Error as exc:
        text = "%s: %s" % (type(exc).__name__, str(exc).strip()[:300])
        if conn.closed:
            return "cut", text
        try:
            harness.query(conn, "rollback")      # leave a failed block; a warning outside one
        except psycopg2.Error:
            return "cut", text
        return "error", text
    return "ack", None


def refused(outcome):
    kind, text = outcome
    return kind == "cut" or (kind == "error" and "leader lease" in text)


def test_commits_without_xid_after_the_lease_ran_out(make_cluster):
    c = make_cluster(nodes=2, haproxy=False, extra_settings=SETTINGS, dynamic_config=dict(FAST))
    c.start_zookeeper()
    c.start_nodes(["pg-1"])
    c.wait_for_primary(timeout=BOOTSTRAP_TIMEOUT, nodes=["pg-1"])
    c.start_nodes(["pg-2"])
    old = c.wait_healthy(timeout=BOOTSTRAP_TIMEOUT)
    check(old.name == "pg-1", "pg-1 bootstrapped first but %s is primary" % old.name, c)
    standby = c.node("pg-2")
    check(old.sql_value("show max_prepared_transactions") == "10"
          and standby.sql_value("show max_prepared_transactions") == "10",
          "max_prepared_transactions is not 10 on both nodes", c)

    old.sql("create table holes_t(id int primary key, note text)")
    old.sql("create table read_t(id int primary key)")
    old.sql("insert into read_t select generate_series(1, 100)")
    # nobody reads hint_t before the deadline: its rows' hint bits are unset
    old.sql("create table hint_t(id int) with (autovacuum_enabled = off)")
    old.sql("insert into hint_t select generate_series(1, 1000)")
    old.sql("checkpoint")

    def connect():
        return old.connect(statement_timeout_ms=10000)

    s_2pc, s_rb, s_msg, s_notify, s_pgnotify, s_listen, s_read = (connect() for _ in range(7))
    try:
        # prepared while the lease is valid
        for conn, gid, row in ((s_2pc, "pgha_hole_commit", 1), (s_rb, "pgha_hole_rollback", 2)):
            check(attempt(conn, ["begin", "insert into holes_t values (%d, '%s')" % (row, gid),
                                 "prepare transaction '%s'" % gid]) == ("ack", None),
                  "cannot prepare %s with a valid lease" % gid, c)
        harness.query(s_listen, "listen pgha_hole")
        # every row of read_t hinted now, so reading it later writes no WAL
        check(harness.query(s_read, "select count(*) from read_t")[0][0] == 100, "read_t", c)
        check(harness.query(s_read, "select public.ha_lease_remaining_ms()")[0][0] > 0,
              "pg-1 has no lease before the freeze", c)
        # the PREPARE records reach the standby before the freeze
        lsn = harness.query(s_read, "select pg_current_wal_insert_lsn()::text")[0][0]
        wait_for(lambda: standby.sql_value("select pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)),
                 timeout=30, interval=0.2, description="pg-2 replayed the PREPAREs", state=c.diagnostics)

        with c.leader_watch() as lw:
            pids = old.freeze()
            t_freeze = time.monotonic()
            try:
                wait_for(lambda: harness.query(s_read, "select public.ha_lease_remaining_ms()")[0][0] == 0,
                         timeout=TTL + 5, interval=0.2, description="the frozen primary's lease to run out",
                         state=c.diagnostics)
                t_expired = time.monotonic()
                wait_for(lambda: lw.current() not in (None, old.name), timeout=FAILOVER_TIMEOUT, interval=0.05,
                         description="a new leader znode", state=lambda: lw.describe(t_freeze) + c.diagnostics())
                check(lw.current() == standby.name, "unexpected leader %s" % lw.current(), c)
                wait_for(lambda: standby.in_recovery() is False, timeout=30, interval=0.2,
                         description="pg-2 promoted", state=c.diagnostics)
                print("lease ran out %.2fs, pg-2 promoted %.2fs after the freeze"
                      % (t_expired - t_freeze, time.monotonic() - t_freeze))

                # A (F2): fails before issue 9 (COMMIT PREPARED was acknowledged)
                a = attempt(s_2pc, ["commit prepared 'pgha_hole_commit'"])
                # B (F7): each fails before issue 9 (acknowledged)
                b_msg = attempt(s_msg, ["begin", "select pg_logical_emit_message(false, 'pgha', 'hole')", "commit"])
                b_notify = attempt(s_notify, ["begin", "notify pgha_hole, 'statement'", "commit"])
                b_pgnotify = attempt(s_pgnotify, ["select pg_notify('pgha_hole', 'function')"])
                # controls: must keep working without a lease
                rb = attempt(s_rb, ["rollback prepared 'pgha_hole_rollback'"])
                ro = attempt(s_read, ["begin", "select count(*) from read_t", "commit"])
                # the first reader of hint_t since the checkpoint sets hint bits: full-page images
                # (data checksums), WAL without an XID that is no client write
                harness.query(s_read, "begin")
                plan = [r[0] for r in harness.query(s_read, "explain (analyze, wal, costs off, timing off) "
                                                             "select count(*) from hint_t")]
                ro_fpi = attempt(s_read, ["commit"])
                time.sleep(1)
                s_listen.poll()
                heard = [n.payload for n in s_listen.notifies]
                still_prepared = [r[0] for r in harness.query(s_read, "select gid from pg_prepared_xacts order by 1")]
            finally:
                old.thaw(pids)

        outcomes = "A commit prepared %s; B message %s, notify %s, pg_notify %s; rollback prepared %s; read %s; " \
                   "read with full-page images %s; listener heard %s; prepared on pg-1: %s" % (
                       a, b_msg, b_notify, b_pgnotify, rb, ro, ro_fpi, heard, still_prepared)
        print(outcomes)
        check(refused(a), "COMMIT PREPARED after the lease ran out was not refused: %s" % (a,), c, outcomes)
        check(refused(b_msg), "a non-transactional logical message committed without a lease: %s" % (b_msg,),
              c, outcomes)
        check(refused(b_notify), "a NOTIFY-only transaction committed without a lease: %s" % (b_notify,),
              c, outcomes)
        check(refused(b_pgnotify), "pg_notify() committed without a lease: %s" % (b_pgnotify,), c, outcomes)
        check(not heard, "a local listener received notifications sent without a lease: %s" % heard, c, outcomes)
        check(rb == ("ack", None), "ROLLBACK PREPARED was refused without a lease: %s" % (rb,), c, outcomes)
        check(ro == ("ack", None), "a read-only transaction was refused without a lease: %s" % (ro,), c, outcomes)
        check(any("fpi=" in line for line in plan), "reading hint_t wrote no full-page image: %s" % plan, c)
        check(ro_fpi == ("ack", None), "a read that set hint bits (full-page images) was refused without a "
              "lease: %s; %s" % (ro_fpi, plan), c, outcomes)
        if a[0] == "error":
            check("pgha_hole_commit" in still_prepared, "the refused COMMIT PREPARED left no prepared "
                  "transaction on pg-1", c, outcomes)

        # the new leader: the transaction is in doubt there, its row invisible
        check(standby.sql_value("select count(*) from holes_t") == 0, "rows of the prepared transactions are "
              "visible on the new leader", c, outcomes)
        check(standby.sql("select gid from pg_prepared_xacts where gid = 'pgha_hole_commit'"),
              "pgha_hole_commit is not prepared on the new leader", c, outcomes)
    finally:
        for conn in (s_2pc, s_rb, s_msg, s_notify, s_pgnotify, s_listen, s_read):
            try:
                conn.close()
            except psycopg2.Error:
                pass
