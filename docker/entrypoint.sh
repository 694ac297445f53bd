#!/bin/sh
# pg_ha node entrypoint: used by the Docker image, the systemd example and the
# cluster test harness alike.
#
#   1. (root only) fix ownership of the data/config directories, drop to postgres
#   2. write the node's settings file from PGHA_* environment variables
#      (skipped when PGHA_NAME is unset: then PGHA_CONFIG_FILE must already exist)
#   3. pg_hactl boot: initdb / clone / configure as follower, then exit
#   4. run postgres (pg_ha's worker takes over from there); when the container
#      is stopped (SIGINT/SIGTERM to the entrypoint), a fast shutdown and then
#      `pg_hactl stop`, which hands a primary's leader lock over at once
#
# Environment (defaults in brackets):
#   PGDATA                      data directory [/var/lib/postgresql/data]
#   PGHA_CONFIG_FILE            settings file postgres includes [/var/lib/postgresql/pg_ha.conf]
#   PGHA_NAME                   this member's name (required to generate the file; sets pg_ha.node_name)
#   PGHA_LISTEN_ADDRESSES       PostgreSQL listen_addresses [*]
#   PGHA_PORT                   PostgreSQL port [5432]
#   PGHA_UNIX_SOCKET_DIR        unix_socket_directories [/var/run/postgresql]
#   PGHA_EXTRA_SETTINGS         extra lines appended verbatim to the settings file
#   PGHA_PATRONI_CONFIG         a Patroni YAML file (patroni.yml) instead of PGHA_* variables:
#                               `pg_hactl boot --patroni-config` writes PGHA_CONFIG_FILE from it;
#                               PGDATA is its postgresql.data_dir, PGBIN its postgresql.bin_dir
#   PGHA_SETTINGS_LIST          the list of pg_ha settings
#                               [$(pg_config --sharedir)/extension/pg_ha_settings.list]
#   PGHA_<NAME>                 pg_ha.<name> for every pg_ha setting <name> in that list
#                               (src/core/settings.def; README.md lists them), e.g.
#                               PGHA_WATCHDOG_MODE=required -> pg_ha.watchdog_mode = 'required'.
#                               Empty = not set. Defaults that differ from the settings' own:
#     PGHA_SCOPE [batman]  PGHA_ZOOKEEPER_HOSTS [zoo1:2181]
#     PGHA_CONNECT_ADDRESS [$PGHA_NAME:$PGHA_PORT]  PGHA_API_CONNECT_ADDRESS [$PGHA_NAME:8008]
#   No default passwords: PGHA_SUPERUSER_PASSWORD and PGHA_REPLICATION_PASSWORD
#   are required (docker/make-env.sh writes random ones). The rewind user
#   (PGHA_REWIND_USER [rewind_user]) and the bootstrap admin (PGHA_ADMIN_USER
#   [admin]) exist only when PGHA_REWIND_PASSWORD / PGHA_ADMIN_PASSWORD is set;
#   without a rewind user pg_rewind connects as the superuser.
#   REST API access (README "REST API security"): unsafe methods (POST, PATCH, ...)
#   are refused until one of these is set:
#     PGHA_RESTAPI_USERNAME, PGHA_RESTAPI_PASSWORD   basic auth (Patroni's restapi.authentication)
#     PGHA_RESTAPI_CERTFILE + PGHA_RESTAPI_VERIFY_CLIENT=required|optional   client certificates
#     PGHA_RESTAPI_ALLOW_UNAUTHENTICATED=on          explicit opt-out (insecure; logged at start)
#   PGHA_RESTAPI_ALLOWLIST (IPs/CIDRs), PGHA_RESTAPI_ALLOWLIST_INCLUDE_MEMBERS,
#   PGHA_RESTAPI_ALLOW_HTTP_CREDENTIALS (members send credentials over plain http).
# PGHA_*PASSWORD* variables (PGHA_RESTAPI_PASSWORD too) are removed from the
# environment once the file is written, so postgres and its backends do not carry them.
#   ZooKeeper authentication (README, "ZooKeeper security"): PGHA_ZOOKEEPER_USER,
#   PGHA_ZOOKEEPER_PASSWORD (removed like the other passwords, below) and
#   PGHA_ZOOKEEPER_SET_ACLS; no defaults (unset: unauthenticated, the server warns).
# PGHA_*PASSWORD* variables are removed from the environment once the file is
# written, so postgres and its backends do not carry them.
set -eu

PGHA_CONFIG_FILE="${PGHA_CONFIG_FILE:-/var/lib/postgresql/pg_ha.conf}"
if [ -n "${PGHA_PATRONI_CONFIG:-}" ]; then
    # The Patroni file names the data and program directories.
    [ -z "${PGHA_NAME:-}" ] || { echo "pg_ha entrypoint: set PGHA_PATRONI_CONFIG or PGHA_NAME, not both" >&2; exit 1; }
    PGDATA=$(pg_hactl patroni-config "$PGHA_PATRONI_CONFIG" --get data_dir 2>/dev/null) ||
        { pg_hactl patroni-config "$PGHA_PATRONI_CONFIG"; exit 1; }
    export PGDATA
    bindir=$(pg_hactl patroni-config "$PGHA_PATRONI_CONFIG" --get bin_dir 2>/dev/null) || bindir=
    if [ -z "${PGBIN:-}" ] && [ -n "$bindir" ] && [ -x "$bindir/postgres" ]; then PGBIN=$bindir; fi
fi
PGDATA="${PGDATA:-/var/lib/postgresql/data}"
PGBIN="${PGBIN:-$(pg_config --bindir 2>/dev/null || echo "/usr/lib/postgresql/${PG_MAJOR:-17}/bin")}"
export PATH="$PGBIN:$PATH"

if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" "$(dirname "$PGHA_CONFIG_FILE")" "${PGHA_UNIX_SOCKET_DIR:-/var/run/postgresql}"
    chown postgres:postgres "$PGDATA" "$(dirname "$PGHA_CONFIG_FILE")" "${PGHA_UNIX_SOCKET_DIR:-/var/run/postgresql}"
    chmod 0700 "$PGDATA"
    # setpriv replaces itself (runuser would stay PID 1 and swallow SIGINT)
    export HOME=/var/lib/postgresql
    exec setpriv --reuid=postgres --regid=postgres --init-groups -- "$0" "$@"
fi

die() { printf 'pg_ha entrypoint: %s\n' "$*" >&2; exit 1; }
# A PostgreSQL string literal: quotes and backslashes doubled. (printf, not
# echo: dash's echo would undo the doubled backslashes.)
quote() { printf "'%s'" "$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e "s/'/''/g")"; }

# the variables of this script that are not pg_ha settings
entry_vars=" PGHA_CONFIG_FILE PGHA_PATRONI_CONFIG PGHA_NAME PGHA_LISTEN_ADDRESSES PGHA_PORT PGHA_UNIX_SOCKET_DIR PGHA_EXTRA_SETTINGS PGHA_SETTINGS_LIST "

# pg_ha.<name> = value lines for every setting in the list that has a value
# (PGHA_<NAME>, or the entrypoint's default where it differs from the
# setting's own: see the header), values quoted as PostgreSQL string
# literals; a warning for every PGHA_* variable that names no setting (most
# likely a typo). One awk process: a restarting leader keeps its lock only
# if it is back within ttl, and a shell loop forking a few processes per
# setting took 1 s on an idle 2-core machine and 8 s on a loaded one.
pg_ha_settings() {
    awk -v list="$1" -v entry_vars="$entry_vars" '
        function fail(msg) { printf "pg_ha entrypoint: %s\n", msg > "/dev/stderr"; failed = 1; exit 1 }
        function env(v) { return (v in ENVIRON) ? ENVIRON[v] : "" }
        # a PostgreSQL string literal: quotes and backslashes doubled
        function quote(s,    out, i, c) {
            out = ""
            for (i = 1; i <= length(s); i++) {
                c = substr(s, i, 1)
                if (c == "\\" || c == "\047") out = out c
                out = out c
            }
            return "\047" out "\047"
        }
        # "" when the setting has no entrypoint default (the setting keeps its own)
        function entry_default(name) {
            if (name == "scope") return "batman"
            if (name == "namespace") return "/service"
            if (name == "node_name") return env("PGHA_NAME")
            if (name == "zookeeper_hosts") return "zoo1:2181"
            if (name == "connect_address") return env("PGHA_NAME") ":" (env("PGHA_PORT") != "" ? env("PGHA_PORT") : "5432")
            if (name == "api_listen") return "0.0.0.0:8008"
            if (name == "api_connect_address") return env("PGHA_NAME") ":8008"
            if (name == "superuser") return "postgres"
            if (name == "replication_user") return "replicator"
            if (name == "rewind_user") return env("PGHA_REWIND_PASSWORD") != "" ? "rewind_user" : ""
            if (name == "admin_user") return env("PGHA_ADMIN_PASSWORD") != "" ? "admin" : ""
            if (name ~ /^(nofailover|noloadbalance|nosync|clonefrom)$/) return "off"
            return ""
        }
        BEGIN { n = split(entry_vars, ev, " "); for (i = 1; i <= n; i++) known[ev[i]] = 1 }
        $1 == "" || $1 ~ /^#/ { next }
        {
            name = $1; type = $2
            if (name ~ /[^a-z0-9_]/) fail(list ": bad setting name \"" name "\"")
            var = "PGHA_" toupper(name)
            known[var] = 1
            val = env(var)
            if (val == "") val = entry_default(name)
            if (val == "") next
            if (index(val, "\n")) fail(var ": a value cannot span lines")
            if (type == "bool") {
                b = tolower(val)
                if (b ~ /^(1|on|true|yes|t|y)$/) val = "on"
                else if (b ~ /^(0|off|false|no|f|n)$/) val = "off"
                else fail(var ": \"" val "\" is not a boolean (on/off, true/false, yes/no, 1/0)")
            }
            print "pg_ha." name " = " quote(val)
        }
        END {
            if (failed) exit 1
            for (v in ENVIRON)
                if (v ~ /^PGHA_[A-Za-z0-9_]*$/ && !(v in known))
                    printf "pg_ha entrypoint: warning: %s is not a pg_ha setting (see %s); ignored\n", v, list > "/dev/stderr"
        }' "$1"
}

if [ -n "${PGHA_NAME:-}" ]; then
    # No demo passwords (issue 10 item 5): a cluster is never created or joined with a guessable one.
    for var in PGHA_SUPERUSER_PASSWORD PGHA_REPLICATION_PASSWORD; do
        eval "val=\${$var:-}"
        [ -n "$val" ] || die "$var is not set: pg_ha has no default passwords (docker/make-env.sh writes random ones; see docker/README.md)"
    done
    list=${PGHA_SETTINGS_LIST:-}
    if [ -z "$list" ]; then
        if sharedir=$("$PGBIN/pg_config" --sharedir 2>/dev/null) || sharedir=$(pg_config --sharedir 2>/dev/null); then
            list="$sharedir/extension/pg_ha_settings.list"
        else
            list="/usr/share/postgresql/$(basename "$(dirname "$PGBIN")")/extension/pg_ha_settings.list"
        fi
    fi
    [ -r "$list" ] || die "the list of pg_ha settings $list is missing (make install writes it); set PGHA_SETTINGS_LIST"
    umask 077
    tmp="$PGHA_CONFIG_FILE.tmp.$$"
    settings=$(pg_ha_settings "$list") || exit 1
    {
        echo "# written by pg_ha's entrypoint from PGHA_* environment variables; edits are overwritten"
        printf '%s\n' "listen_addresses = $(quote "${PGHA_LISTEN_ADDRESSES:-*}")"
        echo "port = ${PGHA_PORT:-5432}"
        printf '%s\n' "unix_socket_directories = $(quote "${PGHA_UNIX_SOCKET_DIR:-/var/run/postgresql}")"
        printf '%s\n' "$settings"
        if [ -n "${PGHA_EXTRA_SETTINGS:-}" ]; then printf '%s\n' "$PGHA_EXTRA_SETTINGS"; fi
    } > "$tmp"
    mv "$tmp" "$PGHA_CONFIG_FILE"
fi

# the passwords are in the file now; postgres and its backends need not inherit them
for var in $(env | sed -n 's/^\(PGHA_[A-Za-z0-9_]*PASSWORD[A-Za-z0-9_]*\)=.*/\1/p'); do
    unset "$var"
done

# PostgreSQL runs as a child of this shell, not exec'd, so that a stop can be
# told from a restart. A stop of the container (SIGINT, the image's
# STOPSIGNAL, or SIGTERM) is forwarded as a fast shutdown; once postgres is
# down, `pg_hactl stop` closes the node's ZooKeeper session when the control
# file shows a clean shutdown, so a primary's leader lock goes at once (the
# standbys received its shutdown checkpoint) instead of after ttl. When
# postgres exits on its own (pg_ha fenced it, POST /restart, a crash), the
# entrypoint exits with its status and the restart policy starts it again:
# a restart within ttl keeps the lock.
run_postgres() {
    postgres -D "$PGDATA" "$@" &
    pg_pid=$!
    stopping=
    trap 'stopping=1; kill -INT "$pg_pid" 2>/dev/null' INT TERM
    while :; do
        rc=0
        wait "$pg_pid" || rc=$?                  # (set -e: a non-zero status must not end the script)
        kill -0 "$pg_pid" 2>/dev/null || break   # a trapped signal ends `wait` early
    done
    trap - INT TERM
    if [ -n "$stopping" ]; then
        pg_hactl stop --config "$PGHA_CONFIG_FILE" --pgdata "$PGDATA" || true
    fi
    exit "$rc"
}

if [ -n "${PGHA_PATRONI_CONFIG:-}" ]; then
    umask 077
    pg_hactl boot --patroni-config "$PGHA_PATRONI_CONFIG" --config "$PGHA_CONFIG_FILE" --pgdata "$PGDATA"
    run_postgres "$@"
fi

if [ ! -r "$PGHA_CONFIG_FILE" ]; then
    echo "pg_ha entrypoint: settings file $PGHA_CONFIG_FILE not found; set PGHA_NAME (and friends), PGHA_PATRONI_CONFIG, or mount the file" >&2
    exit 1
fi

pg_hactl boot --config "$PGHA_CONFIG_FILE" --pgdata "$PGDATA"
run_postgres "$@"
