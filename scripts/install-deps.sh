#!/bin/sh
# Installs everything pg_ha needs to build, test and run the demo (Debian, as root).
# PostgreSQL: $PG_MAJOR, by default the major of this Debian release (12: 15,
# 13: 17). scripts/pgroot.sh runs this inside its Debian 13 / sid roots.
set -eu
export DEBIAN_FRONTEND=noninteractive
if [ -z "${PG_MAJOR:-}" ]; then
    case "$(. /etc/os-release && echo "${VERSION_CODENAME:-}")" in
        bookworm) PG_MAJOR=15 ;;
        trixie) PG_MAJOR=17 ;;
        *) echo "install-deps.sh: set PG_MAJOR (no default PostgreSQL major for this release)" >&2; exit 2 ;;
    esac
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
    build-essential cmake pkg-config ca-certificates \
    "postgresql-$PG_MAJOR" "postgresql-server-dev-$PG_MAJOR" libkrb5-dev \
    zookeeper libzookeeper-st-dev \
    libcurl4-openssl-dev libcpp-httplib-dev libssl-dev nlohmann-json3-dev libcli11-dev libyaml-cpp-dev \
    googletest libgtest-dev \
    haproxy iproute2 nftables iptables libnetfilter-queue-dev procps psmisc curl wrk openssl \
    python3 python3-pytest python3-psycopg2 python3-kazoo patroni >/dev/null
