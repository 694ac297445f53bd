#!/bin/sh
# Writes an env file with random passwords for docker-compose.yml (there are
# no default passwords), mode 0600, unless it exists:
#   sh docker/make-env.sh [FILE]        # FILE defaults to docker/pg_ha.env
#   docker compose --env-file docker/pg_ha.env -f docker/docker-compose.yml up -d --build
# The passwords are set when the cluster is initialised: keep the file.
set -eu
f=${1:-$(dirname "$0")/pg_ha.env}
if [ -e "$f" ]; then
    echo "make-env: $f exists; not overwritten" >&2
    exit 0
fi
umask 077
# 24 random bytes, base64 without '/' and '+' (safe in URLs, shells and conninfo)
pw() { head -c 24 /dev/urandom | base64 | tr -d '\n' | tr '+/' '-_'; }
tmp="$f.tmp.$$"
trap 'rm -f "$tmp"' EXIT
{
    echo "# pg_ha passwords for docker-compose.yml, written by make-env.sh"
    for v in SUPERUSER REPLICATION REWIND ADMIN ZOOKEEPER; do
        echo "PGHA_${v}_PASSWORD=$(pw)"
    done
} > "$tmp"
mv "$tmp" "$f"
trap - EXIT
echo "make-env: wrote $f (mode 0600); the admin password for psql is its PGHA_ADMIN_PASSWORD line"
