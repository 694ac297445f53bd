#!/bin/sh
# Installs everything pg_ha needs to build, test and run the demo (Debian 12, as root).
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
    build-essential cmake pkg-config ca-certificates \
    postgresql-15 postgresql-server-dev-15 libkrb5-dev \
    zookeeper libzookeeper-st-dev \
    libcurl4-openssl-dev libcpp-httplib-dev libssl-dev nlohmann-json3-dev libcli11-dev libyaml-cpp-dev \
    googletest libgtest-dev \
    haproxy iproute2 nftables procps psmisc curl wrk openssl \
    python3 python3-pytest python3-psycopg2 python3-kazoo patroni >/dev/null
