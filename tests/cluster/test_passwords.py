"""A replication password with a space, a single quote and a backslash works
end to end (issue 8 item 5, review S6/S7): the entrypoint writes it into the
settings file PostgreSQL-quoted, pg_hactl boot reads it the same way and clones
with it (pg_basebackup), the standbys stream with the primary_conninfo boot
wrote, and after a failover the remaining standby follows the new leader with
the primary_conninfo the worker builds (libpq-quoted, ALTER SYSTEM)."""
import time

from harness import wait_for
from test_failover import FAILOVER_TIMEOUT, start_cluster, wait_new_leader, wait_streaming

PASSWORD = "rep l'a\\ss"  # space, single quote, backslash


def test_replication_password_with_space_quote_and_backslash(make_cluster, require_pg_ha):
    c = start_cluster(make_cluster, env={"PGHA_REPLICATION_PASSWORD": PASSWORD})
    old = c.node("pg-1")
    standbys = [n for n in c.nodes if n is not old]
    for s in standbys:
        wait_streaming(c, s, old)  # cloned and streaming with the password boot wrote
    # boot wrote the password into the standbys' primary_conninfo, libpq-quoted
    assert "'rep l\\'a\\\\ss'" in standbys[0].sql_value("SHOW primary_conninfo")
    with c.leader_watch() as lw:
        t_kill = time.monotonic()
        old.kill_host()
        new, _ = wait_new_leader(c, lw, old, t_kill, timeout=FAILOVER_TIMEOUT, allowed=standbys)
    other = next(s for s in standbys if s is not new)
    # The worker re-points the other standby (ALTER SYSTEM primary_conninfo with the quoted password).
    wait_streaming(c, other, new)
    conninfo = other.sql_value("SHOW primary_conninfo")
    assert "'rep l\\'a\\\\ss'" in conninfo, conninfo
    wait_for(lambda: new.sql_value("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'") >= 1,
             timeout=30, interval=0.5, description="the new primary streams to the other standby")
