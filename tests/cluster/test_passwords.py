"""A replication password with a space, a single quote and a backslash works
end to end (issue 8 item 5, review S6/S7): the entrypoint writes it into the
settings file PostgreSQL-quoted, pg_hactl boot reads it the same way and clones
with it (pg_basebackup), the standbys stream with the primary_conninfo boot
wrote, and after a failover the remaining standby follows the new leader with
the primary_conninfo the worker builds (libpq-quoted, ALTER SYSTEM).
Meanwhile no process on the machine shows a password in its command line
(`ps`), the clones (pg_basebackup) included (issue 10 item 4)."""
import os
import threading
import time

from harness import wait_for
from test_failover import FAILOVER_TIMEOUT, start_cluster, wait_new_leader, wait_streaming

PASSWORD = "rep Xq7z l'a\\ss"  # space, single quote, backslash
REWIND_PASSWORD = "rw-Zq81 s3cret"
# What the command-line watch looks for: fragments that survive any quoting
# (a password in a conninfo argument is escaped: l\'a\\ss).
NEEDLES = ["Xq7z", "Zq81", "rest s3cret"]


class CmdlineWatch(threading.Thread):
    """Reads every process's /proc/PID/cmdline (what `ps` shows) every 10 ms
    until stopped (at most `limit_s`), recording the ones that contain a
    needle and the pg_basebackup command lines it saw (proof that it watched
    a clone)."""

    def __init__(self, needles, limit_s=900.0):
        super().__init__(daemon=True, name="cmdline-watch")
        self.needles = [n.encode() for n in needles]
        self.deadline = time.monotonic() + limit_s
        self.stop_event = threading.Event()
        self.leaks, self.clones, self.scans = [], set(), 0

    def run(self):
        while not self.stop_event.is_set() and time.monotonic() < self.deadline:
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    with open("/proc/%s/cmdline" % pid, "rb") as f:
                        cmd = f.read()
                except OSError:
                    continue
                if b"pg_basebackup" in cmd.split(b"\0", 1)[0]:
                    self.clones.add(pid)
                if any(n in cmd for n in self.needles) and len(self.leaks) < 20:
                    self.leaks.append(cmd.replace(b"\0", b" ").decode(errors="replace")[:300])
            self.scans += 1
            self.stop_event.wait(0.01)

    def stop(self):
        self.stop_event.set()
        self.join(timeout=10)


def test_replication_password_with_space_quote_and_backslash(make_cluster, require_pg_ha):
    watch = CmdlineWatch(NEEDLES)
    watch.start()
    try:
        c = start_cluster(make_cluster, env={"PGHA_REPLICATION_PASSWORD": PASSWORD,
                                             "PGHA_REWIND_PASSWORD": REWIND_PASSWORD})
    finally:
        watch.stop()
    assert watch.clones, "no pg_basebackup process seen in %d scans of /proc" % watch.scans
    assert not watch.leaks, "passwords in command lines: %s" % watch.leaks
    print("%d scans of every command line, %d pg_basebackup processes: no password" % (
        watch.scans, len(watch.clones)))
    old = c.node("pg-1")
    standbys = [n for n in c.nodes if n is not old]
    for s in standbys:
        wait_streaming(c, s, old)  # cloned and streaming with the password boot wrote
    # boot wrote the password into the standbys' primary_conninfo, libpq-quoted
    assert "'rep Xq7z l\\'a\\\\ss'" in standbys[0].sql_value("SHOW primary_conninfo")
    with c.leader_watch() as lw:
        t_kill = time.monotonic()
        old.kill_host()
        new, _ = wait_new_leader(c, lw, old, t_kill, timeout=FAILOVER_TIMEOUT, allowed=standbys)
    other = next(s for s in standbys if s is not new)
    # The worker re-points the other standby (ALTER SYSTEM primary_conninfo with the quoted password).
    wait_streaming(c, other, new)
    conninfo = other.sql_value("SHOW primary_conninfo")
    assert "'rep Xq7z l\\'a\\\\ss'" in conninfo, conninfo
    wait_for(lambda: new.sql_value("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'") >= 1,
             timeout=30, interval=0.5, description="the new primary streams to the other standby")
