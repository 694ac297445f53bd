#!/bin/sh
# Builds and installs the extension and pg_hactl system-wide.
set -eu
cd "$(dirname "$0")/.."
make -j2 >/dev/null
make install >/dev/null
echo "pg_ha built and installed: $(pg_config --pkglibdir)/pg_ha.so, $(command -v pg_hactl)"
