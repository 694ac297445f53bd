#!/bin/sh
# The Debian packages that provide the shared libraries the given binaries
# load (ldd), without PostgreSQL's own, one per line: the runtime stage of
# docker/Dockerfile installs them (the names carry sonames and differ between
# Debian releases: libcpp-httplib0.11 / 0.18, libyaml-cpp0.7 / 0.8, ...).
set -eu
for f in "$@"; do
    ldd "$f" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }'
done | sort -u | while read -r lib; do
    real=$(readlink -f "$lib")
    # usrmerge: a library may be registered under /lib or /usr/lib.
    for p in "$lib" "$real" "/usr$lib" "/usr$real" "${lib#/usr}" "${real#/usr}"; do
        pkg=$(dpkg -S "$p" 2>/dev/null | head -n1 | cut -d: -f1) && [ -n "$pkg" ] && { echo "$pkg"; break; }
    done
done | grep -v -e '^postgresql' -e '^libc6$' -e '^libgcc-s1$' -e '^libstdc++6$' | sort -u
