#!/bin/sh
# pg_ha node entrypoint: used by the Docker image, the systemd example and the
# cluster test harness alike.
#
#   1. (root only) fix ownership of the data/config directories, drop to postgres
#   2. write the node's settings file from PGHA_* environment variables
#      (skipped when PGHA_NAME is unset: then PGHA_CONFIG_FILE must already exist)
#   3. pg_hactl boot: initdb / clone / configure as follower, then exit
#   4. exec postgres (pg_ha's worker takes over from there)
#
# Environment (defaults in brackets):
#   PGDATA                      data directory [/var/lib/postgresql/data]
#   PGHA_CONFIG_FILE            settings file postgres includes [/var/lib/postgresql/pg_ha.conf]
#   PGHA_SCOPE                  cluster name [batman]
#   PGHA_NAMESPACE              ZooKeeper namespace [/service]
#   PGHA_NAME                   this member's name (required to generate the file)
#   PGHA_ZOOKEEPER_HOSTS        host:port[,host:port...] [zoo1:2181]
#   PGHA_CONNECT_ADDRESS        host:port other members/clients use for PostgreSQL [$PGHA_NAME:5432]
#   PGHA_API_CONNECT_ADDRESS    host:port others use for the REST API [$PGHA_NAME:8008]
#   PGHA_API_LISTEN             REST API listen address [0.0.0.0:8008]
#   PGHA_LISTEN_ADDRESSES       PostgreSQL listen_addresses [*]
#   PGHA_PORT                   PostgreSQL port [5432]
#   PGHA_UNIX_SOCKET_DIR        unix_socket_directories [/var/run/postgresql]
#   PGHA_SUPERUSER / _PASSWORD  [postgres / postgres]
#   PGHA_REPLICATION_USER / _PASSWORD  [replicator / rep-pass]
#   PGHA_REWIND_USER / _PASSWORD       [rewind_user / rewind-pass]
#   PGHA_ADMIN_USER / _PASSWORD        bootstrap admin (createrole, createdb) [admin / admin]
#   PGHA_NOFAILOVER PGHA_NOLOADBALANCE PGHA_NOSYNC PGHA_CLONEFROM   tags [off]
#   PGHA_EXTRA_SETTINGS         extra lines appended verbatim to the settings file
set -eu

PGDATA="${PGDATA:-/var/lib/postgresql/data}"
PGHA_CONFIG_FILE="${PGHA_CONFIG_FILE:-/var/lib/postgresql/pg_ha.conf}"
PGBIN="${PGBIN:-$(pg_config --bindir 2>/dev/null || echo /usr/lib/postgresql/15/bin)}"
export PATH="$PGBIN:$PATH"

if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" "$(dirname "$PGHA_CONFIG_FILE")" "${PGHA_UNIX_SOCKET_DIR:-/var/run/postgresql}"
    chown postgres:postgres "$PGDATA" "$(dirname "$PGHA_CONFIG_FILE")" "${PGHA_UNIX_SOCKET_DIR:-/var/run/postgresql}"
    chmod 0700 "$PGDATA"
    # setpriv replaces itself (runuser would stay PID 1 and swallow SIGINT)
    export HOME=/var/lib/postgresql
    exec setpriv --reuid=postgres --regid=postgres --init-groups -- "$0" "$@"
fi

quote() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/''/g")"; }
onoff() { case "${1:-off}" in 1|on|true|yes) echo on ;; *) echo off ;; esac; }

if [ -n "${PGHA_NAME:-}" ]; then
    umask 077
    tmp="$PGHA_CONFIG_FILE.tmp.$$"
    {
        echo "# written by pg_ha's entrypoint from PGHA_* environment variables; edits are overwritten"
        echo "listen_addresses = $(quote "${PGHA_LISTEN_ADDRESSES:-*}")"
        echo "port = ${PGHA_PORT:-5432}"
        echo "unix_socket_directories = $(quote "${PGHA_UNIX_SOCKET_DIR:-/var/run/postgresql}")"
        echo "pg_ha.scope = $(quote "${PGHA_SCOPE:-batman}")"
        echo "pg_ha.namespace = $(quote "${PGHA_NAMESPACE:-/service}")"
        echo "pg_ha.node_name = $(quote "$PGHA_NAME")"
        echo "pg_ha.zookeeper_hosts = $(quote "${PGHA_ZOOKEEPER_HOSTS:-zoo1:2181}")"
        echo "pg_ha.connect_address = $(quote "${PGHA_CONNECT_ADDRESS:-$PGHA_NAME:${PGHA_PORT:-5432}}")"
        echo "pg_ha.api_listen = $(quote "${PGHA_API_LISTEN:-0.0.0.0:8008}")"
        echo "pg_ha.api_connect_address = $(quote "${PGHA_API_CONNECT_ADDRESS:-$PGHA_NAME:8008}")"
        echo "pg_ha.superuser = $(quote "${PGHA_SUPERUSER:-postgres}")"
        echo "pg_ha.superuser_password = $(quote "${PGHA_SUPERUSER_PASSWORD:-postgres}")"
        echo "pg_ha.replication_user = $(quote "${PGHA_REPLICATION_USER:-replicator}")"
        echo "pg_ha.replication_password = $(quote "${PGHA_REPLICATION_PASSWORD:-rep-pass}")"
        echo "pg_ha.rewind_user = $(quote "${PGHA_REWIND_USER:-rewind_user}")"
        echo "pg_ha.rewind_password = $(quote "${PGHA_REWIND_PASSWORD:-rewind-pass}")"
        echo "pg_ha.admin_user = $(quote "${PGHA_ADMIN_USER:-admin}")"
        echo "pg_ha.admin_password = $(quote "${PGHA_ADMIN_PASSWORD:-admin}")"
        echo "pg_ha.nofailover = $(onoff "${PGHA_NOFAILOVER:-off}")"
        echo "pg_ha.noloadbalance = $(onoff "${PGHA_NOLOADBALANCE:-off}")"
        echo "pg_ha.nosync = $(onoff "${PGHA_NOSYNC:-off}")"
        echo "pg_ha.clonefrom = $(onoff "${PGHA_CLONEFROM:-off}")"
        if [ -n "${PGHA_EXTRA_SETTINGS:-}" ]; then printf '%s\n' "$PGHA_EXTRA_SETTINGS"; fi
    } > "$tmp"
    mv "$tmp" "$PGHA_CONFIG_FILE"
fi

if [ ! -r "$PGHA_CONFIG_FILE" ]; then
    echo "pg_ha entrypoint: settings file $PGHA_CONFIG_FILE not found; set PGHA_NAME (and friends) or mount the file" >&2
    exit 1
fi

pg_hactl boot --config "$PGHA_CONFIG_FILE" --pgdata "$PGDATA"
exec postgres -D "$PGDATA" "$@"
