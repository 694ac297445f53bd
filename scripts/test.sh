#!/bin/bash
# The whole test suite: units (ctest), SQL (pg_regress), cluster (pytest, real
# PostgreSQL + ZooKeeper + HAProxy in network namespaces). Run as root on Debian 12.
#   scripts/test.sh            install dependencies, build, run everything
#   SKIP_DEPS=1 scripts/test.sh   skip apt-get
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
[ "$(id -u)" = 0 ] || { echo "scripts/test.sh must run as root (network namespaces, PostgreSQL as user postgres)" >&2; exit 2; }
[ "${SKIP_DEPS:-0}" = 1 ] || sh scripts/install-deps.sh
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
/usr/bin/python3 -m pytest -v -p no:cacheprovider tests/cluster
