"""Self-tests of the harness plumbing: namespaces, partitions, host kill,
ZooKeeper (standalone and ensemble) and HAProxy with the repository's config.
They need root but not the extension, so they run before `make install`."""
import socket
import time

import pytest

import harness
from harness import wait_for

PROBE_SERVER = (
    "import socket,sys\n"
    "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('0.0.0.0', 5432)); s.listen(16)\n"
    "for _ in range(10000):\n"
    "    c,_=s.accept(); c.sendall(sys.argv[1].encode()+b'\\n'); c.close()\n"
)

PROBE_CLIENT = (
    "import socket,sys\n"
    "try:\n"
    "    c=socket.create_connection((sys.argv[1], 5432), timeout=float(sys.argv[2]))\n"
    "    print(c.recv(100).decode().strip())\n"
    "except OSError as e:\n"
    "    print('ERR', type(e).__name__); sys.exit(1)\n"
)


def read_name(ip, port=5432, timeout=2.0):
    """Connect from the root namespace; the probe server answers its host name."""
    try:
        with socket.create_connection((ip, port), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(100).decode().strip()
    except OSError as exc:
        return "ERR %s" % type(exc).__name__


def probe_from(host, ip, timeout=2.0):
    """Connect from inside `host`'s namespace to ip:5432."""
    proc = host.exec(["/usr/bin/python3", "-c", PROBE_CLIENT, ip, str(timeout)], check=False, timeout=timeout + 10)
    return proc.stdout.strip()


@pytest.fixture
def net(make_cluster):
    """Network only, with a probe server on :5432 in pg-1 and pg-2."""
    c = make_cluster(haproxy=True)
    for node in c.nodes[:2]:
        node.host.spawn(["/usr/bin/python3", "-c", PROBE_SERVER, node.name],
                        c.base_dir / ("probe-%s.log" % node.name))
    for node in c.nodes[:2]:
        wait_for(lambda: read_name(node.ip) == node.name, timeout=10, interval=0.1,
                 description="probe server on %s" % node.name)
    return c


def test_namespaces_have_only_the_test_network(net):
    for h in net.network.hosts:
        links = h.exec(["ip", "-o", "link", "show"]).stdout
        names = sorted(line.split(":")[1].strip().split("@")[0] for line in links.splitlines())
        assert names == ["eth0", "lo"], (h, links)
        addrs = h.exec(["ip", "-o", "-4", "addr", "show"]).stdout
        assert "inet %s/24" % h.ip in addrs and "inet 127.0.0.1/8" in addrs, addrs
        routes = h.exec(["ip", "route", "show"]).stdout
        assert "default" not in routes, routes
        assert routes.split()[0] == harness.SUBNET_PREFIX + "0/24", routes
        # nothing outside the subnet is reachable
        out = h.exec(["ip", "route", "get", "8.8.8.8"], check=False)
        assert out.returncode != 0 and "unreachable" in out.stderr.lower(), (out.stdout, out.stderr)
        assert not h.exec(["ip", "-6", "addr", "show", "dev", "eth0"]).stdout.strip()


def test_names_resolve_inside_namespaces(net):
    host = net.node("pg-2").host
    for name, ip in (("zoo1", "2"), ("pg-1", "11"), ("pg-3", "13"), ("haproxy", "100")):
        out = host.exec(["getent", "hosts", name]).stdout.split()
        assert out[0] == harness.SUBNET_PREFIX + ip, (name, out)
    # and the root namespace's /etc/hosts is untouched by the harness
    assert "pg-1" not in open("/etc/hosts").read()


def test_cross_namespace_connectivity(net):
    n1, n2, n3 = net.nodes
    assert read_name(n1.ip) == "pg-1"
    assert probe_from(n3.host, "pg-1") == "pg-1"
    assert probe_from(n1.host, n2.ip) == "pg-2"


@pytest.mark.parametrize("method", ["nft", "link"])
def test_partition_and_heal(net, method):
    n1, n2, n3 = net.nodes
    n1.host.isolate(method=method, allow_observer=False)
    try:
        assert probe_from(n3.host, n1.ip, timeout=1.5).startswith("ERR")
        assert probe_from(n1.host, n2.ip, timeout=1.5).startswith("ERR")
        assert read_name(n1.ip, timeout=1.5).startswith("ERR")
        assert probe_from(n3.host, n2.ip) == "pg-2"      # the rest still talk
    finally:
        n1.host.heal()
    wait_for(lambda: probe_from(n3.host, n1.ip) == "pg-1", timeout=10, interval=0.2,
             description="pg-1 reachable again after heal")
    assert read_name(n1.ip) == "pg-1"


def test_partial_partition_keeps_observer(net):
    n1, n2, n3 = net.nodes
    n1.host.isolate(method="nft", peers=[n2.host], allow_observer=True)
    try:
        assert probe_from(n2.host, n1.ip, timeout=1.5).startswith("ERR")
        assert probe_from(n3.host, n1.ip) == "pg-1"
        assert read_name(n1.ip) == "pg-1"                  # the test process still sees it
    finally:
        n1.host.heal()
    assert probe_from(n2.host, n1.ip) == "pg-1"


def test_kill_host_kills_everything_and_reaps(net):
    n1 = net.node("pg-1")
    # a process tree with grandchildren, as a postmaster would have
    n1.host.spawn(["/bin/sh", "-c", "sleep 300 & sleep 300 & (sleep 300 &) ; wait"], net.base_dir / "tree.log")
    wait_for(lambda: len(n1.host.pids()) >= 5, timeout=10, interval=0.1, description="process tree")
    victims = n1.host.pids()
    n1.host.kill_all()
    assert n1.host.pids() == []
    assert read_name(n1.ip, timeout=1).startswith("ERR")
    time.sleep(0.3)
    zombies = []
    for pid in victims:
        try:
            with open("/proc/%d/stat" % pid) as f:
                zombies.append(f.read())
        except OSError:
            pass
    assert zombies == [], "unreaped processes: %s" % zombies
    assert n1.host.procs == []


def test_zookeeper_standalone_restart_keeps_sessions(make_cluster):
    c = make_cluster(haproxy=False)
    c.start_zookeeper()
    zk = c.zookeepers[0]
    assert zk.mode() == "standalone"
    client = c.zk()
    client.ensure_path(c.zk_path())
    client.create(c.zk_path("leader"), b"pg-1", ephemeral=True)
    assert c.leader_name() == "pg-1"
    session = client.client_id
    t0 = time.monotonic()
    zk.restart(downtime=2.0)
    assert time.monotonic() - t0 < 30
    # the client's 10 s session survives a short server restart: so must pg_ha's
    value = wait_for(lambda: c.leader_name(timeout=2), timeout=30, interval=0.3,
                     description="leader znode readable after the restart")
    assert value == "pg-1"
    assert client.client_id[0] == session[0]
    assert "pg-1" in c.dump_znodes()


def test_zookeeper_ensemble_survives_one_server(make_cluster):
    c = make_cluster(zk_servers=3, haproxy=False)
    c.start_zookeeper()
    modes = sorted(z.mode() for z in c.zookeepers)
    assert modes == ["follower", "follower", "leader"], modes
    assert c.env["zookeeper_hosts"] == "zoo1:2181,zoo2:2181,zoo3:2181"
    c.zk().ensure_path(c.zk_path("members"))
    leader = next(z for z in c.zookeepers if z.mode() == "leader")
    leader.stop()
    rest = [z for z in c.zookeepers if z is not leader]
    wait_for(lambda: sorted(z.mode() or "" for z in rest) == ["follower", "leader"], timeout=60,
             interval=0.5, description="new ZooKeeper leader among the two others")
    assert c.zk_children(c.zk_path()) == ["members"]
    leader.start()
    assert leader.mode() == "follower"


def test_haproxy_routes_by_health_checks(make_cluster):
    c = make_cluster()
    roles = {"pg-1": "replica", "pg-2": "primary", "pg-3": "replica"}
    for node in c.nodes:
        node.host.spawn(["/usr/bin/python3", harness.HERE / "fake_node.py", node.name, roles[node.name]],
                        c.base_dir / ("fake-%s.log" % node.name))
    c.start_haproxy()
    assert c.haproxy.write_backend == "pg-test-primary"
    assert c.haproxy.read_backend == "pg-test-replica"
    assert set(c.haproxy.server_states(c.haproxy.write_backend)) == {"pg-1", "pg-2", "pg-3"}
    c.haproxy.wait_routing("pg-2", readers=["pg-1", "pg-2", "pg-3"], timeout=40)
    assert {read_name(c.proxy_host.ip, harness.HAPROXY_WRITE_PORT) for _ in range(6)} == {"pg-2"}
    # slowstart ramps weights up, so the round robin is uneven for a while
    seen = set()
    for _ in range(90):
        seen.add(read_name(c.proxy_host.ip, harness.HAPROXY_READ_PORT))
        if seen >= {"pg-1", "pg-2", "pg-3"}:
            break
    assert seen == {"pg-1", "pg-2", "pg-3"}
    assert c.node("pg-2").http("OPTIONS", "/primary")[0] == 200
    assert c.node("pg-1").http("GET", "/primary")[0] == 503


def test_node_lifecycle_helpers(make_cluster):
    """Supervisor, entrypoint, runuser and the kill/restart helpers on one
    node, with the stand-in pg_hactl (plain PostgreSQL, no pg_ha)."""
    c = make_cluster(nodes=1, haproxy=False, pg_hactl_dir=harness.HERE / "fakebin",
                     extra_settings="shared_buffers = 16MB")
    n = c.node("pg-1")
    n.start()
    wait_for(lambda: n.sql_value("select 1") == 1, timeout=60, interval=0.5,
             description="pg-1 accepting connections", state=n.describe)
    assert n.sql_value("select current_setting('pg_ha.node_name')") == "pg-1"
    assert n.sql_value("select host(inet_server_addr())") == n.ip
    assert n.accepts_writes()
    assert n.system_identifier().isdigit()

    # backend crash: the postmaster survives and restarts its children
    pm = n.postmaster_pid()
    observer = n.connect()
    n.kill_backend()
    wait_for(lambda: harness.connection_broken(observer), timeout=10, interval=0.2,
             description="the crash-restart to cut the other session")
    wait_for(n.accepts_writes, timeout=30, interval=0.3, description="writes after crash", state=n.describe)
    assert n.postmaster_pid() == pm
    observer.close()

    # PostgreSQL-only restart: the supervisor starts it again
    old = n.restart_postgres()
    assert old == pm
    wait_for(lambda: n.postmaster_pid() not in (None, pm) and n.sql_value("select 1") == 1,
             timeout=60, interval=0.3, description="postgres restarted by the supervisor", state=n.describe)
    assert "pgha-supervisor: run 2" in n.log_tail(200)

    # frozen postmaster: no new connection; thawed: fine again
    pm = n.sigstop()
    try:
        with pytest.raises(Exception):
            n.sql("select 1", connect_timeout=2)
    finally:
        n.sigcont(pm)
    wait_for(lambda: n.sql_value("select 1") == 1, timeout=20, interval=0.3, description="thawed")

    # power cut and power on: no zombie postmaster blocks the restart
    n.kill_host()
    assert n.host.pids() == [] and n.postmaster_pid() is None
    assert not n.supervisor_running()
    n.start_host()
    wait_for(lambda: n.sql_value("select count(*) from pgha_probe") >= 2, timeout=60, interval=0.5,
             description="pg-1 back after the power cut, data intact", state=n.describe)
