"""Self-test of the split-brain checker's verdict (no cluster needed)."""
import threading

import pytest

from splitbrain import Ack, SplitBrainChecker


class FakeWriter:
    def __init__(self, acks):
        self.acks = acks
        self.lock = threading.Lock()
        self.attempts = len(acks)
        self.standby_polls = 0
        self.error_count = 0
        self.errors = []


def checker(acks):
    sb = SplitBrainChecker.__new__(SplitBrainChecker)
    sb.t_start = 0.0
    sb.writers = {}
    for a in acks:
        sb.writers.setdefault(a.node, FakeWriter([])).acks.append(a)
    return sb


def ack(node, tl, t):
    return Ack(node, tl, t - 0.01, t, int(t * 1000))


def test_clean_failover_passes():
    sb = checker([ack("pg-1", 1, 1.0), ack("pg-1", 1, 2.0), ack("pg-2", 2, 2.5), ack("pg-2", 2, 3.0)])
    assert sb.violations() == []
    assert "pg-2" in sb.check()


def test_overlapping_timelines_fail():
    sb = checker([ack("pg-1", 1, 1.0), ack("pg-2", 2, 2.0), ack("pg-1", 1, 2.1)])
    problems = sb.violations()
    assert len(problems) == 1 and "timelines 1 and 2 overlap" in problems[0]
    with pytest.raises(AssertionError):
        sb.check()


def test_overlap_across_non_adjacent_timelines_fails():
    sb = checker([ack("pg-1", 1, 5.0), ack("pg-2", 2, 1.0), ack("pg-3", 3, 4.0)])
    problems = sb.violations()
    assert any("timelines 1 and 3" in p for p in problems), problems
    assert any("timelines 1 and 2" in p for p in problems), problems


def test_two_nodes_on_one_timeline_fail():
    sb = checker([ack("pg-1", 1, 1.0), ack("pg-2", 1, 2.0)])
    problems = sb.violations()
    assert len(problems) == 1 and "acknowledged by several nodes" in problems[0]


def test_no_acks_fails_check():
    sb = checker([])
    with pytest.raises(AssertionError, match="saw nothing"):
        sb.check()
