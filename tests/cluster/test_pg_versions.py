"""What differs per PostgreSQL major (issue 13). pg_ha persists the parameters it
sets (primary_conninfo, primary_slot_name, ...) in pg_ha.auto.conf in the data
directory, never with ALTER SYSTEM: with allow_alter_system = off (17+) a
failover still re-points the remaining standby. The file is pg_ha's (mode
0600), included last from postgresql.conf, and postgresql.auto.conf carries
none of its keys."""
import stat
import time

import harness
from test_failover import FAILOVER_TIMEOUT, start_cluster, wait_new_leader, wait_streaming


def _settings_of(node, name):
    return node.sql_value("SELECT coalesce(string_agg(sourcefile, ','), '') FROM pg_catalog.pg_file_settings "
                          "WHERE name = %s AND applied", (name,))


def test_failover_repoints_standby_without_alter_system(make_cluster, require_pg_ha):
    major = harness.pg_major()
    # ALTER SYSTEM forbidden everywhere where PostgreSQL can (17+).
    c = start_cluster(make_cluster, extra_settings="allow_alter_system = off" if major >= 17 else "")
    old = c.node("pg-1")
    if major >= 17:
        assert old.sql_value("SHOW allow_alter_system") == "off"
    standbys = [n for n in c.nodes if n is not old]
    for s in standbys:
        wait_streaming(c, s, old)
        f = s.data_dir / "pg_ha.auto.conf"
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, oct(f.stat().st_mode)
        assert "primary_conninfo" in f.read_text()
        assert "primary_conninfo" not in (s.data_dir / "postgresql.auto.conf").read_text()
        assert _settings_of(s, "primary_conninfo").endswith("/pg_ha.auto.conf")
    with c.leader_watch() as lw:
        t_kill = time.monotonic()
        old.kill_host()
        new, _ = wait_new_leader(c, lw, old, t_kill, timeout=FAILOVER_TIMEOUT, allowed=standbys)
    other = next(s for s in standbys if s is not new)
    wait_streaming(c, other, new)  # re-pointed through pg_ha.auto.conf and a reload
    assert _settings_of(other, "primary_conninfo").endswith("/pg_ha.auto.conf")
