"""ZooKeeper digest authentication and ACLs (issue 10, item 1; review finding S3).

One module-scoped 3-node cluster whose nodes get
  PGHA_ZOOKEEPER_USER / PGHA_ZOOKEEPER_PASSWORD      (pg_ha.zookeeper_user / _password)
  PGHA_ZOOKEEPER_SET_ACLS = "digest:monitor:<hash> READ"  (a read-only monitoring identity)
through the entrypoint, and the harness's own kazoo client authenticates as
the same user (it writes the initial `config`: dynamic config ttl 10,
loop_wait 2, retry_timeout 2, so the failover test waits ~10 s).

Checked: every znode under /<namespace>/<scope> carries exactly
[digest pg_ha ALL, digest monitor READ]; an unauthenticated client can neither
read nor write nor delete `leader` / `config` nor create `failover` / members
(NoAuth); the monitoring identity reads but cannot write; pg_hactl with the
credentials in its settings file lists the cluster (and never prints the
password), without them it fails; patronictl with Patroni's
`zookeeper: {auth_data: {digest: "user:password"}}` lists the cluster; the
password is neither in the postmaster's environment nor in the node logs;
after a ZooKeeper restart the leader still writes (credentials re-sent);
failover works with auth on (kill the primary's host, a replica takes over
and its `leader` znode is closed too).

patronictl: Debian 12's Patroni is 3.0.2, which has no `auth_data` (Patroni
3.3.0 added it, upstream PR #2932: `auth_data=list(config.get('auth_data',
{}).items())` passed to the KazooClient). The test runs Debian's patronictl
through a few lines that pass `auth_data` the way Patroni >= 3.3 does, and
checks that the unpatched 3.0.2 cannot list the cluster (no credentials).
"""
import base64
import hashlib
import os
import subprocess

import pytest

import harness
from conftest import module_cluster, start_first_then_others
from harness import wait_for

pytestmark = pytest.mark.needs_pg_ha

from kazoo.client import KazooClient  # noqa: E402  (Debian's python3-kazoo, as the harness)
from kazoo.exceptions import NoAuthError  # noqa: E402
from kazoo.security import ACL, Id, Permissions  # noqa: E402

PG_HACTL = os.environ.get("PGHA_TEST_HACTL", str(harness.PG_HACTL))
PATRONICTL = "/usr/bin/patronictl"
ZK_USER, ZK_PASSWORD = "pg_ha", "zk s3cret:pw"        # a space and a ':' in the password
MON_USER, MON_PASSWORD = "monitor", "mon-pass"
TTL, LOOP_WAIT, RETRY_TIMEOUT = 10, 2, 2


def digest_id(user, password):
    return "%s:%s" % (user, base64.b64encode(hashlib.sha1(("%s:%s" % (user, password)).encode()).digest()).decode())


OUR_ACL = ACL(Permissions.ALL, Id("digest", digest_id(ZK_USER, ZK_PASSWORD)))
MON_ACL = ACL(Permissions.READ, Id("digest", digest_id(MON_USER, MON_PASSWORD)))

# Debian 12's patronictl 3.0.2 given Patroni >= 3.3's zookeeper.auth_data; a
# Patroni that has it (Debian 13's 4.0.7, in the 17 leg) runs as it is.
PATRONICTL_AUTH_DATA = r"""
import inspect, sys
import patroni.dcs.zookeeper as z
from patroni.ctl import ctl
if 'auth_data' not in inspect.getsource(z.ZooKeeper.__init__):
    _zk_init, _client_init, _auth = z.ZooKeeper.__init__, z.PatroniKazooClient.__init__, []
    def zk_init(self, config, *rest):
        _auth[:] = list(config.get('auth_data', {}).items())
        _zk_init(self, config, *rest)
    def client_init(self, *a, **kw):
        kw.setdefault('auth_data', list(_auth))
        _client_init(self, *a, **kw)
    z.ZooKeeper.__init__, z.PatroniKazooClient.__init__ = zk_init, client_init
sys.argv[0] = 'patronictl'
sys.exit(ctl())
"""


@pytest.fixture(scope="module")
def cluster(request, require_pg_ha):
    env = {"PGHA_ZOOKEEPER_USER": ZK_USER, "PGHA_ZOOKEEPER_PASSWORD": ZK_PASSWORD,
           "PGHA_ZOOKEEPER_SET_ACLS": "digest:%s READ" % digest_id(MON_USER, MON_PASSWORD)}
    c = harness.Cluster(env=env, zk_auth_data=[("digest", "%s:%s" % (ZK_USER, ZK_PASSWORD))],
                        zk_default_acl=[OUR_ACL, MON_ACL],
                        dynamic_config={"ttl": TTL, "loop_wait": LOOP_WAIT, "retry_timeout": RETRY_TIMEOUT})
    yield from module_cluster(request, c, start_first_then_others)


def client(c, auth_data=None):
    """A started kazoo client of its own (not the harness's)."""
    k = KazooClient(hosts=",".join(z.address for z in c.zookeepers), timeout=10.0, auth_data=auth_data)
    k.start(timeout=20)
    return k


def out(proc):
    return "rc=%s\nstdout:\n%s\nstderr:\n%s" % (proc.returncode, proc.stdout, proc.stderr)


def check(cond, msg, c):
    if not cond:
        raise AssertionError(msg + "\n" + c.diagnostics(40))


def all_znodes(k, path):
    """path and every znode below it (bounded)."""
    found, todo = [], [path]
    while todo and len(found) < 200:
        p = todo.pop()
        found.append(p)
        todo.extend(p.rstrip("/") + "/" + ch for ch in k.get_children(p))
    return found


def test_every_znode_is_closed(cluster):
    c = cluster
    base = c.zk_path()
    k = c.zk()
    nodes = all_znodes(k, base)
    for key in ("leader", "members", "members/pg-1", "members/pg-2", "members/pg-3", "initialize", "config"):
        check(c.zk_path(key) in nodes, "%s is missing (have %s)" % (c.zk_path(key), nodes), c)
    wrong = {}
    for p in nodes + [c.namespace]:
        acl, _ = k.get_acls(p)
        if sorted(acl, key=str) != sorted([OUR_ACL, MON_ACL], key=str):
            wrong[p] = acl
    check(not wrong, "znodes without pg_ha's ACL: %s" % wrong, c)


def test_unauthenticated_client_is_refused(cluster):
    c = cluster
    k = client(c)
    try:
        attempts = {
            "read leader": lambda: k.get(c.zk_path("leader")),
            "set leader": lambda: k.set(c.zk_path("leader"), b"pg-3"),
            "delete leader": lambda: k.delete(c.zk_path("leader")),
            "set config": lambda: k.set(c.zk_path("config"), b'{"pause": true}'),
            "delete config": lambda: k.delete(c.zk_path("config")),
            "create failover": lambda: k.create(c.zk_path("failover"), b'{"leader": "pg-1"}'),
            "create member": lambda: k.create(c.zk_path("members/evil"), b"{}", ephemeral=True),
            "list members": lambda: k.get_children(c.zk_path("members")),
        }
        allowed = []
        for what, fn in attempts.items():
            try:
                fn()
                allowed.append(what)
            except NoAuthError:
                pass
        check(not allowed, "an unauthenticated client could: %s" % allowed, c)
        check(c.zk_get("leader") is not None and c.zk_get("failover") is None, "the znodes changed", c)
    finally:
        k.stop()
        k.close()


def test_monitoring_identity_reads_but_cannot_write(cluster):
    c = cluster
    k = client(c, auth_data=[("digest", "%s:%s" % (MON_USER, MON_PASSWORD))])
    try:
        leader, _ = k.get(c.zk_path("leader"))
        check(leader.decode() == c.leader_name(), "monitor read %r" % leader, c)
        check(sorted(k.get_children(c.zk_path("members"))) == ["pg-1", "pg-2", "pg-3"], "members", c)
        k.get(c.zk_path("config"))
        for what, fn in {"set leader": lambda: k.set(c.zk_path("leader"), leader),
                         "set config": lambda: k.set(c.zk_path("config"), b"{}"),
                         "delete leader": lambda: k.delete(c.zk_path("leader")),
                         "create failover": lambda: k.create(c.zk_path("failover"), b"{}")}.items():
            with pytest.raises(NoAuthError):
                fn()
                raise AssertionError("the monitoring identity could " + what)
    finally:
        k.stop()
        k.close()


def hactl_conf(c, name, credentials):
    lines = ["pg_ha.scope = '%s'" % c.scope, "pg_ha.namespace = '%s'" % c.namespace,
             "pg_ha.zookeeper_hosts = '%s'" % ",".join(z.address for z in c.zookeepers)]
    if credentials:
        lines += ["pg_ha.zookeeper_user = '%s'" % ZK_USER, "pg_ha.zookeeper_password = '%s'" % ZK_PASSWORD]
    path = c.base_dir / name
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def hactl(conf, *args):
    return subprocess.run([PG_HACTL] + list(args) + ["--config", conf], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=90)


def test_pg_hactl_uses_the_credentials(cluster):
    c = cluster
    p = hactl(hactl_conf(c, "hactl-auth.conf", True), "list")
    check(p.returncode == 0 and all(n in p.stdout for n in ("pg-1", "pg-2", "pg-3")), "pg_hactl list\n" + out(p), c)
    check(ZK_PASSWORD not in p.stdout + p.stderr, "pg_hactl printed the ZooKeeper password\n" + out(p), c)
    p = hactl(hactl_conf(c, "hactl-noauth.conf", False), "list")
    check(p.returncode != 0 and "pg-2" not in p.stdout, "pg_hactl listed the cluster without credentials\n" + out(p), c)


def patronictl_conf(c, auth):
    lines = ["scope: %s" % c.scope, "namespace: %s/" % c.namespace, "zookeeper:",
             "  hosts: [%s]" % ", ".join("'%s'" % z.address for z in c.zookeepers)]
    if auth:
        lines.append("  auth_data: {digest: '%s:%s'}" % (ZK_USER, ZK_PASSWORD))
    path = c.base_dir / ("patronictl-auth.yml" if auth else "patronictl-noauth.yml")
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_patronictl_lists_with_auth_data(cluster):
    c = cluster
    if not os.path.exists(PATRONICTL):
        pytest.fail("%s is missing (Debian package patroni)" % PATRONICTL)
    p = subprocess.run(["/usr/bin/python3", "-c", PATRONICTL_AUTH_DATA, "-c", patronictl_conf(c, True), "list"],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=90)
    rows = [line for line in p.stdout.splitlines() if line.startswith("|") and "pg-" in line]
    check(p.returncode == 0 and len(rows) == 3 and any("Leader" in r for r in rows),
          "patronictl list with auth_data\n" + out(p), c)
    # Debian's 3.0.2 as is (no auth_data): ZooKeeper refuses it.
    p = subprocess.run([PATRONICTL, "-c", patronictl_conf(c, False), "list"], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=90)
    check(not any(line.startswith("|") and "pg-2" in line for line in p.stdout.splitlines()),
          "patronictl listed the cluster without credentials\n" + out(p), c)


def test_password_not_in_environment_or_logs(cluster):
    c = cluster
    for n in c.nodes:
        pid = n.postmaster_pid()
        check(pid is not None, "%s has no postmaster" % n.name, c)
        with open("/proc/%d/environ" % pid, "rb") as f:
            environ = f.read()
        check(ZK_PASSWORD.encode() not in environ and b"PGHA_ZOOKEEPER_PASSWORD" not in environ,
              "%s's postmaster has the ZooKeeper password in its environment" % n.name, c)
        log = n.log_path.read_bytes()
        check(ZK_PASSWORD.encode() not in log, "%s's log holds the ZooKeeper password" % n.name, c)
        check(b'authenticating to ZooKeeper as digest user "pg_ha"' in log, "%s: no auth line in the log" % n.name, c)
        check(b"ZooKeeper is unauthenticated" not in log, "%s warned about no auth" % n.name, c)
        shown = n.sql_value("SHOW pg_ha.zookeeper_password")
        check(shown == "********", "%s: SHOW pg_ha.zookeeper_password gave %r" % (n.name, shown), c)


def test_zookeeper_restart_reauthenticates(cluster):
    """The C client sends the credentials again when it reconnects: after a
    ZooKeeper restart the leader still writes (status optime advances)."""
    c = cluster
    leader = c.node(c.leader_name())
    before = c.status_optime()
    check(before is not None, "no status optime", c)
    c.zookeepers[0].restart()
    leader.sql("create table if not exists zk_auth_probe(i int); insert into zk_auth_probe select generate_series(1, 1000)")
    wait_for(lambda: (c.status_optime() or 0) > before, timeout=60, interval=0.5,
             description="the leader to publish a newer optime after the ZooKeeper restart", state=c.diagnostics)
    check(c.leader_name() == leader.name, "the leader changed over a ZooKeeper restart", c)
    log = leader.log_path.read_text(errors="replace")
    check("not authenticated" not in log.lower() and "NoAuth" not in log, "NoAuth in the leader's log", c)


def test_failover_with_auth(cluster):
    c = cluster
    old = c.node(c.leader_name())
    old.kill_host()
    others = [n.name for n in c.nodes if n is not old]

    def new_primary():
        name = c.leader_name()
        return name in others and c.node(name).is_primary() and c.node(name).accepts_writes()

    wait_for(new_primary, timeout=90, interval=0.5, description="a replica to take over", state=c.diagnostics)
    acl, stat = c.zk().get_acls(c.zk_path("leader"))
    check(sorted(acl, key=str) == sorted([OUR_ACL, MON_ACL], key=str), "new leader znode ACL %s" % acl, c)
    check(stat.ephemeralOwner != 0, "leader znode is not ephemeral", c)
