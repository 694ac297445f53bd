"""The user's own Patroni files as pg_ha's configuration (issue 12).

postgres0.yml from ../shared/user-deployment/ (read at test time, never copied
into the repository) becomes postgres0/1/2.yml as the user's README describes
the other nodes (name and connect addresses differ); only what this host needs
changes: the two connect addresses (this host's IP), data_dir, bin_dir (the
installed PostgreSQL major) and the watchdog device (the test has none). One
addition: `post_init` (commented out in the user's file) names a script that
fails the first time, so the bootstrap must be given back and redone.

Three nodes are started through docker/entrypoint.sh with PGHA_PATRONI_CONFIG
(= `pg_hactl boot --patroni-config`); then: a healthy cluster, bootstrap.dcs
is the config key, its postgresql.parameters are in effect on every member
(SHOW; archive_mode = always from the first start, the relative
archive_command archives), the bootstrap users and pg_hba lines work, the
settings file is 0600, every unsupported key is named in a warning, and a
parameter changed in the config key reaches every member."""
import os
import re
import stat
import time
from pathlib import Path

import pytest

from harness import PG_BIN, wait_for

# ../shared/user-deployment beside the tree (as in CI), or $PGHA_USER_DEPLOYMENT
USER_DIR = Path(os.environ.get("PGHA_USER_DEPLOYMENT",
                               Path(__file__).resolve().parents[3] / "shared" / "user-deployment"))
TIMEOUT = float(os.environ.get("PGHA_TEST_BOOTSTRAP_TIMEOUT", 300))

POST_INIT = """#!/bin/sh
# bootstrap.post_init for the test: fails the first time, then proves the URL works.
n=$(cat %(count)s 2>/dev/null || echo 0)
echo $((n + 1)) > %(count)s
[ "$n" -gt 0 ] || { echo "post_init: failing on purpose (first bootstrap)"; exit 3; }
exec psql "$1" -v ON_ERROR_STOP=1 -c "CREATE TABLE post_init_ran (url_had_password boolean)" \\
    -c "INSERT INTO post_init_ran VALUES (position('grespost' in '$1') > 0)"
"""


def node_yaml(text, i, node, post_init=True):
    """postgres<i>.yml for `node` from the user's postgres0.yml (text edits only;
    `post_init`: name the test's script, see POST_INIT)."""
    y = text.replace("name: postgresql0", "name: postgresql%d" % i)
    y = y.replace("  connect_address: 0.0.0.0:8008", "  connect_address: %s:8008" % node.ip)
    y = y.replace("connect_address: pg-test-1:5432", "connect_address: %s:5432" % node.ip)
    y = y.replace("data_dir: /var/lib/postgresql/data/postgresql0", "data_dir: %s" % node.data_dir)
    y = re.sub(r"bin_dir: /usr/lib/postgresql/\d+/bin", "bin_dir: %s" % PG_BIN, y)
    y = y.replace("device: /dev/watchdog", "device: %s" % (node.dir / "no-watchdog"))
    # /tmp is one directory for every "host" of the test
    y = y.replace("pgpass: /tmp/pgpass0", "pgpass: %s" % (node.dir / "pgpass"))
    if post_init:
        y = y.replace("  # post_init: /usr/local/bin/setup_cluster.sh",
                      "  post_init: %s" % (node.dir.parent / "post_init.sh"))
    for must in ("postgresql%d" % i, str(node.data_dir), "%s:5432" % node.ip, str(node.dir / "pgpass")) + \
            (("post_init: /",) if post_init else ()):
        assert must in y, "the user's postgres0.yml changed shape: %s not substituted" % must
    return y


def chown_postgres(path):
    import pwd
    pw = pwd.getpwnam("postgres")
    os.chown(path, pw.pw_uid, pw.pw_gid)


def users_file_and_cluster(make_cluster):
    """(the user's postgres0.yml text, a 3-node cluster of its scope with ZooKeeper running);
    skips when the user's files are not beside the tree."""
    src = USER_DIR / "postgres0.yml"
    if not src.exists():
        pytest.skip("%s is not here" % src)
    c = make_cluster(scope="batman", namespace="/service")
    c.start_zookeeper()
    return src.read_text(), c


def test_users_patroni_files_bring_up_a_cluster(make_cluster, require_pg_ha):
    text, c = users_file_and_cluster(make_cluster)
    script = c.base_dir / "post_init.sh"
    script.write_text(POST_INIT % {"count": c.base_dir / "post_init.count"})
    os.chmod(script, 0o755)
    chown_postgres(c.base_dir)  # the script's counter file
    for i, node in enumerate(c.nodes):
        node.dir.mkdir(parents=True, exist_ok=True)
        chown_postgres(node.dir)
        node.patroni_config = node.dir / ("postgres%d.yml" % i)
        node.patroni_config.write_text(node_yaml(text, i, node))
        os.chmod(node.patroni_config, 0o600)   # it holds passwords
        chown_postgres(node.patroni_config)
        node.password = "grespost"             # postgresql.authentication.superuser
    c.start_nodes()
    primary = c.wait_healthy(timeout=TIMEOUT)

    logs = {n.name: n.log_path.read_text(errors="replace") for n in c.nodes}
    every_log = "\n".join(logs.values())
    # post_init failed once: the bootstrap was given back (initialize removed) and redone.
    assert "post_bootstrap" in every_log and "failed (exit 3)" in every_log, every_log[-3000:]
    assert "removing the initialize key" in every_log
    assert int((c.base_dir / "post_init.count").read_text()) == 2
    assert primary.sql_value("SELECT url_had_password FROM post_init_ran") is False

    # bootstrap.dcs is the config key
    cfg = c.dynamic_config()
    assert cfg["ttl"] == 30 and cfg["loop_wait"] == 10 and cfg["synchronous_mode"] is True, cfg
    assert cfg["postgresql"]["parameters"]["archive_mode"] == "always", cfg

    # synchronous_mode: true: a synchronous standby within a loop (loop_wait 10) of the members streaming
    t0 = time.monotonic()

    def sync_standby():
        k = c.zk_json("sync")
        names = [x for x in ((k or {}).get("sync_standby") or "").split(",") if x] if isinstance(k, dict) else []
        states = dict(primary.sql("SELECT application_name, sync_state FROM pg_stat_replication"))
        # member names are the YAML's (postgresqlN), not the harness's
        return names[0] if (names and states.get(names[0]) == "sync") else None
    name = wait_for(sync_standby, timeout=cfg["loop_wait"] + 15, interval=0.5,
                    description="a synchronous standby (the user's synchronous_mode: true)")
    print("synchronous standby %s %.1fs after the cluster was healthy" % (name, time.monotonic() - t0))

    # its parameters on every member, archive_mode (restart-only) from the first start
    want = {"archive_mode": "always", "archive_timeout": "30min", "wal_log_hints": "on",
            "max_wal_senders": "10", "max_replication_slots": "10", "wal_keep_size": "128MB"}
    for n in c.nodes:
        got = {k: n.sql_value("SHOW %s" % k) for k in want}
        assert got == want, (n.name, got)
        assert n.sql_value("SELECT count(*) FROM pg_settings WHERE pending_restart") == 0, n.name
        # the settings file written from the YAML file: one source of truth, secrets 0600
        mode = stat.S_IMODE(os.stat(n.config_file).st_mode)
        assert mode == 0o600, (n.name, oct(mode))
        settings = n.config_file.read_text()
        assert "pg_ha.node_name = 'postgresql%d'" % c.nodes.index(n) in settings
        # every unsupported key named, by its YAML path
        for key in ("postgresql.pgpass",):
            assert re.search(r"warning: .*postgres\d\.yml: %s:" % re.escape(key), logs[n.name]), (n.name, key)
        assert "rep-pass" not in logs[n.name] and "grespost" not in logs[n.name], n.name

    # the user's relative archive_command (../wal_archive) archives on the primary
    primary.sql("SELECT pg_switch_wal()")
    wait_for(lambda: primary.sql_value("SELECT archived_count FROM pg_stat_archiver") > 0,
             timeout=60, interval=1.0, description="the primary archives WAL with the user's archive_command")
    assert any((primary.dir / "wal_archive").iterdir())

    # bootstrap.users (admin: createrole, createdb) logs in over TCP (bootstrap.pg_hba: md5 from anywhere)
    for n in c.nodes:
        assert n.sql_value("SELECT rolcreaterole AND rolcreatedb FROM pg_roles WHERE rolname = current_user",
                           user="admin", password="admin") is True

    # a parameter changed in the config key reaches every member (reload)
    cfg["postgresql"]["parameters"]["work_mem"] = "7MB"
    c.set_dynamic_config(cfg, replace=True)
    for n in c.nodes:
        wait_for(lambda: n.sql_value("SHOW work_mem") == "7MB", timeout=60, interval=1.0,
                 description="work_mem from the config key on %s" % n.name)
