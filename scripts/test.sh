#!/bin/bash
# The whole test suite: units (ctest), SQL (pg_regress), cluster (pytest, real
# PostgreSQL + ZooKeeper + HAProxy in network namespaces). Run as root on Debian.
#   scripts/test.sh              the host's PostgreSQL (Debian 12: 15): install
#                                dependencies, build, units, pg_regress, the
#                                whole cluster suite
#   scripts/test.sh --pg 17      inside a Debian 13 root file system with
#                                PostgreSQL 17 (scripts/pgroot.sh, created when
#                                missing): build, pg_regress, the 17 selection ($SMOKE17)
#   scripts/test.sh --pg 18      inside a Debian sid root with PostgreSQL 18:
#                                build, pg_regress, the cluster smoke ($SMOKE)
#   scripts/test.sh --matrix     15 on the host, the whole cluster suite on 15
#                                and on 17 side by side, then 18 (the roots are
#                                created while the host builds and tests units)
#   SKIP_DEPS=1                  skip apt-get on the host
#   PGHA_CLUSTER=full|smoke|smoke17|none overrides the cluster selection of a --pg leg
# The units are PostgreSQL-free (core/no_postgres.hpp) and run on the host leg only.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "scripts/test.sh must run as root (network namespaces, PostgreSQL as user postgres)" >&2; exit 2; }

# The bounded cluster smoke: bootstrap, failover with pg_rewind, switchover,
# re-pointing a standby (pg_ha.auto.conf, the quoted replication password).
SMOKE="tests/cluster/test_basic_ha.py::test_bootstrap_convergence[all_at_once]
tests/cluster/test_failover.py::test_host_loss_failover_haproxy_and_rewind_rejoin
tests/cluster/test_switchover.py::test_switchover_by_sql_with_a_writer
tests/cluster/test_passwords.py
tests/cluster/test_pg_versions.py"
# The 17 leg in CI: the smoke plus the modules checked on 17 so far (the full
# suite on 17 is `PGHA_CLUSTER=full scripts/test.sh --pg 17`, ~22 min).
SMOKE17="$SMOKE
tests/cluster/test_sync.py
tests/cluster/test_bootstrap_security.py
tests/cluster/test_settings_file.py
tests/cluster/test_pause_fencing.py
tests/cluster/test_patroni_config.py
tests/cluster/test_migration.py
tests/cluster/test_logical_failover.py"

mode=host major=""
case "${1:-}" in
    "") ;;
    --pg) [ -n "${2:-}" ] || { echo "scripts/test.sh: --pg needs a major (17, 18)" >&2; exit 2; }; mode=root major=$2 ;;
    --matrix) mode=matrix ;;
    --inside) mode=inside ;;  # internal: a --pg leg, already inside its root
    *) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac

leg_time() { echo "== $1 took $(( $(date +%s) - $2 )) s"; }

cluster() {  # full | smoke | none
    # CI shows the end of the log: a wide terminal keeps each failure's first
    # line whole in pytest's short summary.
    export COLUMNS=400
    case "$1" in
        full) /usr/bin/python3 -m pytest -v -p no:cacheprovider --durations=40 tests/cluster ;;
        # shellcheck disable=SC2086
        smoke) /usr/bin/python3 -m pytest -v -p no:cacheprovider $SMOKE ;;
        # shellcheck disable=SC2086
        smoke17) /usr/bin/python3 -m pytest -v -p no:cacheprovider $SMOKE17 ;;
        none) echo "(cluster tests skipped)" ;;
        *) echo "scripts/test.sh: PGHA_CLUSTER must be full, smoke, smoke17 or none" >&2; return 2 ;;
    esac
}

case "$mode" in
    host)
        t0=$(date +%s)
        [ "${SKIP_DEPS:-0}" = 1 ] || sh scripts/install-deps.sh
        echo "== PostgreSQL $(pg_config --version) on the host"
        sh scripts/build.sh

        echo "== unit tests (GoogleTest via ctest)"
        cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
        cmake --build build -j2 >/dev/null
        (cd build && ctest --output-on-failure)

        if command -v clang++ >/dev/null 2>&1; then
            echo "== fuzz targets (libFuzzer, bounded: 20000 runs each from tests/fuzz/corpus)"
            cmake --build build --target fuzz >/dev/null
            for t in health_api codecs; do
                work=$(mktemp -d)   # new inputs go here, the corpus in the tree stays as it is
                build/fuzz/fuzz_$t -runs=20000 -max_total_time=60 "$work" "tests/fuzz/corpus/$t"
                rm -rf "$work"
            done
        fi

        echo "== SQL tests (pg_regress)"
        bash scripts/regress.sh

        echo "== cluster tests (pytest)"
        cluster "${PGHA_CLUSTER:-full}"
        leg_time "host leg" "$t0" ;;
    root)
        t0=$(date +%s)
        bash scripts/pgroot.sh create "$major"
        leg_time "root file system for $major" "$t0"
        t0=$(date +%s)
        default=smoke17
        [ "$major" -lt 18 ] || default=smoke
        PGHA_CLUSTER=${PGHA_CLUSTER:-$default} \
            bash scripts/pgroot.sh run "$major" bash scripts/test.sh --inside
        leg_time "PostgreSQL $major leg" "$t0" ;;
    inside)
        echo "== PostgreSQL $(pg_config --version) in $(. /etc/os-release && echo "$PRETTY_NAME")"
        sh scripts/build.sh
        status=0
        echo "== SQL tests (pg_regress)"
        bash scripts/regress.sh || status=$?
        echo "== cluster tests (pytest, ${PGHA_CLUSTER:-full})"
        cluster "${PGHA_CLUSTER:-full}" || status=$?
        exit $status ;;
    matrix)
        # The roots are mostly downloads: each is built, and pg_ha compiled in
        # it at the lowest priority (one job), while the host builds and runs
        # its units, fuzz targets and pg_regress. Then the whole cluster suite
        # runs on 15 (the host) at once, and on 17 as soon as its root is
        # ready, side by side (each its own network, PGHA_NET_ID 1 and 2: the
        # tests mostly wait on timeouts, so two suites share 2 cores); then the
        # 18 smoke. The 17 root is on the critical path and the 18 root is
        # needed only at the end, so 18 is built after 17, not beside it (two
        # debootstraps at once made the 17 suite start 9 minutes late), and
        # as SCHED_IDLE: it then overlaps the cluster suites, and gets only
        # the CPU time they leave (their tests mostly wait on timeouts).
        mkdir -p .cache
        rm -f .cache/pgroot-17.rc .cache/pgroot-18.rc
        # Each root job leaves its exit status in .cache/pgroot-M.rc (the legs
        # below run in subshells, which cannot `wait` for it).
        ( for m in 17 18; do
              prio="nice -n 19"
              [ $m = 17 ] || prio="chrt --idle 0 nice -n 19"
              ( rc=0
                { $prio bash scripts/pgroot.sh create $m &&
                  $prio bash scripts/pgroot.sh run $m nice -n 19 make -j1 >/dev/null; } || rc=$?
                echo $rc >.cache/pgroot-$m.rc ) >.cache/pgroot-$m.log 2>&1
          done ) &
        # Waits (at most 40 min) for root $1; its log; false when it failed.
        wait_root() {
            local i
            for i in $(seq 2400); do [ -s ".cache/pgroot-$1.rc" ] && break; sleep 1; done
            cat ".cache/pgroot-$1.log"
            [ "$(cat ".cache/pgroot-$1.rc" 2>/dev/null)" = 0 ] || { echo "== the $1 root failed"; return 1; }
        }
        status=0
        PGHA_CLUSTER=none bash scripts/test.sh || status=$?
        t0=$(date +%s)
        echo "== cluster suites side by side: [15] the host (now), [17] Debian 13 (when its root is ready)"
        ( set -o pipefail; export PGHA_NET_ID=1; cluster full 2>&1 | sed -u 's/^/[15] /' ) &
        host_suite=$!
        ( set -o pipefail
          wait_root 17 || exit 1
          leg_time "waiting for the 17 root" "$t0"
          export PGHA_NET_ID=2 PGHA_CLUSTER=full SKIP_DEPS=1
          bash scripts/test.sh --pg 17 2>&1 | sed -u 's/^/[17] /' ) &
        pg17_suite=$!
        wait "$host_suite" || status=$?
        wait "$pg17_suite" || status=$?
        leg_time "the 15 and 17 cluster suites" "$t0"
        wait_root 18 || exit 1
        SKIP_DEPS=1 bash scripts/test.sh --pg 18 || status=$?
        exit $status ;;
esac
