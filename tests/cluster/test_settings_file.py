"""The settings file is read by pg_hactl exactly as PostgreSQL reads it
(issue 10 item 6): quoting, every escape, octal, `include` relative to the
including file. A property test: random values, each written in several ways
PostgreSQL accepts, read back with `postgres -C` (the server's own parser)
and with `pg_hactl settings --get`; both must print the same bytes. Files
PostgreSQL refuses, pg_hactl refuses too. No cluster; runs PostgreSQL's
binary as the postgres user."""
import os
import random
import shutil
import subprocess
import tempfile

import pytest

import harness

pytestmark = pytest.mark.needs_pg_ha

ALPHABET = ["a", "Z", "0", " ", "\t", "'", "\\", "#", "=", "\"", "$", "%", ",", ";", "é", "€", "/", ":", "-"]
ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r", "\b": "\\b", "\f": "\\f"}


def encode(value, style, rng):
    """A quoted configuration-file literal for `value` in one of several styles."""
    out = []
    for ch in value:
        if ch == "'":
            out.append("''" if style in ("doubled", "mixed") and (style == "doubled" or rng.random() < 0.5) else "\\'")
        elif ch == "\\":
            out.append("\\\\" if style != "octal" or rng.random() < 0.5 else "\\134")
        elif ch in ESCAPES:
            out.append(ESCAPES[ch])
        elif style == "octal" and ch.isascii() and ch.isalnum() and rng.random() < 0.3:
            out.append("\\%03o" % ord(ch))
        elif style == "mixed" and ch.isascii() and ch.isalpha() and rng.random() < 0.2:
            out.append("\\" + ch if ch not in "bfnrt" else ch)   # \c is c for other letters
        else:
            out.append(ch)
    return "'" + "".join(out) + "'"


@pytest.fixture(scope="module")
def workdir():
    d = tempfile.mkdtemp(prefix="pgha-settings-")
    os.chmod(d, 0o755)
    shutil.chown(d, "postgres")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def write(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    shutil.chown(path, "postgres")


def server_value(d, name):
    p = subprocess.run(["runuser", "-u", "postgres", "--", str(harness.PG_BIN / "postgres"), "-C", name, "-D", d],
                       capture_output=True, timeout=30)
    return p.returncode, p.stdout


def hactl_value(path, name):
    hactl = os.environ.get("PGHA_TEST_HACTL", str(harness.PG_HACTL))  # e.g. a build not installed yet
    p = subprocess.run([hactl, "settings", "--config", path, "--get", name], capture_output=True, timeout=30)
    return p.returncode, p.stdout


def test_random_values_read_alike(workdir):
    rng = random.Random(20261201)
    cases = 0
    for i in range(40):
        value = "".join(rng.choice(ALPHABET + list(ESCAPES)) for _ in range(rng.randint(0, 24)))
        style = ("doubled", "backslash", "octal", "mixed")[i % 4]
        literal = encode(value, style, rng)
        # the value in an included file half of the time (relative include)
        if i % 2:
            write(os.path.join(workdir, "sub.conf"), "pg_ha.scope = %s # comment\n" % literal)
            write(os.path.join(workdir, "postgresql.conf"), "pg_ha.scope = 'overridden'\ninclude 'sub.conf'\n")
        else:
            write(os.path.join(workdir, "postgresql.conf"), "pg_ha.scope %s\n" % literal)
        conf = os.path.join(workdir, "postgresql.conf")
        rc_s, out_s = server_value(workdir, "pg_ha.scope")
        rc_h, out_h = hactl_value(conf, "pg_ha.scope")
        assert rc_s == 0, "postgres -C refused %r: %r" % (literal, out_s)
        assert rc_h == 0, "pg_hactl refused %r (postgres read %r)" % (literal, out_s)
        assert out_h == out_s, "value %r written as %s: postgres read %r, pg_hactl %r" % (value, literal, out_s,
                                                                                          out_h)
        assert out_s == (value + "\n").encode("utf-8")
        cases += 1
    print("settings file: %d random values read alike by postgres -C and pg_hactl" % cases)


@pytest.mark.parametrize("line", ["pg_ha.scope = two words", "pg_ha.scope = 'a' 'b'", "pg_ha.scope = 'open",
                                  "pg_ha.scope = zoo1:2181,zoo2:2181", "pg_ha.scope ="])
def test_files_postgres_refuses_pg_hactl_refuses(workdir, line):
    write(os.path.join(workdir, "postgresql.conf"), line + "\n")
    rc_s, _ = server_value(workdir, "pg_ha.scope")
    rc_h, out_h = hactl_value(os.path.join(workdir, "postgresql.conf"), "pg_ha.scope")
    assert rc_s != 0, "postgres accepted %r" % line
    assert rc_h != 0, "pg_hactl read %r from %r, which postgres refuses" % (out_h, line)
