"""pg_hactl operator commands against a real cluster (issue 4, item 4), and
patronictl (Debian's patroni 3.0.2) against pg_ha's ZooKeeper data and REST API.

One module-scoped 3-node cluster (ZooKeeper, HAProxy):
  - pg-1 bootstraps alone, pg-2 and pg-3 join after it;
  - pg-3 is tagged nofailover (pg_ha.nofailover = on), so switchovers go
    between pg-1 and pg-2;
  - the REST API asks for basic auth on unsafe methods (pg_ha.restapi_username
    / pg_ha.restapi_password on every node), so every POST pg_hactl or
    patronictl sends must carry the credentials from the settings file;
  - dynamic config ttl 10, loop_wait 2, retry_timeout 2 (as test_failover.py),
    so the paused-primary-loss test waits ~10 s for the session to expire.

pg_hactl runs from the root namespace with a small settings file (scope,
namespace, zookeeper_hosts = zoo1's address, REST credentials), except in the
writer test, where it runs inside pg-2's namespace with pg-2's own settings
file (the one the entrypoint writes), the way an operator on a node would.
Tests run in file order and each leaves the cluster healthy.

A switchover or failover to a named candidate works in maintenance mode (as
in Patroni). The patronictl test warns if the old leader's answer to POST
/switchover is ever cut short by its own shutdown (fixed: the server waits
500 ms after the last answer before it stops).
"""
import contextlib
import datetime
import json
import os
import pty
import signal
import subprocess
import threading
import time

import psycopg2
import pytest

import harness
from conftest import BOOTSTRAP_TIMEOUT
from harness import wait_for

pytestmark = pytest.mark.needs_pg_ha

PG_HACTL = str(harness.PG_HACTL)
PATRONICTL = "/usr/bin/patronictl"
REST_USER = "opadmin"
REST_PASSWORD = "s3cret-pw"
TTL, LOOP_WAIT, RETRY_TIMEOUT = 10, 2, 2
NOFAILOVER = "pg-3"
SWITCH_TIMEOUT = 60          # the command itself waits up to 45 s for the new leader
HEALTHY_TIMEOUT = 150        # old primary: fence, restart, boot, stream again (2 cores)

# Leaders made by the switchovers of this module, for the history test.
SWITCHED_TO = []


# --------------------------------------------------------------------------
# fixture and helpers

@pytest.fixture(scope="module")
def cluster(request, require_pg_ha):
    """The module's cluster (overrides conftest's: nofailover on pg-3, REST auth,
    short ttl, pg-1 first). Healthy when handed out."""
    failures_before = request.session.testsfailed
    auth = "pg_ha.restapi_username = '%s'\npg_ha.restapi_password = '%s'" % (REST_USER, REST_PASSWORD)
    # pg_ha.dcs_pg_hba on pg-1 and pg-2 (test_config_key_pg_hba_...); off on pg-3
    c = harness.Cluster(extra_settings=auth, node_settings={NOFAILOVER: "pg_ha.nofailover = on",
                                                            "pg-1": "pg_ha.dcs_pg_hba = on",
                                                            "pg-2": "pg_ha.dcs_pg_hba = on"},
                        dynamic_config={"ttl": TTL, "loop_wait": LOOP_WAIT, "retry_timeout": RETRY_TIMEOUT})
    try:
        c.start(nodes=False)
        c.start_nodes(["pg-1"])
        c.wait_for_primary(timeout=BOOTSTRAP_TIMEOUT, nodes=["pg-1"])
        c.start_nodes(["pg-2", "pg-3"])
        c.wait_healthy(timeout=BOOTSTRAP_TIMEOUT)
        wait_for(lambda: (c.members().get(NOFAILOVER) or {}).get("tags", {}).get("nofailover") is True,
                 timeout=30, description="pg-3's member znode tagged nofailover", state=c.diagnostics)
    except BaseException:
        c.keep_dir = True
        c.teardown()
        raise
    c.op_conf = write_settings(c, "hactl.conf", credentials=True)
    c.op_conf_noauth = write_settings(c, "hactl-noauth.conf", credentials=False)
    yield c
    if request.session.testsfailed > failures_before:
        c.keep_dir = True
    c.teardown()


def write_settings(c, name, credentials):
    """An operator's settings file in the root namespace (zoo1 by address)."""
    lines = ["# pg_hactl settings for the tests",
             "pg_ha.scope = '%s'" % c.scope,
             "pg_ha.namespace = '%s'" % c.namespace,
             "pg_ha.zookeeper_hosts = '%s'" % ",".join(z.address for z in c.zookeepers)]
    if credentials:
        lines += ["pg_ha.restapi_username = '%s'" % REST_USER, "pg_ha.restapi_password = '%s'" % REST_PASSWORD,
                  "pg_ha.restapi_allow_http_credentials = on"]   # the test network speaks plain http
    path = c.base_dir / name
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def hactl(c, *args, conf=None, timeout=90):
    """Run pg_hactl from the root namespace (no TTY on stdin); CompletedProcess."""
    return subprocess.run([PG_HACTL] + [str(a) for a in args] + ["--config", conf or c.op_conf],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


def out(proc):
    return "rc=%s\nstdout:\n%s\nstderr:\n%s" % (proc.returncode, proc.stdout, proc.stderr)


def check(cond, msg, c, *extra):
    if not cond:
        parts = [msg] + [e() if callable(e) else str(e) for e in extra] + [c.diagnostics(40)]
        raise AssertionError("\n".join(parts))


def leader_node(c):
    name = c.leader_name()
    return c.node(name) if name else None


def switch_target(c):
    """The member a switchover should go to: the failover-eligible non-leader."""
    leader = c.leader_name()
    return next(n for n in ("pg-1", "pg-2") if n != leader)


def wait_leader_accepts_writes(c, name, timeout=SWITCH_TIMEOUT):
    node = c.node(name)
    wait_for(lambda: c.leader_name() == name and node.is_primary() and node.accepts_writes(),
             timeout=timeout, interval=0.3, description="%s to lead and accept writes" % name,
             state=c.diagnostics)


def config_snapshot(c):
    return c.zk_get("config")


class Writer:
    """Inserts increasing ids through HAProxy's write port and remembers the
    acknowledged ones; on any error reconnects and retries the same id."""

    def __init__(self, c):
        self.c = c
        self.acked = []
        self.errors = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True, name="op-writer")
        self.t_end = time.monotonic() + 300

    def run(self):
        conn = None
        next_id = 1
        while not self.stop.is_set() and time.monotonic() < self.t_end:
            try:
                if conn is None:
                    conn = self.c.proxy_connect(write=True, connect_timeout=2, statement_timeout_ms=3000)
                harness.query(conn, "insert into op_writes(id) values (%s)", (next_id,))
                self.acked.append(next_id)
                next_id += 1
                time.sleep(0.01)
            except psycopg2.Error:
                self.errors += 1
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:  # noqa: BLE001
                        pass
                    conn = None
                # An id whose commit answer was lost may or may not be in the
                # table; skip it (it was never acknowledged).
                next_id += 1
                time.sleep(0.05)
        if conn is not None:
            conn.close()

    def acked_after(self, n):
        """Wait (bounded) until n more ids are acknowledged than now."""
        target = len(self.acked) + n
        wait_for(lambda: len(self.acked) >= target, timeout=90, interval=0.2,
                 description="the writer to get %d more acknowledgements (has %d, errors %d)"
                 % (n, len(self.acked), self.errors))


# --------------------------------------------------------------------------
# read-only commands

def test_list_show_config_history_and_usage(cluster):
    c = cluster
    leader = c.leader_name()
    p = hactl(c, "list")
    check(p.returncode == 0, "list failed\n" + out(p), c)
    lines = p.stdout.splitlines()
    check(lines[0].startswith("+ Cluster: batman (%s)" % c.node(leader).system_identifier()), out(p), c)
    rows = {l.split()[0]: l.split() for l in lines[2:] if l.startswith("pg-")}
    check(sorted(rows) == ["pg-1", "pg-2", "pg-3"], out(p), c)
    check(rows[leader][2] == "Leader" and [r[2] for n, r in rows.items() if n != leader] == ["Replica"] * 2,
          out(p), c)
    check("Maintenance mode" not in p.stdout, out(p), c)

    p = hactl(c, "list", "--format", "json")
    j = json.loads(p.stdout)
    check(j["paused"] is False and {m["name"]: m["role"] for m in j["members"]}[leader] == "leader", out(p), c)
    check(next(m for m in j["members"] if m["name"] == NOFAILOVER).get("tags", {}).get("nofailover") is True,
          out(p), c)

    p = hactl(c, "show-config", "--format", "json")
    check(p.returncode == 0 and json.loads(p.stdout) == c.dynamic_config(), out(p), c)
    p = hactl(c, "show-config")
    check(p.returncode == 0 and "ttl: %d\n" % TTL in p.stdout and "loop_wait: %d\n" % LOOP_WAIT in p.stdout,
          out(p), c)

    p = hactl(c, "history", "--format", "json")
    check(p.returncode == 0 and isinstance(json.loads(p.stdout), list), out(p), c)

    # usage errors: 2; unknown format: 2; ZooKeeper unreachable: 3
    for args in (["frobnicate"], ["switchover", "--bogus"], ["list", "--format", "xml"], ["failover"]):
        p = hactl(c, *args)
        check(p.returncode == 2, "%s should be a usage error\n%s" % (args, out(p)), c)
    bad = c.base_dir / "hactl-nozk.conf"
    bad.write_text("pg_ha.scope = 'batman'\npg_ha.zookeeper_hosts = '%s250:2181'\n" % harness.SUBNET_PREFIX)
    t0 = time.monotonic()
    p = hactl(c, "list", conf=str(bad), timeout=40)
    check(p.returncode == 3 and "cannot connect to ZooKeeper" in p.stderr and time.monotonic() - t0 < 20,
          out(p), c)


# --------------------------------------------------------------------------
# switchover refusals (nothing may change)

def assert_nothing_changed(c, leader, p):
    check(c.leader_name() == leader, "the leader changed\n" + out(p), c)
    check(c.zk_get("failover") is None, "a failover key was written: %r\n%s" % (c.zk_get("failover"), out(p)), c)
    check(c.node(leader).is_primary(), "%s no longer answers /primary\n%s" % (leader, out(p)), c)


def test_switchover_without_force_and_no_tty_refuses(cluster):
    c = cluster
    leader = c.leader_name()
    target = switch_target(c)
    p = hactl(c, "switchover", "--candidate", target)
    check(p.returncode == 1 and "not a terminal" in p.stderr and "--force" in p.stderr, out(p), c)
    time.sleep(2 * LOOP_WAIT)
    assert_nothing_changed(c, leader, p)


def test_switchover_on_a_tty_answered_no_aborts(cluster):
    c = cluster
    leader = c.leader_name()
    target = switch_target(c)
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([PG_HACTL, "switchover", "--candidate", target, "--config", c.op_conf],
                                stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        os.write(master, b"n\n")
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        os.close(master)
        os.close(slave)
    p = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    check(p.returncode == 1 and "[y/N]" in stderr and "aborted" in stderr, out(p), c)
    check("Switchover from %s to %s" % (leader, target) in stderr, "the plan was not shown\n" + out(p), c)
    assert_nothing_changed(c, leader, p)


def test_switchover_refusals_unknown_nofailover_wrong_leader(cluster):
    c = cluster
    leader = c.leader_name()
    target = switch_target(c)
    cases = [
        (["--candidate", "pg-9"], "member pg-9 does not exist"),
        (["--candidate", NOFAILOVER], "%s is tagged nofailover" % NOFAILOVER),
        (["--candidate", leader], "%s is already the leader" % leader),
        (["--leader", target, "--candidate", leader], "does not match the current leader %s" % leader),
        (["--scheduled", "2020-01-01T00:00:00+00:00", "--candidate", target], "in the past"),
    ]
    for args, message in cases:
        p = hactl(c, "switchover", "--force", *args)
        check(p.returncode == 1 and message in p.stderr, "switchover %s: expected exit 1 with %r\n%s"
              % (args, message, out(p)), c)
    p = hactl(c, "switchover", "--force", "--scheduled", "tomorrow", "--candidate", target)
    check(p.returncode == 2 and "ISO 8601" in p.stderr, out(p), c)
    # The server refuses the nofailover member too (pg_hactl checks first, so ask it directly).
    status, body = c.node(leader).http("POST", "/switchover", body={"leader": leader, "candidate": NOFAILOVER},
                                       headers={"Authorization": basic_auth()}, timeout=10)
    check(status == 412 and NOFAILOVER in body, "POST /switchover to nofailover: %s %s" % (status, body), c)
    time.sleep(2 * LOOP_WAIT)
    assert_nothing_changed(c, leader, p)


def basic_auth():
    import base64
    return "Basic " + base64.b64encode(("%s:%s" % (REST_USER, REST_PASSWORD)).encode()).decode()


# --------------------------------------------------------------------------
# switchover with a writer

def test_switchover_with_writer_loses_no_acknowledged_row(cluster):
    c = cluster
    old = c.leader_name()
    target = switch_target(c)
    c.node(old).sql("create table if not exists op_writes(id bigint primary key)")
    c.haproxy.wait_routing(old, timeout=60)
    w = Writer(c)
    w.thread.start()
    try:
        w.acked_after(50)
        # From a node, with that node's own settings file (zoo1 by name, credentials).
        node = c.node(target)
        t0 = time.monotonic()
        p = node.host.exec([PG_HACTL, "switchover", "--leader", old, "--candidate", target, "--force",
                            "--config", node.config_file], check=False, timeout=SWITCH_TIMEOUT + 30)
        took = time.monotonic() - t0
        check(p.returncode == 0 and ('switched over to "%s"' % target) in p.stdout, out(p), c)
        SWITCHED_TO.append(target)
        # The command returns once the candidate accepts writes.
        check(c.leader_name() == target, "leader after the command: %s" % c.leader_name(), c)
        check(c.node(target).is_primary() and c.node(target).accepts_writes(), "%s refuses writes" % target, c)
        w.acked_after(50)            # through HAProxy, now routed to the new primary
    finally:
        w.stop.set()
        w.thread.join(timeout=30)
    rows = {r[0] for r in c.node(target).sql("select id from op_writes")}
    lost = sorted(set(w.acked) - rows)
    check(not lost, "%d acknowledged rows lost (of %d), e.g. %s" % (len(lost), len(w.acked), lost[:10]), c)
    check(took < SWITCH_TIMEOUT, "switchover took %.1fs" % took, c)
    c.wait_healthy(timeout=HEALTHY_TIMEOUT)
    check(c.leader_name() == target, "leader changed again: %s" % c.leader_name(), c)


def test_failover_command_with_a_healthy_leader_switches_over(cluster):
    c = cluster
    old = c.leader_name()
    target = switch_target(c)
    p = hactl(c, "failover", "--candidate", target, "--force", timeout=SWITCH_TIMEOUT + 30)
    check(p.returncode == 0 and ('over to "%s"' % target) in p.stdout, out(p), c)
    SWITCHED_TO.append(target)
    wait_leader_accepts_writes(c, target, timeout=10)
    check(old != target, "sanity", c)
    c.wait_healthy(timeout=HEALTHY_TIMEOUT)


def test_switchover_falls_back_to_another_member_when_the_leaders_api_is_silent(cluster):
    c = cluster
    old = c.leader_name()
    target = switch_target(c)
    host = c.node(old).host
    # Drop (no answer, no reset) everything to the leader's REST port; PostgreSQL stays reachable.
    host.exec(["nft", "-f", "-"], input="table inet op_block_api {\n chain input {\n"
              "  type filter hook input priority -60; policy accept;\n  tcp dport %d drop\n }\n}\n"
              % harness.API_PORT)
    try:
        p = hactl(c, "switchover", "--candidate", target, "--force", timeout=SWITCH_TIMEOUT + 30)
    finally:
        host.exec(["nft", "delete", "table", "inet", "op_block_api"], check=False)
    check(p.returncode == 0 and ("%s's REST API" % old) in p.stderr and "does not answer" in p.stderr
          and ('switched over to "%s"' % target) in p.stdout, out(p), c)
    SWITCHED_TO.append(target)
    wait_leader_accepts_writes(c, target, timeout=10)
    c.wait_healthy(timeout=HEALTHY_TIMEOUT)


# --------------------------------------------------------------------------
# scheduled switchover

def test_scheduled_switchover_happens_after_the_time_not_before(cluster):
    c = cluster
    old = c.leader_name()
    target = switch_target(c)
    # Whole seconds (the failover key has second resolution), at least 6 s ahead.
    at_epoch = int(time.time()) + 7
    at = datetime.datetime.fromtimestamp(at_epoch, datetime.timezone.utc).isoformat()
    at_mono = time.monotonic() + (at_epoch - time.time())
    with c.leader_watch(interval=0.05) as watch:
        p = hactl(c, "switchover", "--candidate", target, "--scheduled", at, "--force")
        check(p.returncode == 0 and "scheduled" in p.stdout.lower(), out(p), c)
        key = c.zk_json("failover")
        check(isinstance(key, dict) and key.get("member") == target and key.get("scheduled_at"),
              "failover key: %r" % key, c)
        lst = hactl(c, "list")
        check("Switchover scheduled at" in lst.stdout and target in lst.stdout, out(lst), c)
        check(time.monotonic() < at_mono, "the checks above took too long; cannot observe 'not before'", c)
        # A second request while one is pending is refused.
        p2 = hactl(c, "switchover", "--candidate", target, "--force")
        check(p2.returncode == 1 and "already pending" in p2.stderr, out(p2), c)
        wait_leader_accepts_writes(c, target, timeout=(at_mono - time.monotonic()) + 30)
    changed = watch.first_time(lambda v: v and v != old)
    check(changed is not None and changed >= at_mono - 0.2,
          "leader changed %.2fs before the scheduled time (%s)\n%s"
          % ((at_mono - changed) if changed else float("nan"), at, watch.describe(at_mono)), c)
    SWITCHED_TO.append(target)
    check(c.zk_get("failover") is None, "failover key left behind: %r" % c.zk_get("failover"), c)
    c.wait_healthy(timeout=HEALTHY_TIMEOUT)


# --------------------------------------------------------------------------
# edit-config

def test_edit_config_refuses_invalid_values_and_applies_valid_ones(cluster):
    c = cluster
    before = config_snapshot(c)
    p = hactl(c, "edit-config", "--set", "ttl=1", "--set", "loop_wait=100", "--force")
    check(p.returncode == 1 and "ttl" in p.stderr and "loop_wait" in p.stderr and "nothing changed" in p.stderr,
          out(p), c)
    check(config_snapshot(c) == before, "config changed by a refused edit", c)
    p = hactl(c, "edit-config", "--set", "maximum_lag_on_failover=not-a-number", "--force")
    check(p.returncode == 1 and "maximum_lag_on_failover" in p.stderr, out(p), c)
    # Without --force and without a terminal: refused, unchanged.
    p = hactl(c, "edit-config", "--set", "maximum_lag_on_failover=2097152")
    check(p.returncode == 1 and "not a terminal" in p.stderr, out(p), c)
    check(config_snapshot(c) == before, "config changed without confirmation", c)

    p = hactl(c, "edit-config", "--set", "maximum_lag_on_failover=2097152",
              "--set", "postgresql.parameters.work_mem=8MB", "--force")
    old_lag = json.loads(before).get("maximum_lag_on_failover")
    check(p.returncode == 0 and "+ maximum_lag_on_failover: 2097152" in p.stdout
          and (old_lag is None or "- maximum_lag_on_failover: %s" % old_lag in p.stdout)
          and "+     work_mem: 8MB" in p.stdout, out(p), c)
    cfg = c.dynamic_config()
    check(cfg.get("maximum_lag_on_failover") == 2097152 and cfg["postgresql"]["parameters"]["work_mem"] == "8MB"
          and cfg.get("ttl") == TTL, "config znode: %r" % cfg, c)
    p = hactl(c, "show-config")
    check("maximum_lag_on_failover: 2097152" in p.stdout and "    work_mem: 8MB" in p.stdout, out(p), c)
    # The nodes pick it up (GET /config answers from each node's view).
    wait_for(lambda: all(n.http_json("/config")[1].get("maximum_lag_on_failover") == 2097152 for n in c.nodes),
             timeout=30, description="every node's /config to show the change", state=c.diagnostics)
    # A merge patch from a file; null removes a key.
    patch = c.base_dir / "patch.json"
    patch.write_text(json.dumps({"postgresql": None, "maximum_lag_on_failover": old_lag}))
    p = hactl(c, "edit-config", "--file", patch, "--force")
    check(p.returncode == 0 and "-     work_mem: 8MB" in p.stdout, out(p), c)
    cfg = c.dynamic_config()
    check(cfg == json.loads(before), "config after undoing the change: %r, before: %s" % (cfg, before), c)
    p = hactl(c, "edit-config", "--file", patch, "--force")
    check(p.returncode == 0 and "Not changed" in p.stderr, out(p), c)

    # Timings Patroni adjusts with a warning are written as given and adjusted
    # by every member (loop_wait + 2*retry_timeout > ttl: loop_wait lowered).
    offsets = {n.name: harness.log_size(n) for n in c.nodes}
    p = hactl(c, "edit-config", "--set", "loop_wait=%d" % TTL, "--force")
    adjusted = "Adjusting loop_wait from %d to %d" % (TTL, TTL - 2 * RETRY_TIMEOUT)
    check(p.returncode == 0 and adjusted in p.stderr, out(p), c)
    check(c.dynamic_config().get("loop_wait") == TTL, "config znode: %r" % c.dynamic_config(), c)
    for n in c.nodes:
        wait_for(lambda n=n: "WARNING:  pg_ha: config key: Violated the rule" in harness.log_since(n, offsets[n.name])
                 and adjusted in harness.log_since(n, offsets[n.name]), timeout=30,
                 description="%s to log the adjustment" % n.name, state=c.diagnostics)
    p = hactl(c, "edit-config", "--set", "loop_wait=%d" % LOOP_WAIT, "--force")
    check(p.returncode == 0 and "Adjusting" not in p.stderr, out(p), c)
    check(c.dynamic_config() == json.loads(before), "config after undoing the timing change: %r" % c.dynamic_config(), c)

    # Timing profiles: an unknown one is a usage error; "fast" shows its three
    # timings (unconfirmed here: nothing written); --set wins over a profile,
    # and the profile's requirements are printed with ZooKeeper's grant checked.
    p = hactl(c, "edit-config", "--profile", "tight", "--force")
    check(p.returncode == 2 and 'no timing profile "tight" (profiles: default, fast, fastest)' in p.stderr, out(p), c)
    p = hactl(c, "edit-config", "--profile", "fast")
    check(p.returncode == 1 and "+ ttl: 4" in p.stdout and "+ loop_wait: 1" in p.stdout
          and "+ retry_timeout: 1" in p.stdout and "not a terminal" in p.stderr, out(p), c)
    check(c.dynamic_config() == json.loads(before), "config changed by an unconfirmed profile", c)
    p = hactl(c, "edit-config", "--profile", "fastest")  # timings to the millisecond
    check(p.returncode == 1 and "+ ttl: 1.7" in p.stdout and "+ loop_wait: 0.1" in p.stdout
          and "+ retry_timeout: 0.5" in p.stdout, out(p), c)
    check(c.dynamic_config() == json.loads(before), "config changed by an unconfirmed profile", c)
    p = hactl(c, "edit-config", "--profile", "default", "--set", "ttl=%d" % TTL, "--set", "loop_wait=%d" % LOOP_WAIT,
              "--set", "retry_timeout=%d" % RETRY_TIMEOUT, "--force")
    check(p.returncode == 0 and "Not changed" in p.stderr and "profile default: " in p.stderr
          and "tickTime <= 2000 ms" in p.stderr and "ZooKeeper grants" not in p.stderr, out(p), c)
    check(c.dynamic_config() == json.loads(before), "config changed by --profile default with --set", c)


# --------------------------------------------------------------------------
# maintenance mode

def test_pause_blocks_failover_and_resume_restores_service(cluster):
    c = cluster
    p = hactl(c, "pause", "--wait", "30")
    check(p.returncode == 0 and "every member reports maintenance mode" in p.stderr, out(p), c)
    check(c.dynamic_config().get("pause") is True, "config: %r" % c.dynamic_config(), c)
    lst = hactl(c, "list")
    check(" Maintenance mode: on" in lst.stdout.splitlines(), out(lst), c)
    check(json.loads(hactl(c, "list", "--format", "json").stdout)["paused"] is True, "json list", c)
    for n in c.nodes:
        check(n.http_json("/patroni")[1].get("pause") is True, "%s /patroni: %r" % (n.name, n.http_json("/patroni")), c)
    p = hactl(c, "pause")
    check(p.returncode == 0 and "already paused" in p.stderr, out(p), c)
    # A switchover without a candidate is refused while paused (by the server).
    p = hactl(c, "switchover", "--force")
    check(p.returncode == 1 and "paused" in p.stderr, out(p), c)

    old = leader_node(c)
    others = [n for n in c.nodes if n is not old]
    with c.monitor(nodes=others, interval=0.25) as mon:
        old.kill_host()
        # Its session expires after ttl: the leader key goes away ...
        wait_for(lambda: c.leader_name() is None, timeout=TTL + 20, interval=0.2,
                 description="the dead primary's leader key to expire", state=c.diagnostics)
        # ... and nobody takes over while paused (several loop_waits past the expiry).
        time.sleep(TTL)
    check(not mon.answered_200(), "promoted while paused: %s\n%s" % (mon.answered_200(), mon.timeline()), c)
    check(c.leader_name() is None and not any(n.is_primary() for n in others),
          "a leader appeared while paused: %s" % c.leader_name(), c)

    p = hactl(c, "resume", "--wait", "30")
    check(p.returncode == 0 and "normal operation" in p.stderr, out(p), c)
    check("pause" not in c.dynamic_config(), "config: %r" % c.dynamic_config(), c)
    new = c.wait_for_primary(timeout=TTL + 10 * LOOP_WAIT + 30, nodes=[n.name for n in others])
    check(new.name != NOFAILOVER, "the nofailover member was promoted", c)
    SWITCHED_TO.append(new.name)
    wait_leader_accepts_writes(c, new.name, timeout=30)
    check("Maintenance mode" not in hactl(c, "list").stdout, "list still shows maintenance mode", c)
    old.start()
    c.wait_healthy(timeout=HEALTHY_TIMEOUT)


def test_switchover_to_a_candidate_while_paused(cluster):
    """Patroni allows a switchover to a named candidate in maintenance mode."""
    c = cluster
    p = hactl(c, "pause", "--wait", "30")
    check(p.returncode == 0, out(p), c)
    old = c.leader_name()
    target = switch_target(c)
    try:
        p = hactl(c, "switchover", "--candidate", target, "--force", timeout=SWITCH_TIMEOUT + 30)
        leader = c.leader_name()
    finally:
        r = hactl(c, "resume", "--wait", "30")
    check(r.returncode == 0, out(r), c)
    c.wait_healthy(timeout=HEALTHY_TIMEOUT)
    if leader != old:
        SWITCHED_TO.append(leader)
    check(p.returncode == 0 and leader == target and ('over to "%s"' % target) in p.stdout, out(p), c)


def test_failover_to_a_candidate_in_a_leaderless_paused_cluster(cluster):
    c = cluster
    p = hactl(c, "pause", "--wait", "30")
    check(p.returncode == 0, out(p), c)
    old = leader_node(c)
    target = next(n for n in ("pg-1", "pg-2") if n != old.name)
    old.kill_host()
    try:
        wait_for(lambda: c.leader_name() is None and old.name not in c.members(), timeout=TTL + 20, interval=0.2,
                 description="the dead primary's leader key and member key to expire", state=c.diagnostics)
        refused_switchover = hactl(c, "switchover", "--candidate", target, "--force")
        refused_nofailover = hactl(c, "failover", "--candidate", NOFAILOVER, "--force")
        p = hactl(c, "failover", "--candidate", target, "--force", timeout=SWITCH_TIMEOUT + 30)
        leader = c.leader_name()
        promoted = leader == target and c.node(target).is_primary() and c.node(target).accepts_writes()
        still_paused = c.dynamic_config().get("pause") is True
    finally:
        r = hactl(c, "resume")
        old.start()
    check(r.returncode == 0, out(r), c)
    c.wait_healthy(timeout=HEALTHY_TIMEOUT)
    SWITCHED_TO.append(c.leader_name())
    p1 = refused_switchover
    check(p1.returncode == 1 and "no leader" in p1.stderr and "failover" in p1.stderr, out(p1), c)
    p2 = refused_nofailover
    check(p2.returncode == 1 and "nofailover" in p2.stderr, out(p2), c)
    check(p.returncode == 0 and ('over to "%s"' % target) in p.stdout and promoted, out(p), c)
    check(still_paused, "the failover ended maintenance mode", c)


# --------------------------------------------------------------------------
# restart / reinit, REST credentials

def test_restart_conditions_as_patroni(cluster):
    """POST /restart honours its conditions (issue 12 item 4): a request whose
    role, postgres_version or restart_pending does not match this node is
    answered 503 "restart conditions are not satisfied" and restarts nothing
    (before, {"role": "replica"} sent to the primary restarted the primary);
    bad filters get 400 with Patroni's wording (a schedule in the past 422);
    DELETE /restart with nothing scheduled answers 404."""
    c = cluster
    leader = c.node(c.leader_name())
    replica = next(n for n in c.nodes if n is not leader and n.is_replica())
    auth = harness.rest_auth_header(REST_USER, REST_PASSWORD)
    pids = {n.name: n.postmaster_pid() for n in (leader, replica)}
    version = leader.sql_value("SHOW server_version_num")
    newer_than_running = "%d.%d" % (int(version) // 10000, int(version) % 10000)   # not newer: no restart
    cases = [(leader, {"role": "replica"}, 503, "restart conditions are not satisfied"),
             (replica, {"role": "primary"}, 503, "restart conditions are not satisfied"),
             (leader, {"postgres_version": newer_than_running}, 503, "restart conditions are not satisfied"),
             (replica, {"restart_pending": True}, 503, "restart conditions are not satisfied"),
             (leader, {"role": "leader"}, 400, "PostgreSQL role should be either primary or replica"),
             (leader, {"force": True}, 400, "Unknown filter for the scheduled restart: force"),
             (leader, {"schedule": "2020-01-01T00:00:00+00:00"}, 422, "Cannot schedule restart in the past"),
             (leader, {"schedule": "2030-01-01T00:00:00"}, 400, "Unable to parse scheduled timestamp")]
    for node, body, want, text in cases:
        status, answer = node.http("POST", "/restart", body=body, headers=auth, timeout=20)
        check(status == want and text in answer, "POST /restart %s on %s: %s %s" % (body, node.name, status, answer), c)
    status, answer = leader.http("DELETE", "/restart", headers=auth, timeout=10)
    check(status == 404 and "no restarts are scheduled" in answer, "DELETE /restart: %s %s" % (status, answer), c)
    time.sleep(LOOP_WAIT + 1)
    for n in (leader, replica):
        check(n.postmaster_pid() == pids[n.name], "%s restarted: %s -> %s" % (n.name, pids[n.name],
                                                                          n.postmaster_pid()), c)
    check(c.leader_name() == leader.name and leader.is_primary(), "the leader changed", c)


def iso_in(seconds):
    return (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds)).isoformat(
        timespec="seconds")


def test_scheduled_restart_as_patroni(cluster):
    """Issue 12 item 4: POST /restart with "schedule" answers 202 and restarts
    the member when it is due (409 for a second one); the member publishes it
    (/patroni, its member znode: patronictl list's "Scheduled restart",
    pg_hactl list); the conditions are checked when it is due (a replica-only
    restart scheduled on the leader restarts nothing); DELETE /restart,
    `patronictl flush ... restart` and `pg_hactl restart --cancel` cancel it.
    patronictl restart --scheduled and pg_hactl restart --scheduled both
    schedule."""
    c = cluster
    if not os.path.exists(PATRONICTL):
        pytest.fail("%s is missing (Debian package patroni)" % PATRONICTL)
    leader = c.node(c.leader_name())
    replica = next(n for n in c.nodes if n is not leader and n.is_replica())
    auth = harness.rest_auth_header(REST_USER, REST_PASSWORD)

    def scheduled(node):
        return (node.http_json("/patroni")[1] or {}).get("scheduled_restart")

    # 1. patronictl schedules a restart of the replica; it is published and runs when due
    pid = replica.postmaster_pid()
    at = iso_in(8)
    p = patronictl(c, "restart", c.scope, replica.name, "--scheduled", at, "--force")
    check(p.returncode == 0 and "restart scheduled on member %s" % replica.name in p.stdout,
          "patronictl restart --scheduled\n" + out(p), c)
    status, answer = replica.http("POST", "/restart", body={"schedule": iso_in(60)}, headers=auth, timeout=10)
    check(status == 409 and "Another restart is already scheduled" in answer, "second schedule: %s %s"
          % (status, answer), c)
    wait_for(lambda: (scheduled(replica) or {}).get("schedule", "")[:19] == at[:19], timeout=5, interval=0.2,
             description="/patroni names the scheduled restart at %s" % at, state=lambda: scheduled(replica))
    wait_for(lambda: "Scheduled restart" in patronictl(c, "list").stdout, timeout=3 * LOOP_WAIT + 5, interval=0.5,
             description="patronictl list shows the scheduled restart")
    lst = hactl(c, "list")
    check("Restart of %s scheduled at" % replica.name in lst.stdout, "pg_hactl list\n" + out(lst), c)
    check(replica.postmaster_pid() == pid, "%s restarted before it was due" % replica.name, c)
    wait_for(lambda: replica.postmaster_pid() not in (None, pid), timeout=30, interval=0.3,
             description="%s restarts when its scheduled restart is due" % replica.name)
    c.wait_healthy(timeout=HEALTHY_TIMEOUT)
    check(scheduled(replica) is None, "still scheduled after the restart: %s" % scheduled(replica), c)

    # 2. conditions are checked when it is due: replica-only on the leader restarts nothing
    lpid = leader.postmaster_pid()
    status, answer = leader.http("POST", "/restart", body={"schedule": iso_in(3), "role": "replica"}, headers=auth,
                                 timeout=10)
    check(status == 202 and "Restart scheduled" in answer, "leader schedule: %s %s" % (status, answer), c)
    wait_for(lambda: "cancelled: host role mismatch" in leader.log_path.read_text(errors="replace"),
             timeout=3 + 3 * LOOP_WAIT + 5, interval=0.3,
             description="the leader drops its replica-only scheduled restart when due")
    wait_for(lambda: scheduled(leader) is None, timeout=5, interval=0.2, description="/patroni drops it")
    check(leader.postmaster_pid() == lpid and c.leader_name() == leader.name, "the leader restarted", c)

    # 3. cancelled three ways: DELETE /restart, patronictl flush, pg_hactl restart --cancel
    rpid = replica.postmaster_pid()
    status, answer = replica.http("POST", "/restart", body={"schedule": iso_in(12)}, headers=auth, timeout=10)
    check(status == 202, "schedule: %s %s" % (status, answer), c)
    status, answer = replica.http("DELETE", "/restart", timeout=10, auth=False)
    check(status == 401, "DELETE /restart without credentials: %s %s" % (status, answer), c)
    status, answer = replica.http("DELETE", "/restart", headers=auth, timeout=10)
    check(status == 200 and "scheduled restart deleted" in answer, "DELETE /restart: %s %s" % (status, answer), c)
    status, answer = replica.http("DELETE", "/restart", headers=auth, timeout=10)
    check(status == 404, "second DELETE /restart: %s %s" % (status, answer), c)
    p = hactl(c, "restart", replica.name, "--scheduled", iso_in(12), "--force")
    check(p.returncode == 0 and "Restart scheduled" in p.stdout, "pg_hactl restart --scheduled\n" + out(p), c)
    wait_for(lambda: "scheduled_restart" in json.dumps(c.members().get(replica.name) or {}), timeout=3 * LOOP_WAIT + 5,
             interval=0.3, description="the member znode names the scheduled restart")
    p = patronictl(c, "flush", c.scope, replica.name, "restart", "--force")
    check(p.returncode == 0, "patronictl flush restart\n" + out(p), c)
    wait_for(lambda: scheduled(replica) is None, timeout=5, interval=0.2, description="flushed")
    status, _ = replica.http("POST", "/restart", body={"schedule": iso_in(12)}, headers=auth, timeout=10)
    check(status == 202, "third schedule: %s" % status, c)
    p = hactl(c, "restart", replica.name, "--cancel", "--force")
    check(p.returncode == 0 and "scheduled restart deleted" in p.stdout, "pg_hactl restart --cancel\n" + out(p), c)
    wait_for(lambda: scheduled(replica) is None, timeout=5, interval=0.2, description="cancelled")
    time.sleep(14)
    for n, was in ((replica, rpid), (leader, lpid)):
        check(n.postmaster_pid() == was, "%s restarted: %s -> %s" % (n.name, was, n.postmaster_pid()), c)


def test_primary_start_timeout_hands_the_lock_over_during_a_long_crash_recovery(cluster):
    """Issue 12 item 5, primary_start_timeout other than 0: the leader's
    PostgreSQL crashes (immediate stop), pg_hactl boot starts it again (the
    container's restart policy) and it runs crash recovery, which the test
    holds up (SIGSTOP of the startup process). The worker, started with the
    postmaster and resuming the session that holds the lock, releases it once
    recovery has taken primary_start_timeout (3 s), a standby takes over, and
    the old leader, once its recovery ends, holds no lock and rejoins as a
    standby. (After a backend crash PostgreSQL starts the worker only when
    recovery is over: the lock then lasts while the session does, ttl.)"""
    c = cluster
    old = c.node(c.leader_name())
    c.set_dynamic_config({"primary_start_timeout": 3})
    time.sleep(2 * LOOP_WAIT + 1)
    # WAL since the last checkpoint, so that crash recovery lasts long enough to be caught
    old.sql("CHECKPOINT")
    old.sql("DROP TABLE IF EXISTS pst_t")
    old.sql("CREATE TABLE pst_t AS SELECT g FROM generate_series(1, 1500000) g")
    # The standbys hold that WAL before the crash: a standby further behind than
    # maximum_lag_on_failover rightly does not take over (seen on a loaded CI
    # machine: 1.4 MB behind), and this test is about the start timeout.
    end = old.current_lsn()
    for s in (n for n in c.nodes if n is not old):
        wait_for(lambda s=s: s.current_lsn() >= end, timeout=60, interval=0.2,
                 description="%s received the table's WAL" % s.name)
    before = len(old.log_path.read_text(errors="replace"))
    stopped = []
    try:
        for attempt in range(3):
            old.restart_postgres(mode="immediate")
            deadline = time.monotonic() + 20
            while not stopped and time.monotonic() < deadline:
                pids = old.process_pids("postgres: startup")
                for pid in pids:
                    os.kill(pid, signal.SIGSTOP)
                stopped = pids
                time.sleep(0.002)
            if stopped:
                break
            wait_for(lambda: old.is_primary(), timeout=30, interval=0.2, description="%s back" % old.name)
        check(stopped, "never caught the startup process of %s in crash recovery" % old.name, c)
        t0 = time.monotonic()
        new = wait_for(lambda: c.leader_name() not in (None, old.name) and c.leader_name(), timeout=3 + 4 * LOOP_WAIT + 15,
                       interval=0.1, description="another member to lead while %s recovers" % old.name,
                       state=c.diagnostics)
        took = time.monotonic() - t0
        SWITCHED_TO.append(new)   # a leader change this module's history test counts
        log = old.log_path.read_text(errors="replace")[before:]
        print("crash recovery held up on %s: %s leads %.1f s after the startup process stopped "
              "(primary_start_timeout 3 s)" % (old.name, new, took))
        check("primary_start_timeout is 3 s: releasing the leader lock" in log, log[-3000:], c)
        # 3 s of recovery, a loop (2 s) to see it, the standby's race and promotion (4.2 s measured;
        # 10 s, ttl, when a restarted worker's second loop came only after 10 s)
        check(took <= 3 + LOOP_WAIT + 3, "%s led only %.1f s after the recovery stopped" % (new, took), c)
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        cfg = c.dynamic_config()
        cfg.pop("primary_start_timeout", None)
        c.set_dynamic_config(cfg, replace=True)
    wait_for(lambda: old.streams_from(c.node(new)), timeout=120, interval=0.5,
             description="%s to rejoin as a standby of %s" % (old.name, new), state=c.diagnostics)
    c.wait_healthy(timeout=120)


def test_restart_timeout_is_the_restarted_primarys_start_timeout(cluster):
    """Issue 12 item 4, POST /restart "timeout" (`pg_hactl restart --timeout`):
    the worker marks the restart with it, pg_hactl boot hands it on
    (pg_ha.start_timeout), and the next worker uses it instead of
    primary_start_timeout for that start only: the file is gone once the
    server is up. A quick start keeps the lock."""
    c = cluster
    leader = c.node(c.leader_name())
    pid = leader.postmaster_pid()
    before = len(leader.log_path.read_text(errors="replace"))
    p = hactl(c, "restart", leader.name, "--timeout", "45", "--force")
    check(p.returncode == 0, "pg_hactl restart --timeout\n" + out(p), c)
    wait_for(lambda: leader.postmaster_pid() not in (None, pid) and leader.is_primary(), timeout=90, interval=0.5,
             description="%s restarted and primary again" % leader.name, state=c.diagnostics)
    log = leader.log_path.read_text(errors="replace")[before:]
    check("this start's primary_start_timeout is the restart's timeout: 45 s" in log,
          "no start timeout from the restart in the log:\n" + log[-3000:], c)
    check(c.leader_name() == leader.name, "the lock moved: %s" % c.leader_name(), c)
    wait_for(lambda: not (leader.data_dir / "pg_ha.start_timeout").exists(), timeout=10, interval=0.2,
             description="pg_ha.start_timeout removed once the server is up")
    check(not (leader.data_dir / "pg_ha.restart").exists(), "pg_ha.restart left behind", c)


def test_tag_changed_by_reload_takes_effect(cluster):
    """Issue 12 item 7: pg_ha.nofailover added to a replica's settings file
    and reloaded (POST /reload) is published within a loop, and a switchover
    to that member is then refused (before, the tag was read only at server
    start: the reload answered 202 and a switchover to it succeeded). Removed
    and reloaded again, the member is a candidate again."""
    c = cluster
    leader = c.leader_name()
    target = c.node(switch_target(c))
    auth = {"Authorization": basic_auth()}
    original = target.config_file.read_text()

    def tags():
        return (c.members().get(target.name) or {}).get("tags") or {}
    try:
        target.config_file.write_text(original + "\npg_ha.nofailover = on\n")
        status, body = target.http("POST", "/reload", headers=auth, timeout=10)
        check(status == 202, "POST /reload: %s %s" % (status, body), c)
        wait_for(lambda: tags().get("nofailover") is True, timeout=3 * LOOP_WAIT + 10, interval=0.3,
                 description="%s publishes nofailover after the reload" % target.name, state=tags)
        status, body = c.node(leader).http("POST", "/switchover", body={"leader": leader, "candidate": target.name},
                                           headers=auth, timeout=30)
        check(status == 412 and "nofailover" in body, "switchover to the re-tagged %s: %s %s"
              % (target.name, status, body), c)
        check(c.leader_name() == leader, "the leader changed", c)
    finally:
        target.config_file.write_text(original)
        target.http("POST", "/reload", headers=auth, timeout=10)
    wait_for(lambda: not tags().get("nofailover"), timeout=3 * LOOP_WAIT + 10, interval=0.3,
             description="%s drops nofailover after the second reload" % target.name, state=tags)


def test_config_key_pg_hba_is_applied_where_allowed_and_checked(cluster):
    """Issue 12 item 3: the config key's postgresql.pg_hba becomes pg_hba.conf
    (reloaded) on the members with pg_ha.dcs_pg_hba on (pg-1, pg-2) and not
    on pg-3 (off: a log line says so). A line pg_ha refuses (include) is
    refused by PATCH /config with 400 and changes nothing; a line PostgreSQL
    refuses, written straight into ZooKeeper, keeps the previous file (a bad
    pg_hba.conf would stop the server from starting) with a log line."""
    c = cluster
    marker = "pgha_hba_marker"
    leader = c.node(c.leader_name())
    auth = harness.rest_auth_header(REST_USER, REST_PASSWORD)
    base = [ln for ln in (leader.data_dir / "pg_hba.conf").read_text().splitlines()
            if ln.strip() and not ln.lstrip().startswith("#")]
    wanted = base + ["host all %s 192.0.2.0/24 reject" % marker]

    def rules(node):
        return node.sql_value("SELECT count(*) FROM pg_hba_file_rules WHERE %s = ANY(user_name)", (marker,))

    def logged(node, text):
        return text in node.log_path.read_text(errors="replace")
    before = c.zk_json("config")
    try:
        status, body = leader.http("PATCH", "/config", body={"postgresql": {"pg_hba": ["include /etc/passwd"]}},
                                   headers=auth, timeout=10)
        check(status == 400 and "include" in body and c.zk_json("config") == before,
              "PATCH with an include line: %s %s" % (status, body), c)
        status, body = leader.http("PATCH", "/config", body={"postgresql": {"pg_hba": wanted}}, headers=auth,
                                   timeout=10)
        check(status == 200, "PATCH /config pg_hba: %s %s" % (status, body), c)
        allowed = [c.node("pg-1"), c.node("pg-2")]
        wait_for(lambda: all(logged(n, "pg_hba.conf written from the config key") for n in allowed),
                 timeout=3 * LOOP_WAIT + 10, interval=0.3, description="pg-1 and pg-2 write pg_hba.conf")
        for n in allowed:
            check(rules(n) == 1, "%s: the marker line is not in pg_hba.conf" % n.name, c)
        pg3 = c.node(NOFAILOVER)
        wait_for(lambda: logged(pg3, "pg_ha.dcs_pg_hba is off"), timeout=3 * LOOP_WAIT + 10, interval=0.3,
                 description="pg-3 says why it does not apply pg_hba")
        check(rules(pg3) == 0, "pg-3 applied pg_hba with pg_ha.dcs_pg_hba off", c)
        # a line PostgreSQL refuses, written by someone else: the previous file stays
        cfg = c.zk_json("config")
        cfg["postgresql"]["pg_hba"] = base + ["host all all 10.0.0.0/33 md5"]
        c.zk().set(c.zk_path("config"), json.dumps(cfg).encode())
        wait_for(lambda: all(logged(n, "PostgreSQL refuses line") for n in allowed), timeout=3 * LOOP_WAIT + 10,
                 interval=0.3, description="pg-1 and pg-2 refuse the bad line")
        for n in allowed:
            check(rules(n) == 1 and "10.0.0.0/33" not in (n.data_dir / "pg_hba.conf").read_text(),
                  "%s did not keep its previous pg_hba.conf" % n.name, c)
        check(leader.accepts_writes(), "the leader stopped taking writes", c)
    finally:
        c.zk().set(c.zk_path("config"), json.dumps(before).encode())


def test_restart_and_reinit_need_credentials_and_work(cluster):
    c = cluster
    leader = c.leader_name()
    replica = next(n for n in c.nodes if n.name != leader)
    # Without credentials the REST API answers 401: exit 1 and a hint.
    p = hactl(c, "restart", replica.name, "--force", conf=c.op_conf_noauth)
    check(p.returncode == 1 and "HTTP 401" in p.stderr and "restapi_username" in p.stderr, out(p), c)
    p = hactl(c, "restart", "pg-9", "--force")
    check(p.returncode == 1 and "does not exist" in p.stderr, out(p), c)
    p = hactl(c, "restart", replica.name)
    check(p.returncode == 1 and "not a terminal" in p.stderr, out(p), c)

    pid = replica.postmaster_pid()
    p = hactl(c, "restart", replica.name, "--force")
    check(p.returncode == 0, out(p), c)
    wait_for(lambda: replica.postmaster_pid() not in (None, pid) and replica.streams_from(c.node(leader))
             and (c.members().get(replica.name) or {}).get("state") == "running",
             timeout=HEALTHY_TIMEOUT, interval=0.5, description="%s restarted, streaming and registered"
             % replica.name, state=c.diagnostics)

    # The leader cannot be reinitialized (server refusal, exit 1).
    p = hactl(c, "reinit", leader, "--force")
    check(p.returncode == 1 and "leader" in p.stderr, out(p), c)
    check(c.leader_name() == leader and c.node(leader).is_primary(), "leader disturbed by a refused reinit", c)

    marker = "reinit-%d" % time.time_ns()
    c.node(leader).sql("create table if not exists op_marker(v text)")
    c.node(leader).sql("insert into op_marker values (%s)", (marker,))
    sysid = replica.system_identifier()
    pid = replica.postmaster_pid()
    p = hactl(c, "reinit", replica.name, "--force")
    check(p.returncode == 0, out(p), c)
    wait_for(lambda: replica.postmaster_pid() not in (None, pid) and replica.streams_from(c.node(leader)),
             timeout=HEALTHY_TIMEOUT, interval=0.5, description="%s re-cloned and streaming" % replica.name,
             state=c.diagnostics)
    check(replica.system_identifier() == sysid, "system identifier changed", c)
    wait_for(lambda: replica.sql_value("select count(*) from op_marker where v = %s", (marker,)) == 1,
             timeout=30, description="the marker row on the re-cloned replica")
    check("reinitialize requested" in replica.log_tail(400) or "cloning from" in replica.log_tail(400),
          "no reinit in %s's log" % replica.name, c)
    c.wait_healthy(timeout=HEALTHY_TIMEOUT)


# --------------------------------------------------------------------------
# patronictl against pg_ha

def patronictl(c, *args, timeout=90):
    conf = c.base_dir / "patronictl.yml"
    if not conf.exists():
        conf.write_text("\n".join([
            "scope: %s" % c.scope,
            "namespace: %s/" % c.namespace,
            "zookeeper:",
            "  hosts: [%s]" % ", ".join("'%s'" % z.address for z in c.zookeepers),
            "ctl:",
            "  authentication: {username: %s, password: %s}" % (REST_USER, REST_PASSWORD),
            "restapi:",
            "  authentication: {username: %s, password: %s}" % (REST_USER, REST_PASSWORD),
            ""]))
    return subprocess.run([PATRONICTL, "-c", str(conf)] + [str(a) for a in args], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)


def test_patronictl_list_and_switchover(cluster):
    c = cluster
    if not os.path.exists(PATRONICTL):
        pytest.fail("%s is missing (Debian package patroni)" % PATRONICTL)
    leader = c.leader_name()
    p = patronictl(c, "list")
    check(p.returncode == 0, "patronictl list\n" + out(p), c)
    rows = {}
    for line in p.stdout.splitlines():
        cells = [x.strip() for x in line.strip("|").split("|")]
        if cells and cells[0] in ("pg-1", "pg-2", "pg-3"):
            rows[cells[0]] = cells
    check(sorted(rows) == ["pg-1", "pg-2", "pg-3"] and rows[leader][2] == "Leader"
          and all(rows[n][2] == "Replica" and rows[n][3] in ("running", "streaming") for n in rows if n != leader),
          "patronictl list\n" + out(p), c)

    target = switch_target(c)
    with c.leader_watch(interval=0.05) as watch:
        p = patronictl(c, "switchover", "--candidate", target, "--force", timeout=SWITCH_TIMEOUT + 30)
        check(p.returncode == 0, "patronictl switchover\n" + out(p), c)
        wait_leader_accepts_writes(c, target, timeout=30)
        time.sleep(2 * LOOP_WAIT)
    SWITCHED_TO.append(target)
    check(watch.values() == [leader, target], "leader changes: %s" % watch.describe(), c)
    check(c.zk_get("failover") is None, "failover key left behind: %r" % c.zk_get("failover"), c)
    # The old leader stops only once its answer was written (or after
    # 500 ms): patronictl gets it, not a cut connection.
    check(('Successfully switched over to "%s"' % target) in p.stdout,
          "patronictl did not report success\n" + out(p), c)
    c.wait_healthy(timeout=HEALTHY_TIMEOUT)


# --------------------------------------------------------------------------
# history (after the switchovers above)

def test_history_lists_the_switchovers(cluster):
    c = cluster
    p = hactl(c, "history", "--format", "json")
    check(p.returncode == 0, out(p), c)
    hist = json.loads(p.stdout)
    leaders = [h["new_leader"] for h in hist]
    check(SWITCHED_TO and leaders[-len(SWITCHED_TO):] == SWITCHED_TO,
          "history %r, leader changes of this module %r" % (leaders, SWITCHED_TO), c)
    tls = [h["timeline"] for h in hist]
    check(tls == sorted(tls) and len(set(tls)) == len(tls), "timelines %r" % tls, c)
    check(all(h["lsn"] > 0 and h["timestamp"] for h in hist), "history %r" % hist, c)
    p = hactl(c, "history")
    lines = p.stdout.splitlines()
    header = [x.strip() for x in lines[1].strip("|").split("|")] if len(lines) > 1 else []
    check(p.returncode == 0 and header == ["TL", "LSN", "Reason", "Timestamp", "New Leader"], out(p), c)
    for name in SWITCHED_TO:
        check(any(l.rstrip(" |").endswith(name) for l in lines[3:]), "%s not in the table\n%s" % (name, out(p)), c)


def test_restart_pending_restarts_only_what_needs_it(cluster):
    """Issue 12 item 3: a postmaster parameter in the config key's
    postgresql.parameters is flagged pending_restart on every member;
    `pg_hactl restart --pending` (no member named: replicas first, the leader
    last) restarts each of them once and clears the flag, the leader keeps its
    lock; run again it skips every member (503 "restart conditions are not
    satisfied" is a skip, exit 0)."""
    c = cluster
    leader = c.leader_name()

    def pending():
        return {n: bool(m.get("pending_restart")) for n, m in c.members().items()}

    def registered():
        """Every member znode there and running (a restarted worker re-creates
        its znode with the session it opens for the cluster's ttl)."""
        wait_for(lambda: len(c.members()) == len(c.nodes)
                 and all((m or {}).get("state") == "running" for m in c.members().values()),
                 timeout=HEALTHY_TIMEOUT, interval=0.5, description="every member registered and running",
                 state=lambda: str(c.members()))

    def rolling(value):
        c.set_dynamic_config({"postgresql": {"parameters": {"shared_buffers": value}}})
        wait_for(lambda: all(pending().values()) and len(pending()) == len(c.nodes), timeout=60, interval=0.5,
                 description="pending_restart on every member", state=lambda: str(pending()))
        pids = {n.name: n.postmaster_pid() for n in c.nodes}
        p = hactl(c, "restart", "--pending", "--force", timeout=300)
        check(p.returncode == 0 and "skipped" not in p.stdout, out(p), c)
        # replicas first, the leader last
        order = [ln.split(":")[0] for ln in p.stdout.splitlines() if ln.strip()]
        check(sorted(order) == sorted(n.name for n in c.nodes) and order[-1] == leader, out(p), c)
        wait_for(lambda: all(n.postmaster_pid() not in (None, pids[n.name]) for n in c.nodes)
                 and not any(pending().values()) and all(n.sql_value("SHOW shared_buffers") == value for n in c.nodes),
                 timeout=HEALTHY_TIMEOUT, interval=0.5, description="every member restarted with shared_buffers %s"
                 % value, state=lambda: "%s %s" % (pending(), out(p)))
        c.wait_healthy(timeout=HEALTHY_TIMEOUT)
        registered()
        check(c.leader_name() == leader, "the leader changed: %s -> %s" % (leader, c.leader_name()), c)
        return p, order

    try:
        p, _ = rolling("96MB")
        print(p.stdout)
        pids = {n.name: n.postmaster_pid() for n in c.nodes}
        p = hactl(c, "restart", "--pending", "--force")
        check(p.returncode == 0 and p.stdout.count("skipped") == len(c.nodes), out(p), c)
        check(all(n.postmaster_pid() == pids[n.name] for n in c.nodes), "a member restarted without need", c)
        # --role replica restarts replicas only
        c.set_dynamic_config({"postgresql": {"parameters": {"shared_buffers": "112MB"}}})
        wait_for(lambda: all(pending().values()), timeout=60, interval=0.5, description="pending_restart again")
        p = hactl(c, "restart", "--pending", "--role", "replica", "--force", timeout=300)
        check(p.returncode == 0 and p.stdout.count("skipped") == 1 and leader in p.stdout, out(p), c)
        wait_for(lambda: not any(v for n, v in pending().items() if n != leader), timeout=HEALTHY_TIMEOUT,
                 interval=0.5, description="replicas restarted", state=lambda: str(pending()))
        registered()
        check(pending().get(leader) is True, "the leader was restarted by --role replica", c)
        # Taken out of the config key: back to the server's own value (initdb's 128MB) after a restart.
        c.set_dynamic_config({"postgresql": {"parameters": {"shared_buffers": None}}})

        def server_pending(n):
            return n.sql_value("SELECT pending_restart FROM pg_settings WHERE name = 'shared_buffers'")
        wait_for(lambda: all(server_pending(n) for n in c.nodes), timeout=60, interval=0.5,
                 description="shared_buffers pending a restart after it left the config key")
        wait_for(lambda: all(pending().values()), timeout=60, interval=0.5,
                 description="pending_restart published", state=lambda: str(pending()))
        p = hactl(c, "restart", "--pending", "--force", timeout=300)
        check(p.returncode == 0, out(p), c)
        wait_for(lambda: not any(pending().values()) and all(n.sql_value("SHOW shared_buffers") == "128MB"
                                                             for n in c.nodes),
                 timeout=HEALTHY_TIMEOUT, interval=0.5, description="shared_buffers back to 128MB everywhere",
                 state=lambda: str(pending()))
    finally:
        c.set_dynamic_config({"postgresql": {"parameters": {"shared_buffers": None}}})
        hactl(c, "restart", "--pending", "--force", timeout=300)
        c.wait_healthy(timeout=HEALTHY_TIMEOUT)


def test_lowered_max_connections_with_a_standby_restarted_first(cluster):
    """Issue 12 item 3: parameters a standby must run with at least the
    primary's values. max_connections lowered in the config key and a standby
    restarted before the primary (the wrong order for a decrease): the standby
    starts with the primary's value from its control file (log line), keeps
    streaming and answering /replica, and still shows pending_restart; after
    the primary's restart, its own restart brings it down to the new value.
    Before, it came up unable to replay ("insufficient parameter settings")."""
    c = cluster
    leader = c.node(c.leader_name())
    replica = next(n for n in c.nodes if n is not leader and n.is_replica())
    base = int(leader.sql_value("SHOW max_connections"))
    low = str(base // 2)

    def pending(n):
        return bool((c.members().get(n.name) or {}).get("pending_restart"))

    def restart(n):
        pid = n.postmaster_pid()
        p = hactl(c, "restart", n.name, "--force", timeout=120)
        check(p.returncode == 0, out(p), c)
        wait_for(lambda: n.postmaster_pid() not in (None, pid), timeout=60, interval=0.3,
                 description="%s restarted" % n.name)
    try:
        c.set_dynamic_config({"postgresql": {"parameters": {"max_connections": low}}})
        wait_for(lambda: all(pending(n) for n in c.nodes), timeout=60, interval=0.5,
                 description="pending_restart everywhere", state=lambda: str(c.members()))
        restart(replica)
        wait_for(lambda: replica.is_replica() and replica.sql_value("SHOW max_connections") == str(base),
                 timeout=HEALTHY_TIMEOUT, interval=0.5,
                 description="%s streams with the primary's max_connections %d" % (replica.name, base))
        check("this standby starts with %d" % base in replica.log_path.read_text(errors="replace"),
              "no log line for the raised max_connections", c)
        wait_for(lambda: pending(replica), timeout=30, interval=0.5, description="still pending_restart")
        leader.sql("CREATE TABLE IF NOT EXISTS maxconn_t (i int)")
        leader.sql("INSERT INTO maxconn_t VALUES (1)")
        wait_for(lambda: replica.sql_value("SELECT count(*) FROM maxconn_t") is not None, timeout=30, interval=0.5,
                 description="%s replays" % replica.name)
        restart(leader)
        wait_for(lambda: c.leader_name() == leader.name and leader.is_primary()
                 and leader.sql_value("SHOW max_connections") == low, timeout=HEALTHY_TIMEOUT, interval=0.5,
                 description="the leader back with max_connections %s" % low)
        leader.sql("INSERT INTO maxconn_t VALUES (2)")  # the parameter change record reaches the standby
        wait_for(lambda: replica.sql_value("SELECT count(*) FROM maxconn_t") == 2, timeout=30, interval=0.5,
                 description="%s replays past the primary's restart" % replica.name)
        restart(replica)
        wait_for(lambda: replica.is_replica() and replica.sql_value("SHOW max_connections") == low
                 and not pending(replica), timeout=HEALTHY_TIMEOUT, interval=0.5,
                 description="%s down to max_connections %s" % (replica.name, low))
    finally:
        c.set_dynamic_config({"postgresql": {"parameters": {"max_connections": None}}})
        # the members restarted with the lowered value: back up (what else failed is the error to see)
        try:
            wait_for(lambda: pending(leader) and pending(replica), timeout=60, interval=0.5,
                     description="pending_restart on the restarted members again")
        except harness.WaitTimeout:
            pass
        pids = {n.name: n.postmaster_pid() for n in c.nodes if pending(n)}
        hactl(c, "restart", "--pending", "--force", timeout=300)
        wait_for(lambda: all(c.node(name).postmaster_pid() not in (None, pid) for name, pid in pids.items()),
                 timeout=HEALTHY_TIMEOUT, interval=0.5, description="the pending members restarted")
        c.wait_healthy(timeout=HEALTHY_TIMEOUT)
        leader.sql("DROP TABLE IF EXISTS maxconn_t")


def test_crashed_primary_fails_over_at_once_with_primary_start_timeout_0(cluster):
    """Issue 12 item 5 (Patroni: "Primary crashed. Failing over."): with
    primary_start_timeout 0 in the config key, a primary that crashes (pg_ctl
    stop -m immediate: the control file says "in production" and the worker
    keeps its ZooKeeper session, and so the lock) is not started again as the
    leader: `pg_hactl boot` closes its saved session before starting the
    server, a standby takes over, and the crashed node rejoins as its
    standby. A restart on request (pg_hactl restart) is not a crash: the
    leader keeps its lock. Without it, the restart resumes the session within ttl and the
    same node leads on (test_availability), so no standby would take over."""
    c = cluster
    c.set_dynamic_config({"primary_start_timeout": 0})
    old = c.wait_for_primary(timeout=60)
    # a restart on request is not a crash: the leader comes back with the lock
    pid = old.postmaster_pid()
    p = hactl(c, "restart", old.name, "--force", timeout=120)
    check(p.returncode == 0, out(p), c)
    wait_for(lambda: old.postmaster_pid() not in (None, pid) and old.is_primary(), timeout=60, interval=0.3,
             description="%s restarted and leads again" % old.name, state=c.diagnostics)
    check(c.leader_name() == old.name and "primary_start_timeout is 0" not in old.log_path.read_text(errors="replace"),
          "a requested restart handed the lock over", c)
    old.sql("CREATE TABLE IF NOT EXISTS crash_t (i int)")
    old.sql("INSERT INTO crash_t VALUES (1)")
    others = [n for n in c.nodes if n is not old]
    wait_for(lambda: all(n.sql_value("SELECT count(*) FROM crash_t") == 1 for n in others), timeout=30, interval=0.3,
             description="the row on every standby")
    t0 = time.monotonic()
    old.restart_postgres(mode="immediate")
    new = wait_for(lambda: next((n for n in others if n.is_primary()), None), timeout=3 * TTL, interval=0.2,
                   description="a standby takes over", state=c.diagnostics)
    took = time.monotonic() - t0
    check(c.leader_name() == new.name, "leader %s, expected %s" % (c.leader_name(), new.name), c)
    wait_for(lambda: old.is_replica(), timeout=120, interval=0.5, description="the crashed node rejoins as a standby",
             state=c.diagnostics)
    log = old.log_path.read_text(errors="replace")
    assert "primary_start_timeout is 0" in log and "released the leader lock" in log, old.log_tail(60)
    assert new.sql_value("SELECT count(*) FROM crash_t") == 1
    new.sql("INSERT INTO crash_t VALUES (2)")
    wait_for(lambda: old.sql_value("SELECT count(*) FROM crash_t") == 2, timeout=30, interval=0.3,
             description="the old primary replays the new leader's writes")
    print("primary crashed; %s took over after %.1fs (ttl %d)" % (new.name, took, TTL))
    c.set_dynamic_config({"primary_start_timeout": None})
    c.wait_healthy(timeout=120)

