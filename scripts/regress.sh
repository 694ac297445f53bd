#!/bin/bash
# pg_regress for the SQL surface against a throw-away server that preloads
# pg_ha without HA settings (the error paths) - no ZooKeeper needed.
set -euo pipefail
cd "$(dirname "$0")/.."
bindir=$(pg_config --bindir)
tmp=$(mktemp -d /tmp/pgha-regress.XXXXXX)
chown postgres "$tmp"
port=54329
cleanup() { runuser -u postgres -- "$bindir/pg_ctl" -D "$tmp/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$tmp"; }
trap cleanup EXIT
chmod 755 "$tmp"
runuser -u postgres -- "$bindir/initdb" -D "$tmp/data" -U postgres --auth=trust >/dev/null
cat >> "$tmp/data/postgresql.conf" <<CONF
shared_preload_libraries = 'pg_ha'
port = $port
unix_socket_directories = '$tmp'
listen_addresses = ''
# a secret for sql/pg_ha_secrets.sql (SHOW must print ********)
pg_ha.superuser_password = 'regress-secret'
CONF
runuser -u postgres -- "$bindir/pg_ctl" -D "$tmp/data" -l "$tmp/log" -w start >/dev/null || { cat "$tmp/log"; exit 1; }

status=0
make installcheck PGHOST="$tmp" PGPORT=$port PGUSER=postgres || status=$?
if [ $status -ne 0 ] && [ -f regression.diffs ]; then cat regression.diffs; fi
exit $status
