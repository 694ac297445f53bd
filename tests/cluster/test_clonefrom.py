"""The clonefrom tag (issue 12 item 7; Patroni's get_clone_member): a new
replica copies its data from a running member tagged clonefrom instead of the
leader, then streams from the leader. pg-2 is tagged; pg-1 starts first and
leads, pg-2 clones from pg-1, then pg-3 clones from pg-2 (its log says so and
pg_basebackup connected to pg-2's address) and streams from pg-1."""
import pytest

from harness import wait_for

pytestmark = pytest.mark.needs_pg_ha


def test_new_replica_clones_from_the_clonefrom_member(make_cluster, require_pg_ha):
    c = make_cluster(node_settings={"pg-2": "pg_ha.clonefrom = on"}, haproxy=False)
    c.start_zookeeper()
    p1, p2, p3 = c.node("pg-1"), c.node("pg-2"), c.node("pg-3")
    c.start_nodes([p1])
    c.wait_for_primary(timeout=180, nodes=[p1])
    p1.sql("CREATE TABLE clone_t AS SELECT 42 AS answer")
    c.start_nodes([p2])
    wait_for(lambda: p2.streams_from(p1) and (c.members().get("pg-2") or {}).get("state") == "running",
             timeout=180, interval=0.5, description="pg-2 streams from pg-1 and is registered running",
             state=c.diagnostics)
    wait_for(lambda: ((c.members().get("pg-2") or {}).get("tags") or {}).get("clonefrom") is True,
             timeout=30, interval=0.5, description="pg-2 publishes the clonefrom tag", state=c.diagnostics)
    c.start_nodes([p3])
    wait_for(lambda: p3.streams_from(p1), timeout=180, interval=0.5,
             description="pg-3 streams from the leader pg-1", state=c.diagnostics)
    log = p3.log_path.read_text(errors="replace")
    clone_lines = [ln for ln in log.splitlines() if "cloning from" in ln]
    assert clone_lines and "cloning from pg-2 (tagged clonefrom) (%s:" % p2.ip in clone_lines[0], \
        "pg-3's clone:\n%s\n%s" % ("\n".join(clone_lines), p3.log_tail(60))
    assert p3.sql_value("SELECT answer FROM clone_t") == 42
    print(clone_lines[0].strip())
