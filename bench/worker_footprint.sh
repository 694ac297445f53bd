#!/bin/bash
# Memory and CPU footprint of the pg_ha background worker while the cluster idles.
#
#   bench/worker_footprint.sh [PID]
#
# Without PID it looks for the one process whose title contains "pg_ha worker"
# (if there are several, e.g. several nodes on one host, pass the PID).
# Samples at the start and after DURATION seconds (default 60):
#   - RSS: VmRSS from /proc/PID/status. It counts every page of shared memory
#     the worker has touched (shared_buffers included), so it overstates what
#     the worker itself costs;
#   - private memory: Private_Clean + Private_Dirty from /proc/PID/smaps_rollup
#     (needs root or the process owner), the memory only this process holds;
#   - CPU time: utime + stime from /proc/PID/stat, in clock ticks.
# Prints figures only; it does not judge them (targets: bench/README.md).
# Run it as root or as the owner of the process (usually postgres).
set -euo pipefail

duration=${DURATION:-60}
case $duration in
    '' | *[!0-9.]* | *.*.*) echo "$0: DURATION must be a number of seconds" >&2; exit 2 ;;
esac

if [ $# -gt 1 ]; then
    echo "usage: $0 [PID]   (DURATION=seconds, default 60)" >&2
    exit 2
fi

if [ $# -eq 1 ]; then
    pid=$1
    case $pid in '' | *[!0-9]*) echo "$0: PID must be a number" >&2; exit 2 ;; esac
else
    mapfile -t found < <(pgrep -f 'pg_ha worker' | grep -vx "$$" || true)
    case ${#found[@]} in
        0)
            echo "$0: no process whose title contains 'pg_ha worker'; is pg_ha running here? (or pass a PID)" >&2
            exit 1
            ;;
        1) pid=${found[0]} ;;
        *)
            echo "$0: several processes match 'pg_ha worker'; pass the PID of one:" >&2
            ps -o pid=,user=,args= -p "$(IFS=,; echo "${found[*]}")" >&2
            exit 2
            ;;
    esac
fi

[ -r "/proc/$pid/stat" ] || { echo "$0: no process $pid" >&2; exit 1; }

ticks_per_s=$(getconf CLK_TCK)
title=$(tr '\0' ' ' <"/proc/$pid/cmdline" | sed 's/ *$//')

# Fields after the command name in /proc/PID/stat: the name is in parentheses
# and may contain spaces, so cut at the last ')'. Then state is field 3,
# utime 14, stime 15, starttime 22 (man 5 proc).
stat_fields() {
    local s
    s=$(<"/proc/$pid/stat")
    echo "${s##*) }"
}
cpu_ticks() { stat_fields | awk '{ print $12 + $13 }'; }   # utime + stime
start_time() { stat_fields | awk '{ print $20 }'; }
# Still the same, live process? (a zombie keeps its /proc entry, without memory)
alive() {
    [ -r "/proc/$pid/stat" ] || return 1
    case $(stat_fields | awk '{ print $1 }') in Z | X | x) return 1 ;; esac
    [ "$(start_time)" = "$start_id" ]
}

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status"; }

private_kb() {
    awk '/^Private_(Clean|Dirty):/ { kb += $2; seen = 1 } END { if (seen) print kb }' \
        "/proc/$pid/smaps_rollup" 2>/dev/null || true
}

now_s() { awk '{ print $1 }' /proc/uptime; }

mb() { awk -v kb="$1" 'BEGIN { printf "%.1f", kb / 1024 }'; }

start_id=$(start_time)
alive || { echo "$0: process $pid is not running" >&2; exit 1; }
t0=$(now_s)
cpu0=$(cpu_ticks)
rss0=$(rss_kb)
priv0=$(private_kb)

echo "# pid $pid: $title"
echo "# sampling now and again in $duration s; keep the cluster idle meanwhile"
sleep "$duration"

if ! alive; then
    echo "$0: process $pid exited during the measurement" >&2
    exit 1
fi
t1=$(now_s)
cpu1=$(cpu_ticks)
rss1=$(rss_kb)
priv1=$(private_kb)

elapsed=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
cpu_s=$(awk -v a="$cpu0" -v b="$cpu1" -v hz="$ticks_per_s" 'BEGIN { printf "%.2f", (b - a) / hz }')
cpu_pct=$(awk -v a="$cpu0" -v b="$cpu1" -v hz="$ticks_per_s" -v t0="$t0" -v t1="$t1" \
    'BEGIN { printf "%.3f", 100 * (b - a) / hz / (t1 - t0) }')
resolution=$(awk -v hz="$ticks_per_s" -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.3f", 100 / hz / (t1 - t0) }')

if [ -n "$priv0" ] && [ -n "$priv1" ]; then
    priv_line="start $(mb "$priv0") MB, end $(mb "$priv1") MB (Private_Clean + Private_Dirty)"
else
    priv_line="unavailable (cannot read /proc/$pid/smaps_rollup: run as root or as the process owner)"
fi

echo
echo "== footprint of pid $pid ($title), ${elapsed} s window (MB = 1024 kB)"
echo "RSS:            start $(mb "$rss0") MB, end $(mb "$rss1") MB (VmRSS; includes shared buffers the worker touched)"
echo "private memory: $priv_line"
echo "CPU time used:  $cpu_s s (utime + stime; $ticks_per_s ticks/s)"
echo "CPU:            $cpu_pct % of one core (resolution $resolution %)"
