#!/bin/bash
# Local demo cluster: ZooKeeper + 3 PostgreSQL nodes with pg_ha + HAProxy, each
# host in its own network namespace (same harness as the cluster tests).
#   scripts/demo.sh        install dependencies, build, start, print status; stays up
#   scripts/demo.sh stop   stop everything and remove the namespaces
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "scripts/demo.sh must run as root" >&2; exit 2; }
if [ "${1:-start}" = stop ]; then
    /usr/bin/python3 tests/cluster/harness.py down
    exit 0
fi
[ "${SKIP_DEPS:-0}" = 1 ] || sh scripts/install-deps.sh
sh scripts/build.sh
/usr/bin/python3 tests/cluster/harness.py up
/usr/bin/python3 tests/cluster/harness.py status || true
# The leader refreshes its view of the members every loop_wait: wait (bounded)
# until it shows every member running or streaming.
for _ in $(seq 1 30); do
    n=$(PGPASSWORD=postgres psql -h 10.47.0.100 -p 5433 -U postgres -d postgres -Atc \
        "SELECT count(*) FROM ha_status() WHERE state IN ('running', 'streaming') AND lsn > '0/0'" 2>/dev/null || echo 0)
    [ "$n" = 3 ] && break
    sleep 1
done
echo
echo "ha_status() on the primary:"
PGPASSWORD=postgres psql -h 10.47.0.100 -p 5433 -U postgres -d postgres -c 'SELECT * FROM ha_status()' || true
cat <<MSG

pg_ha demo cluster is up (stop it with: scripts/demo.sh stop)
  writes (HAProxy /primary):   psql "host=10.47.0.100 port=5433 user=postgres password=postgres dbname=postgres"
  reads  (HAProxy /read-only): psql "host=10.47.0.100 port=5432 user=postgres password=postgres dbname=postgres"
  HAProxy stats:               http://10.47.0.100:7000/
  node REST API:               curl http://10.47.0.11:8008/patroni   (pg-1; .12 pg-2, .13 pg-3)
  status from SQL:             psql "host=10.47.0.11 user=postgres password=postgres" -c 'SELECT * FROM ha_status()'
MSG
