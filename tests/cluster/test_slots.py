"""Physical replication slots that never fill the disk (issue 14 item 3;
README "Replication slots").

One cluster of 3 nodes, dynamic config ttl 10 / loop_wait 2 / retry_timeout 2,
member_slots_ttl 10 s, ignore_slots [{"name": "keep_me"}] and the permanent
slot "backup_rx" in the config key's `slots`:

0. every node creates the permanent slot; on a standby it follows the replay
   position (it pins no WAL there), on the leader it stays where its consumer
   leaves it, and it is never dropped;
1. the leader holds a slot for each other member and publishes them in the
   status key's retain_slots (Patroni 4);
2. a replica's host is killed for good: its slot stays for member_slots_ttl
   after its member znode went (it pins the WAL it needs), then the leader
   drops it and the WAL it pinned is removed at the next checkpoint; the
   status key no longer retains it;
3. an operator's inactive slot nobody claims ("stray") is dropped after the
   ttl too; one listed in ignore_slots ("keep_me") and the running member's
   slot are kept;
4. a standby holds a slot for every other member (the leader's too), moved
   forward as that member advances (it does not pin the standby's WAL): the
   leader's from the status key's optime, the others' from its `slots`,
   since standbys do not watch member rows; an unknown one is dropped after
   the ttl;
5. so after the primary's host dies, the standby that takes over already has
   the old primary's slot, and the old primary streams through it when it
   is back.
"""
import time

import pytest

import harness
from conftest import module_cluster, start_first_then_others
from harness import wait_for

pytestmark = pytest.mark.needs_pg_ha

MEMBER_SLOTS_TTL = 10
PERMANENT = "backup_rx"


@pytest.fixture(scope="module")
def cluster(request, require_pg_ha):
    c = harness.Cluster(nodes=3, haproxy=False,
                        dynamic_config={"ttl": 10, "loop_wait": 2, "retry_timeout": 2,
                                        "member_slots_ttl": MEMBER_SLOTS_TTL,
                                        "ignore_slots": [{"name": "keep_me", "type": "physical"}],
                                        "slots": {PERMANENT: {"type": "physical"}}})
    yield from module_cluster(request, c, start_first_then_others)


def slot_name(member):
    return member.lower().replace("-", "_")


def slots(node):
    return {r[0]: r[1] for r in node.sql("SELECT slot_name, restart_lsn::text FROM pg_replication_slots")}


def retained(c):
    st = c.zk_json("status")
    return sorted(st.get("retain_slots") or []) if isinstance(st, dict) else []


def make_wal(p, n=3):
    p.sql("CREATE TABLE IF NOT EXISTS slot_t (x int)")
    for _ in range(n):
        p.sql("INSERT INTO slot_t VALUES (1)")
        p.sql("SELECT pg_switch_wal()")
    p.sql("CHECKPOINT")


def test_permanent_slot_on_every_node(cluster):
    c = cluster
    p = c.primary()
    s = c.replicas()[0]
    for n in c.nodes:
        wait_for(lambda n=n: PERMANENT in slots(n), timeout=30, description="%s on %s" % (PERMANENT, n.name),
                 state=lambda n=n: slots(n))
    on_leader = slots(p)[PERMANENT]
    start = slots(s)[PERMANENT]
    assert on_leader and start, "the permanent slot reserves no WAL: %s / %s" % (slots(p), slots(s))

    def moved():
        make_wal(p, 1)
        return s.sql_value("SELECT (restart_lsn > %s::pg_lsn) FROM pg_replication_slots WHERE slot_name = %s",
                           (start, PERMANENT))
    wait_for(moved, timeout=30, interval=1, description="%s on the standby follows its replay" % PERMANENT,
             state=lambda: slots(s))
    assert slots(p)[PERMANENT] == on_leader, "pg_ha moved the leader's permanent slot (its consumer's)"


def wait_members_settled(c):
    """Every member running and streaming, and no news for 3 s (news
    replaces a member's row, and every standby reads all rows again)."""
    def czxids():
        return {n: c.zk().get(c.zk_path("members", n))[1].czxid for n in c.members()}
    wait_for(lambda: all(m.get("state") == "running" for m in c.members().values()), timeout=60,
             description="every member running", state=c.members)
    before = None
    for _ in range(20):
        now = czxids()
        if now == before:
            return
        before = now
        time.sleep(3)
    raise AssertionError("member rows still replaced every 3 s: %r" % before)


def test_standby_moves_its_copy_of_another_standbys_slot(cluster):
    """Standbys leave no watch on member rows (issue 14 item 4: positions,
    rewritten every loop_wait, are read by the leader alone), so a standby
    takes the other members' positions from the leader's status key
    (`slots`, Patroni's field) and its copy of another standby's slot still
    moves forward."""
    c = cluster
    p = c.primary()
    s, other = c.replicas()[:2]
    other_slot = slot_name(other.name)
    wait_for(lambda: other_slot in slots(s), timeout=30, description="%s's slot for %s" % (s.name, other.name),
             state=lambda: slots(s))
    wait_members_settled(c)
    make_wal(p, 2)
    target = other.sql_value("SELECT pg_last_wal_replay_lsn()::text")

    def caught_up():
        make_wal(p, 1)  # the leader rewrites the status key while WAL moves
        return s.sql_value("SELECT (restart_lsn >= %s::pg_lsn) FROM pg_replication_slots WHERE slot_name = %s",
                           (target, other_slot))
    wait_for(caught_up, timeout=30, interval=1, description="%s's slot for the standby %s at %s" % (
        s.name, other.name, target), state=lambda: (slots(s), c.zk_json("status")))
    published = c.zk_json("status").get("slots") or {}
    assert other_slot in published and slot_name(s.name) in published, c.zk_json("status")
    assert slot_name(p.name) not in published, "the leader's own position is the optime"


def test_departed_member_slot_expires_and_frees_wal(cluster):
    c = cluster
    p = c.primary()
    r_keep, r_gone = sorted(c.replicas(), key=lambda n: n.name)
    want = sorted([slot_name(r_keep.name), slot_name(r_gone.name)])
    wait_for(lambda: set(want) <= set(slots(p)), timeout=30, description="slots for both replicas on the leader",
             state=lambda: slots(p))
    wait_for(lambda: set(want) <= set(retained(c)), timeout=30, description="retain_slots in the status key",
             state=lambda: c.zk_json("status"))
    p.sql("SELECT pg_create_physical_replication_slot('keep_me')")
    p.sql("SELECT pg_create_physical_replication_slot('stray', true)")
    stray_created = time.monotonic()

    gone = slot_name(r_gone.name)
    r_gone.kill_host()
    wait_for(lambda: r_gone.name not in c.members(), timeout=40, description="%s's member znode gone" % r_gone.name)
    t_gone = time.monotonic()
    pinned_lsn = slots(p)[gone]
    pinned_file = p.sql_value("SELECT pg_walfile_name(%s::pg_lsn)", (pinned_lsn,))
    make_wal(p)
    # within member_slots_ttl: kept, and the WAL it needs with it
    assert gone in slots(p), "the departed member's slot was dropped at once"
    assert gone in retained(c)
    waldir = lambda: {r[0] for r in p.sql("SELECT name FROM pg_ls_waldir()")}
    assert pinned_file in waldir(), "WAL the departed member needs was removed while its slot is kept"

    wait_for(lambda: gone not in slots(p), timeout=MEMBER_SLOTS_TTL + 30,
             description="the departed member's slot dropped after member_slots_ttl", state=lambda: slots(p))
    elapsed = time.monotonic() - t_gone
    assert elapsed >= MEMBER_SLOTS_TTL - 3, "dropped %.1f s after the member left (ttl %d s)" % (
        elapsed, MEMBER_SLOTS_TTL)
    wait_for(lambda: "stray" not in slots(p), timeout=30, description="the unknown slot dropped",
             state=lambda: slots(p))
    assert time.monotonic() - stray_created >= MEMBER_SLOTS_TTL - 1
    left = slots(p)
    assert "keep_me" in left, "a slot listed in ignore_slots was dropped"
    assert PERMANENT in left, "the permanent slot was dropped"
    assert slot_name(r_keep.name) in left, "the running member's slot was dropped"

    def wal_freed():
        # the permanent slot's consumer (none here) moves it on the leader
        p.sql("SELECT pg_replication_slot_advance(%s, pg_current_wal_lsn())", (PERMANENT,))
        make_wal(p, 1)
        return pinned_file not in waldir()
    wait_for(wal_freed, timeout=30, interval=1, description="WAL segment %s removed" % pinned_file)
    wait_for(lambda: gone not in retained(c), timeout=20, description="status key no longer retains %s" % gone,
             state=lambda: c.zk_json("status"))


def test_standby_keeps_member_slots_moving_and_expires_unknown_ones(cluster):
    c = cluster
    p = c.primary()
    s = c.replicas()[0]
    want = {slot_name(n) for n in c.members() if n != s.name}
    wait_for(lambda: want <= set(slots(s)), timeout=30, description="the standby's slots for %s" % sorted(want),
             state=lambda: slots(s))
    leader_slot = slot_name(p.name)
    start = slots(s)[leader_slot]
    s.sql("SELECT pg_create_physical_replication_slot('stray_standby', true)")
    t0 = time.monotonic()

    def moved():
        make_wal(p, 1)
        return s.sql_value("SELECT (restart_lsn > %s::pg_lsn) FROM pg_replication_slots WHERE slot_name = %s",
                           (start, leader_slot))
    wait_for(moved, timeout=30, interval=1, description="the standby's slot for %s moved forward" % p.name,
             state=lambda: slots(s))
    wait_for(lambda: "stray_standby" not in slots(s), timeout=MEMBER_SLOTS_TTL + 30,
             description="the unknown slot on the standby dropped", state=lambda: slots(s))
    assert time.monotonic() - t0 >= MEMBER_SLOTS_TTL - 1
    assert leader_slot in slots(s), "the standby dropped its slot for a running member"


def test_new_leader_has_the_old_leaders_slot(cluster):
    """The standby that takes over already holds a slot for the old primary, which
    streams through it as soon as it is back."""
    c = cluster
    p = c.primary()
    s = c.replicas()[0]
    wait_for(lambda: slot_name(p.name) in slots(s), timeout=30, description="the standby's slot for the leader")
    p.kill_host()
    wait_for(lambda: s.is_primary(), timeout=60, interval=0.2, description="%s to take over" % s.name,
             state=c.diagnostics)
    assert slot_name(p.name) in slots(s), "the new leader has no slot for the old one: %s" % slots(s)
    t0 = time.monotonic()
    p.start_host()
    wait_for(lambda: p.streams_from(s), timeout=120, interval=0.2, description="%s to stream from %s" % (p.name, s.name),
             state=c.diagnostics)
    print("\nold primary streaming %.2f s after its host started" % (time.monotonic() - t0))
    assert any(r["application_name"] == p.name for r in s.replication_rows())
    active = s.sql_value("SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot_name(p.name),))
    assert active, "the old primary streams without its slot"
