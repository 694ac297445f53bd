"""docker/entrypoint.sh turns PGHA_* variables into pg_ha settings lines
(`pg_ha_settings`, one awk process since a shell loop forking per setting
made a restarting leader miss its ttl on a loaded machine). No cluster: the
function is taken from the entrypoint as it is and run with sh.

  - defaults: the entrypoint's own (scope, node_name, connect addresses,
    the tag settings off), rewind_user / admin_user only with their passwords;
  - booleans normalised to on/off, anything else refused with the variable's
    name and no output;
  - a value spanning lines refused;
  - an unknown PGHA_* variable warned about, the run goes on;
  - quotes and backslashes: random values written by the entrypoint and read
    back by `pg_hactl settings --get` (the reader PostgreSQL's parser is
    checked against in test_settings_file.py) are the values given.
"""
import os
import random
import shutil
import subprocess
import tempfile

import pytest

import harness

pytestmark = pytest.mark.needs_pg_ha

def settings_list():
    """The list `make install` wrote for the PostgreSQL under test."""
    path = os.path.join(harness._pg_config("sharedir") or "/nonexistent", "extension", "pg_ha_settings.list")
    if not os.path.exists(path):
        pytest.fail("%s is missing: make install writes it" % path)
    return path


def script():
    """The entrypoint's definitions up to its first action, then one call."""
    src = harness.ENTRYPOINT.read_text()
    start = src.index("die() {")
    end = src.index('if [ -n "${PGHA_NAME:-}" ]; then')
    return "set -eu\n" + src[start:end] + '\npg_ha_settings "$1"\n'


def run(env):
    full = {"PATH": harness.SAFE_PATH, "LANG": "C.UTF-8"}
    full.update(env)
    p = subprocess.run(["sh", "-c", script(), "sh", settings_list()], env=full, capture_output=True, text=True,
                       timeout=30)
    lines = dict(line.split(" = ", 1) for line in p.stdout.splitlines() if " = " in line)
    return p.returncode, lines, p.stdout, p.stderr


def test_defaults_and_passwords():
    rc, lines, out, err = run({"PGHA_NAME": "pg-1"})
    assert rc == 0, err
    assert lines["pg_ha.scope"] == "'batman'" and lines["pg_ha.namespace"] == "'/service'"
    assert lines["pg_ha.node_name"] == "'pg-1'"
    assert lines["pg_ha.connect_address"] == "'pg-1:5432'"
    assert lines["pg_ha.api_connect_address"] == "'pg-1:8008'"
    assert lines["pg_ha.zookeeper_hosts"] == "'zoo1:2181'"
    assert lines["pg_ha.nofailover"] == "'off'" and lines["pg_ha.nosync"] == "'off'"
    assert "pg_ha.rewind_user" not in lines and "pg_ha.admin_user" not in lines, out
    rc, lines, out, err = run({"PGHA_NAME": "pg-2", "PGHA_PORT": "5433", "PGHA_REWIND_PASSWORD": "r",
                               "PGHA_ADMIN_PASSWORD": "a", "PGHA_SCOPE": "prod"})
    assert rc == 0, err
    assert lines["pg_ha.connect_address"] == "'pg-2:5433'"
    assert lines["pg_ha.rewind_user"] == "'rewind_user'" and lines["pg_ha.admin_user"] == "'admin'"
    assert lines["pg_ha.scope"] == "'prod'"
    # the entrypoint's own variables are no settings and no typos
    assert "pg_ha.port" not in lines and "warning" not in err, (out, err)


@pytest.mark.parametrize("given,expected", [("Yes", "on"), ("1", "on"), ("TRUE", "on"), ("t", "on"),
                                            ("off", "off"), ("No", "off"), ("0", "off"), ("F", "off")])
def test_booleans_are_normalised(given, expected):
    rc, lines, _, err = run({"PGHA_NAME": "pg-1", "PGHA_NOFAILOVER": given})
    assert rc == 0, err
    assert lines["pg_ha.nofailover"] == "'%s'" % expected


@pytest.mark.parametrize("env,message", [
    ({"PGHA_NOFAILOVER": "maybe"}, 'PGHA_NOFAILOVER: "maybe" is not a boolean'),
    ({"PGHA_SCOPE": "two\nlines"}, "PGHA_SCOPE: a value cannot span lines"),
])
def test_bad_values_are_refused(env, message):
    rc, _, out, err = run(dict({"PGHA_NAME": "pg-1"}, **env))
    assert rc != 0 and message in err, (rc, out, err)


def test_unknown_variable_is_a_warning():
    rc, lines, _, err = run({"PGHA_NAME": "pg-1", "PGHA_NOFAILOVR": "on"})
    assert rc == 0 and lines["pg_ha.nofailover"] == "'off'"
    assert "warning: PGHA_NOFAILOVR is not a pg_ha setting" in err, err


def test_quoted_values_read_back_by_pg_hactl():
    hactl = os.environ.get("PGHA_TEST_HACTL", str(harness.PG_HACTL))
    rng = random.Random(20261204)
    alphabet = ["a", "Z", "0", " ", "'", "\\", "#", "=", "\"", "$", "%", ",", ";", "é", "/", ":", "-", "\t"]
    d = tempfile.mkdtemp(prefix="pgha-entry-")
    try:
        for _ in range(25):
            value = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 20)))
            rc, _, out, err = run({"PGHA_NAME": "pg-1", "PGHA_SCOPE": value})
            assert rc == 0, err
            conf = os.path.join(d, "pg_ha.conf")
            with open(conf, "w", encoding="utf-8") as f:
                f.write(out)
            p = subprocess.run([hactl, "settings", "--config", conf, "--get", "pg_ha.scope"], capture_output=True,
                               timeout=30)
            assert p.returncode == 0, (value, out, p.stderr)
            assert p.stdout == (value + "\n").encode("utf-8"), (value, out, p.stdout)
    finally:
        shutil.rmtree(d, ignore_errors=True)
