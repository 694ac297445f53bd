"""Bootstrap defaults that are safe on a shared network (issue 10 item 5):
the default pg_hba.conf lets the superuser in from pg_ha.superuser_networks
only (the other roles from anywhere, with scram-sha-256), and bootstrap
refuses to create a cluster whose superuser has no password."""
import os
import subprocess
import tempfile
import time

import pytest

import harness
from harness import BRIDGE_IP, wait_for

pytestmark = pytest.mark.needs_pg_ha


def psql_from(host, node, user, password):
    """(returncode, output) of a psql login on `node` from inside `host`'s namespace."""
    p = host.exec([harness.PG_BIN / "psql", "-X", "-w", "-h", node.ip, "-p", str(node.port), "-U", user,
                   "-d", "postgres", "-Atc", "select current_user"], check=False, timeout=30,
                  env=dict(os.environ, PGPASSWORD=password, PGCONNECT_TIMEOUT="5"))
    return p.returncode, (p.stdout or "") + (p.stderr or "")


def boot_settings(c, scope, extra=""):
    """A work directory owned by postgres with a settings file for a node n1
    of cluster `scope` (for pg_hactl boot run by hand); (dir, settings file)."""
    work = tempfile.mkdtemp(prefix="pgha-%s-" % scope)
    os.chmod(work, 0o755)
    subprocess.run(["chown", "postgres", work], check=True)
    conf = os.path.join(work, "pg_ha.conf")
    with open(conf, "w") as f:
        f.write("pg_ha.scope = '%s'\npg_ha.node_name = 'n1'\npg_ha.zookeeper_hosts = '%s:%d'\n"
                "pg_ha.connect_address = '127.0.0.1:5499'\npg_ha.replication_password = 'r'\n%s"
                % (scope, c.zookeepers[0].host.ip, harness.ZK_CLIENT_PORT, extra))
    subprocess.run(["chown", "postgres", conf], check=True)
    return work, conf


def test_superuser_only_from_its_networks(make_cluster):
    c = make_cluster(nodes=1, haproxy=False,
                     env={"PGHA_SUPERUSER_NETWORKS": "%s/32" % BRIDGE_IP})
    c.start_zookeeper()
    c.start_nodes()
    node = c.wait_for_primary(timeout=180)
    # From the test process (its network is listed): the superuser logs in.
    assert node.sql_value("select current_user") == harness.SUPERUSER
    other = c.zookeepers[0].host   # another host of the network, not listed
    rc, out = psql_from(other, node, harness.SUPERUSER, harness.SUPERUSER_PASSWORD)
    assert rc != 0 and "pg_hba.conf rejects" in out, "superuser from %s: rc %d %s" % (other.ip, rc, out)
    rc, out = psql_from(other, node, "admin", "admin")
    assert rc == 0 and out.strip() == "admin", "the application role from %s: rc %d %s" % (other.ip, rc, out)
    hba = (node.data_dir / "pg_hba.conf").read_text()
    assert "reject" in hba and "md5" not in hba and "trust" not in hba, hba
    print("superuser from %s refused by pg_hba.conf; admin allowed" % other.ip)


def test_bootstrap_refuses_without_a_superuser_password(make_cluster):
    c = make_cluster(nodes=1, haproxy=False)
    c.start_zookeeper()
    work, conf = boot_settings(c, "nopw")
    p = subprocess.run(["runuser", "-u", "postgres", "--", str(harness.PG_HACTL), "boot", "--config", conf,
                        "--pgdata", os.path.join(work, "data"), "--timeout", "30"],
                       capture_output=True, text=True, timeout=120)
    out = p.stdout + p.stderr
    try:
        assert p.returncode != 0, out
        assert "superuser_password is empty" in out, out
        # the failed bootstrap gave the initialize key back: the next try may bootstrap
        assert wait_for(lambda: c.zk_get("/service/nopw/initialize") is None, timeout=10, interval=0.5,
                        description="initialize released")
        assert not os.path.exists(os.path.join(work, "data", "PG_VERSION")), "a data directory was left"
    finally:
        subprocess.run(["rm", "-rf", work])
    print("bootstrap without a superuser password: %s" % out.strip().splitlines()[-1])


@pytest.mark.parametrize("missing", ["PGHA_SUPERUSER_PASSWORD", "PGHA_REPLICATION_PASSWORD"])
def test_entrypoint_has_no_default_passwords(missing, tmp_path):
    """docker/entrypoint.sh (the image, the systemd example and this harness)
    refuses to start a node without the superuser or the replication
    password, naming the variable, and writes no settings file; the compose
    file has no default for any password either (`${VAR:?message}`)."""
    work = tmp_path / "node"
    work.mkdir()
    harness._chown_postgres(tmp_path)
    harness._chown_postgres(work)
    env = {"PATH": harness.SAFE_PATH, "PGHA_NAME": "pg-x", "PGDATA": str(work / "data"),
           "PGHA_CONFIG_FILE": str(work / "pg_ha.conf"), "PGHA_UNIX_SOCKET_DIR": str(work),
           "PGHA_ZOOKEEPER_HOSTS": "127.0.0.1:1",
           "PGHA_SUPERUSER_PASSWORD": "su s3cret", "PGHA_REPLICATION_PASSWORD": "rep s3cret"}
    del env[missing]
    p = subprocess.run(["runuser", "-u", "postgres", "--", "env", "-i"] + ["%s=%s" % kv for kv in env.items()]
                       + ["sh", str(harness.ENTRYPOINT)], capture_output=True, text=True, timeout=60)
    assert p.returncode != 0, p.stdout + p.stderr
    assert "%s is not set" % missing in p.stderr and "no default passwords" in p.stderr, p.stderr
    assert not (work / "pg_ha.conf").exists(), "a settings file was written"
    assert not (work / "data").exists(), "a data directory was created"
    compose = (harness.REPO_DIR / "docker" / "docker-compose.yml").read_text()
    import re
    uses = re.findall(r"\$\{(PGHA_[A-Z_]*PASSWORD)(:[-?])", compose)
    assert uses and all(op == ":?" for _, op in uses), "compose password defaults: %s" % uses
    print("entrypoint without %s: %s" % (missing, p.stderr.strip().splitlines()[-1]))


def test_never_clones_from_a_member_no_session_owns(make_cluster):
    """Issue 10 item 1: a forged cluster in ZooKeeper (written by anyone who
    can write there: a persistent leader znode and a persistent member znode
    pointing at a server the attacker controls) never makes a new node clone
    from that server. pg_ha and Patroni create member znodes as ephemeral
    nodes; a persistent one has no live session behind it and is ignored,
    with a warning that says so."""
    import json
    import socket
    c = make_cluster(nodes=1, haproxy=False)
    c.start_zookeeper()
    trap = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    trap.bind((BRIDGE_IP, 0))
    trap.listen(16)
    trap.settimeout(0.2)
    port = trap.getsockname()[1]
    k = c.zk()
    base = "/service/forged"
    k.create(base + "/initialize", b"7000000000000000001", makepath=True)
    k.create(base + "/leader", b"intruder")
    k.create(base + "/members/intruder", json.dumps({
        "conn_url": "postgres://%s:%d/postgres" % (BRIDGE_IP, port),
        "api_url": "http://%s:%d/patroni" % (BRIDGE_IP, port), "state": "running", "role": "primary",
        "timeline": 1, "xlog_location": 100000000}).encode(), makepath=True)
    work, conf = boot_settings(c, "forged", "pg_ha.superuser_password = 's'\n")
    p = subprocess.Popen(["runuser", "-u", "postgres", "--", str(harness.PG_HACTL), "boot", "--config", conf,
                          "--pgdata", os.path.join(work, "data"), "--timeout", "20"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    connects = []
    try:
        deadline = time.monotonic() + 60
        while p.poll() is None and time.monotonic() < deadline:
            try:
                conn, addr = trap.accept()
                connects.append(addr)
                conn.close()
            except socket.timeout:
                pass
        if p.poll() is None:
            p.kill()
        out = p.communicate(timeout=30)[0]
        assert not connects, "pg_hactl boot connected to the forged member's server: %s\n%s" % (connects, out)
        assert not os.path.exists(os.path.join(work, "data", "PG_VERSION")), out
        assert "is not ephemeral" in out, out
    finally:
        trap.close()
        subprocess.run(["rm", "-rf", work])
    print("forged persistent leader + member: no connection to it; boot said: %s"
          % [ln for ln in out.splitlines() if "ephemeral" in ln][:1])
