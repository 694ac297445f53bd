#!/bin/bash
# A Debian root file system with a newer PostgreSQL major than the host's, to
# build and test pg_ha against it without mixing suites into the host's apt.
#   scripts/pgroot.sh create MAJOR       debootstrap + dependencies (kept in
#                                        .cache/roots/pgMAJOR; rebuilt when
#                                        scripts/install-deps.sh changes)
#   scripts/pgroot.sh run MAJOR CMD...   run CMD inside it (as root, in a
#                                        private mount namespace with /proc,
#                                        /sys, /dev, a fresh /run and /tmp and
#                                        a copy of this tree at /src/pg_ha)
#   scripts/pgroot.sh remove MAJOR
# 17 comes from Debian 13 (trixie), 18 from sid. The packages come from the
# Debian mirror the host's apt already uses (read from its sources).
set -euo pipefail
cd "$(dirname "$0")/.."
tree=$(pwd)
[ "$(id -u)" = 0 ] || { echo "scripts/pgroot.sh must run as root" >&2; exit 2; }

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 2 ] || usage
cmd=$1 major=$2
shift 2
case "$major" in
    17) suite=trixie ;;
    18) suite=sid ;;
    *) echo "scripts/pgroot.sh: no Debian suite known for PostgreSQL $major (17: trixie, 18: sid)" >&2; exit 2 ;;
esac
root="$tree/.cache/roots/pg$major"
# dpkg without fsync while it builds a root: CI builds one while cluster
# tests run beside it, and dpkg's fsync storms stalled them for seconds. A
# root is a cache: `sync` before it is marked ready, and a crash while
# building leaves it unmarked (rebuilt). The other two are dpkg's defaults,
# which DPKG_FORCE would otherwise switch off.
dpkg_force=unsafe-io,security-mac,downgrade

# The URI of the host's Debian archive (not -security/-updates), from
# deb822 .sources files or one-line .list files.
host_mirror() {
    local codename f
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        case "$f" in
            *.sources)
                awk -v cn="$codename" '
                    /^[[:space:]]*$/ { if (uri != "" && ok) { print uri; exit } uri = ""; ok = 0; next }
                    tolower($1) == "uris:" { uri = $2 }
                    tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == cn) ok = 1 }
                    END { if (uri != "" && ok) print uri }' "$f" ;;
            *)
                awk -v cn="$codename" '$1 == "deb" {
                    i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                    if ($(i + 1) == cn) { print $i; exit } }' "$f" ;;
        esac
    done | head -n1
}

stamp() { { echo "$suite"; cat scripts/install-deps.sh; } | sha256sum | cut -c1-16; }

create() {
    if [ -f "$root/.pgha-ready" ] && [ "$(cat "$root/.pgha-ready")" = "$(stamp)" ]; then
        echo "pgroot: $root is up to date"
        return
    fi
    command -v debootstrap >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null; }
    local mirror
    mirror=$(host_mirror)
    [ -n "$mirror" ] || { echo "pgroot: cannot find the Debian mirror in the host's apt sources" >&2; exit 1; }
    local t0=$SECONDS
    if [ ! -f "$root/.pgha-debootstrap" ]; then
        rm -rf "$root"
        mkdir -p "$root"
        echo "pgroot: debootstrap $suite from $mirror into $root"
        DPKG_FORCE=$dpkg_force nice -n 10 debootstrap --variant=minbase "$suite" "$root" "$mirror" \
            >"$root.debootstrap.log" 2>&1 || { tail -20 "$root.debootstrap.log" >&2; exit 1; }
        sync
        touch "$root/.pgha-debootstrap"
        echo "pgroot: debootstrap took $((SECONDS - t0)) s"
    fi
    t0=$SECONDS
    # Packages only, no services started inside the root.
    printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
    # A mirror may serve a frozen copy of sid whose Release file is past its
    # Valid-Until date; the signatures are still checked.
    echo 'Acquire::Check-Valid-Until "false";' >"$root/etc/apt/apt.conf.d/99pgha-valid-until"
    chmod 755 "$root/usr/sbin/policy-rc.d"
    cp scripts/install-deps.sh "$root/tmp/install-deps.sh"
    in_root env PG_MAJOR="$major" DPKG_FORCE="$dpkg_force" sh /tmp/install-deps.sh
    echo "pgroot: dependencies took $((SECONDS - t0)) s"
    sync
    stamp >"$root/.pgha-ready"
}

# Runs "$@" chrooted into the root, in a private mount namespace so that
# every mount (and every network namespace mounted under /run/netns) goes
# away with it.
in_root() {
    unshare --mount --propagation private -- /bin/sh -euc '
        r=$1; shift
        # "/" inside must be a mount point (ip netns exec remounts it rslave).
        mount --bind "$r" "$r"
        mount -t proc proc "$r/proc"
        mount -t sysfs sysfs "$r/sys"
        mount --rbind /dev "$r/dev"
        mount -t tmpfs -o mode=755 tmpfs "$r/run"
        mkdir -p "$r/run/netns" "$r/run/postgresql"
        [ -z "${PGROOT_SRC:-}" ] || { mkdir -p "$r/src/pg_ha"; mount --bind "$PGROOT_SRC" "$r/src/pg_ha"; }
        [ -z "${PGROOT_USER_DEPLOYMENT:-}" ] || {
            mkdir -p "$r/src/shared/user-deployment"
            mount --bind "$PGROOT_USER_DEPLOYMENT" "$r/src/shared/user-deployment"; }
        cp /etc/resolv.conf "$r/etc/resolv.conf" 2>/dev/null || true
        exec chroot "$r" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
            HOME=/root LANG=C.UTF-8 TERM=dumb ${PGROOT_ENV:-} "$@"' sh "$root" "$@"
}

# A copy of the tree without build output (this tree's objects are built
# against the host's PostgreSQL). Updated in place so that make rebuilds only
# what changed: a changed file is copied with a new modification time (a
# preserved, older time could look older than an object built after it).
sync_tree() {
    local dst="$root.src" stage="$root.stage" f
    rm -rf "$stage"
    mkdir -p "$dst" "$stage"
    tar -C "$tree" --exclude=./.cache --exclude=./.git --exclude=./build --exclude='*.o' --exclude='*.d' \
        --exclude='*.so' --exclude='*.bc' --exclude=./pg_hactl --exclude=./results --exclude=./log \
        --exclude=__pycache__ --exclude=./pg_ha_settings.list -cf - . | tar -C "$stage" -xf -
    (cd "$stage" && find . -type f) | while IFS= read -r f; do
        cmp -s "$stage/$f" "$dst/$f" && continue
        mkdir -p "$(dirname "$dst/$f")"
        cp --preserve=mode "$stage/$f" "$dst/$f"
    done
    rm -rf "$stage"
    chown -R root:root "$dst"
    echo "$dst"
}

# One user of a root at a time (a second `run` would replace the tree copy
# under the first).
mkdir -p "$(dirname "$root")"
exec 9>"$root.lock"
flock -n 9 || { echo "pgroot: $root is in use (another scripts/pgroot.sh)" >&2; exit 1; }

case "$cmd" in
    create) create ;;
    run)
        [ -f "$root/.pgha-ready" ] || { echo "pgroot: $root does not exist: scripts/pgroot.sh create $major" >&2; exit 1; }
        [ $# -gt 0 ] || usage
        env_pass=""
        for v in PGHA_CLUSTER PGHA_NET_ID PGHA_TEST_BASE PGHA_TEST_BOOTSTRAP_TIMEOUT PGHA_TEST_HEALTHY_TIMEOUT PYTEST_ADDOPTS; do
            val=$(printenv "$v" || true)
            [ -z "$val" ] || env_pass="$env_pass $v=$val"
        done
        # the user's files (../shared/user-deployment) at the same place relative to the tree
        user_dir=${PGHA_USER_DEPLOYMENT:-$tree/../shared/user-deployment}
        [ -d "$user_dir" ] && export PGROOT_USER_DEPLOYMENT=$user_dir
        PGROOT_ENV=$env_pass PGROOT_SRC=$(sync_tree) in_root /bin/sh -c 'cd /src/pg_ha && exec "$@"' sh "$@" ;;
    remove) rm -rf "$root" "$root.src" "$root.debootstrap.log" ;;
    *) usage ;;
esac
