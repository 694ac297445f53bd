"""pytest fixtures for the pg_ha cluster tests (the harness itself is harness.py)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402


def _env_float(name, default):
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return float(default)


# Generous bounds for 2 cores; override from the environment when needed.
BOOTSTRAP_TIMEOUT = _env_float("PGHA_TEST_BOOTSTRAP_TIMEOUT", 180)
HEALTHY_TIMEOUT = _env_float("PGHA_TEST_HEALTHY_TIMEOUT", 120)


def pytest_report_header(config):
    return "PostgreSQL under test: %s (PGHA_PG_BINDIR or pg_config), pg_ha.so: %s" % (harness.PG_BIN, harness.PG_HA_SO)


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_pg_ha: needs the installed extension and pg_hactl")
    config.addinivalue_line("markers", "slow: long-running scenario (soak, many restarts)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def _failed(item):
    return any(getattr(getattr(item, "rep_" + w, None), "failed", False) for w in ("setup", "call"))


@pytest.fixture(scope="session")
def require_root():
    if os.geteuid() != 0:
        pytest.skip("cluster tests need root (network namespaces, nftables)")


@pytest.fixture(scope="session")
def require_pg_ha(require_root):
    if not harness.extension_installed():
        pytest.skip("pg_ha is not installed (%s / %s missing): run `make install`"
                    % (harness.PG_HA_SO, harness.PG_HACTL))


@pytest.fixture
def make_cluster(request, require_root):
    """Factory for a fresh Cluster (network set up, nothing started) torn down
    after the test. Only one cluster can be live at a time: making a second
    one tears down the first. Run directories of failed tests are kept."""
    created = []

    def factory(**kwargs):
        for c in created:
            c.teardown()
        c = harness.Cluster(**kwargs)
        created.append(c)
        c.setup()
        return c

    yield factory
    failed = _failed(request.node)
    for c in created:
        if failed:
            c.keep_dir = True
        c.teardown()
        if failed:
            sys.stderr.write("\nkept run directory of failed test: %s\n" % c.base_dir)


def start_first_then_others(c, first="pg-1"):
    """Start ZooKeeper (and HAProxy), `first` alone, then the other nodes; wait until healthy."""
    c.start(nodes=False)
    c.start_nodes([first])
    c.wait_for_primary(timeout=BOOTSTRAP_TIMEOUT, nodes=[first])
    c.start_nodes([n.name for n in c.nodes if n.name != first])
    c.wait_healthy(timeout=BOOTSTRAP_TIMEOUT)


def module_cluster(request, c, start):
    """Body of a module-scoped cluster fixture (use with `yield from`): start(c),
    hand out c, tear it down; the run directory is kept when the start or a
    test of the module failed."""
    failures_before = request.session.testsfailed
    try:
        start(c)
    except BaseException:
        c.keep_dir = True
        sys.stderr.write("\ncluster start failed; run directory kept: %s\n" % c.base_dir)
        c.teardown()
        raise
    yield c
    if request.session.testsfailed > failures_before:
        c.keep_dir = True
        sys.stderr.write("\nkept run directory of module with failures: %s\n" % c.base_dir)
    c.teardown()


@pytest.fixture(scope="module")
def cluster(request, require_pg_ha):
    """A 3-node cluster with ZooKeeper and HAProxy shared by a module's tests.
    It is healthy when handed out; each test must leave it healthy."""
    def start(c):
        c.start()
        c.wait_healthy(timeout=BOOTSTRAP_TIMEOUT)
    yield from module_cluster(request, harness.Cluster(), start)
