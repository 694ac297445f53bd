#!/bin/bash
# Throughput and latency of one pg_ha health endpoint, measured with wrk.
#
#   bench/health_endpoint.sh HOST:PORT [PATH]
#
#   PATH defaults to /primary. Runs
#     wrk -t2 -c8 -d10s --latency http://HOST:PORT/PATH
#   (override with WRK_THREADS, WRK_CONNECTIONS, WRK_DURATION) and prints
#   wrk's raw output, then one summary line each for requests/s and p99 latency.
#
# Prints figures only; it does not judge them (targets: bench/README.md).
# /primary answers 503 on a replica: that is a valid health answer and is
# measured like a 200; the script says which status the endpoint returned.
set -euo pipefail

usage() {
    echo "usage: $0 HOST:PORT [PATH]   (PATH defaults to /primary)" >&2
    exit 2
}

if [ $# -lt 1 ] || [ $# -gt 2 ]; then usage; fi
target=$1
path=${2:-/primary}
case $target in
    *:*) ;;
    *) usage ;;
esac
case $path in
    /*) ;;
    *) path=/$path ;;
esac
url="http://$target$path"

threads=${WRK_THREADS:-2}
connections=${WRK_CONNECTIONS:-8}
duration=${WRK_DURATION:-10s}

for tool in wrk curl; do
    command -v "$tool" >/dev/null || { echo "$0: $tool is not installed" >&2; exit 1; }
done

# One request first: is anything answering, and with which status?
status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$url" || true)
case $status in
    200) meaning="200: this node answers the check positively" ;;
    503) meaning="503: the check is negative on this node (e.g. /primary on a replica); still a valid health answer, measured as is" ;;
    000 | "")
        echo "$0: no HTTP answer from $url (connection refused or timed out)" >&2
        exit 1
        ;;
    *) meaning="$status: unexpected for a health endpoint (wrong PATH or port?); measured anyway" ;;
esac

echo "# GET $url answered $meaning"
echo "# wrk -t$threads -c$connections -d$duration --latency $url"
echo

out=$(wrk -t"$threads" -c"$connections" -d"$duration" --latency "$url")
printf '%s\n\n' "$out"

# "Requests/sec:  23456.78"
rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
# Latency distribution line "     99%    1.23ms" (wrk units: us, ms, s, m, h)
p99=$(awk '
    /Latency Distribution/ { in_dist = 1; next }
    in_dist && $1 == "99%" {
        v = $2; n = v + 0; unit = v; sub(/^[0-9.]+/, "", unit)
        if (unit == "us") ms = n / 1000
        else if (unit == "ms") ms = n
        else if (unit == "s") ms = n * 1000
        else if (unit == "m") ms = n * 60000
        else if (unit == "h") ms = n * 3600000
        else { print "?"; exit }
        printf "%.3f", ms; exit
    }' <<<"$out")
non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' <<<"$out")
errors=$(grep -E '^ *Socket errors:' <<<"$out" || true)

echo "== summary: GET $url (first answer: $status), $threads threads, $connections connections, $duration"
echo "requests/s:  ${rps:-?}"
echo "p99 latency: ${p99:-?} ms"
if [ -n "$non2xx" ]; then
    if [ "$status" = 503 ]; then
        echo "non-2xx/3xx responses: $non2xx (the 503s of a negative check; wrk counts them here)"
    else
        echo "non-2xx/3xx responses: $non2xx"
    fi
fi
if [ -n "$errors" ]; then
    echo "socket errors: ${errors#*Socket errors: }"
fi
