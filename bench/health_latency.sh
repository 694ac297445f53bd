#!/bin/bash
# Open-loop latency of one pg_ha health endpoint (issue 14 item 6): requests
# offered at a fixed rate, latency counted from when each was due.
#
#   bench/health_latency.sh HOST:PORT [PATH]
#
#   RATES (default "5000 20000"), CONNECTIONS (default "8 64"), SECONDS (10)
#   and TRIALS (5) choose the runs: every rate with every connection count,
#   TRIALS times each. Prints each run (bench/health_latency.cpp, compiled on
#   the fly) and, per rate and connection count, p99 as median, min, max, n.
#
# Why not wrk alone: wrk is a closed loop (bench/health_endpoint.sh), whose
# latency at saturation is the queue it builds itself (64 connections at
# 32,000 answers/s wait 2 ms on average by Little's law) and whose two
# threads take the cores the server needs on a 2-core machine. Both figures
# go in bench/README.md. Prints figures only.
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 HOST:PORT [PATH]   (PATH defaults to /primary)" >&2
    exit 2
fi
host=${1%:*}
port=${1##*:}
path=${2:-/primary}
rates=${RATES:-5000 20000}
connections=${CONNECTIONS:-8 64}
seconds=${SECONDS_PER_RUN:-10}
trials=${TRIALS:-5}

here=$(cd "$(dirname "$0")" && pwd)
bin=$(mktemp -d)/health_latency
trap 'rm -rf "$(dirname "$bin")"' EXIT
g++ -std=c++17 -O2 -Wall -Wextra -Werror -o "$bin" "$here/health_latency.cpp"

declare -A p99s
for rate in $rates; do
    for c in $connections; do
        for t in $(seq 1 "$trials"); do
            out=$("$bin" "$host" "$port" "$path" "$rate" "$c" "$seconds")
            echo "rate $rate, $c connections, trial $t: $out" | tr '\n' ' '
            echo
            p=$(echo "$out" | sed -n 's/.*p99 \([0-9.]*\) .*/\1/p')
            p99s[$rate/$c]="${p99s[$rate/$c]:-} $p"
        done
    done
done

echo
echo "== p99 latency (ms), GET http://$host:$port$path, $seconds s per run"
echo "rate/s   conns  median   min      max      n"
for rate in $rates; do
    for c in $connections; do
        # shellcheck disable=SC2086
        printf '%s\n' ${p99s[$rate/$c]} | sort -g | awk -v r="$rate" -v c="$c" '
            { v[NR] = $1 }
            END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
                  printf "%-8s %-6s %-8.3f %-8.3f %-8.3f %d\n", r, c, m, v[1], v[NR], NR }'
    done
done
