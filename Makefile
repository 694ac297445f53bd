# pg_ha: PGXS build of the extension (pg_ha.so) and the pg_hactl binary.
#   make                 build both
#   make install         install the extension and pg_hactl ($(bindir) and /usr/local/bin)
#   make installcheck    pg_regress tests in sql/ against a running server
#   make unit            GoogleTest units through CMake/ctest
EXTENSION = pg_ha
MODULE_big = pg_ha
DATA = pg_ha--0.1.sql
# "name type secret|-" per row of src/core/settings.def, for docker/entrypoint.sh
DATA_built = pg_ha_settings.list
PGFILEDESC = "pg_ha - high availability inside PostgreSQL"
REGRESS = pg_ha_setup pg_ha_status pg_ha_permissions pg_ha_secrets
REGRESS_OPTS = --inputdir=. --load-extension=pg_ha

CORE_SRCS = $(wildcard src/core/*.cpp)
DCS_SRCS = $(wildcard src/dcs/*.cpp)
HTTP_SRCS = $(wildcard src/http/*.cpp)
WATCHDOG_SRCS = $(wildcard src/watchdog/*.cpp)
ENGINE_SRCS = $(wildcard src/engine/*.cpp)
PG_SRCS = $(wildcard src/pg/*.cpp)
CLI_SRCS = $(wildcard src/cli/*.cpp)
OBJS = $(patsubst %.cpp,%.o,$(CORE_SRCS) $(DCS_SRCS) $(HTTP_SRCS) $(WATCHDOG_SRCS) $(ENGINE_SRCS) $(PG_SRCS))

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)

# C++17, warnings are errors. PostgreSQL's own CXXFLAGS come from PGXS.
PG_CXXFLAGS = -std=c++17 -fPIC -MMD -MP -Wall -Wextra -Werror -Wno-missing-field-initializers \
	-Isrc -I/usr/include/zookeeper \
	-DCPPHTTPLIB_OPENSSL_SUPPORT -DCPPHTTPLIB_ZLIB_SUPPORT -DCPPHTTPLIB_BROTLI_SUPPORT
PG_CPPFLAGS = -Isrc -I$(shell $(PG_CONFIG) --includedir)
SHLIB_LINK = -lzookeeper_st -lcpp-httplib -lssl -lcrypto -lcurl -lpq -lstdc++ -pthread

# No LLVM bitcode for JIT inlining: it would need clang and buys nothing here.
override with_llvm = no

include $(PGXS)

# The PostgreSQL-facing files (src/pg) need PostgreSQL's headers and its
# C++-unfriendly warnings relaxed; the PG-free files (core, dcs, http,
# watchdog, engine) are built strictly.
src/pg/%.o: override CXXFLAGS += -Wno-register -Wno-sign-compare -Wno-unused-parameter
# PostgreSQL 16+ passes its own -Wshadow=compatible-local through PGXS; the
# src/pg files keep it, the PG-free files follow pg_ha's warning set (the same
# as the CMake and pg_hactl builds, which never had it).
$(filter-out src/pg/%,$(OBJS)): override CXXFLAGS := $(filter-out -Wshadow=compatible-local,$(CXXFLAGS))


pg_ha_settings.list: src/core/settings.def
	{ echo '# pg_ha static settings (generated from src/core/settings.def): name type secret'; \
	  printf '#define PGHA_SETTING(field, name, type, dflt, min, max, unit, flags, context, desc) @ name type flags\n#include "core/settings.def"\n' \
	  | $(CXX) -E -P -x c++ -Isrc - | tr '@' '\n' \
	  | awk 'NF == 3 { print $$1, tolower($$2), ($$3 == "SECRET") ? "secret" : "-" }'; } > $@.tmp
	test "$$(grep -c -v '^#' $@.tmp)" -gt 0
	mv $@.tmp $@

# pg_hactl gets the peers' REST client (libcurl), not the HTTP server, and
# yaml-cpp for its YAML output. One flag list for all of its objects.
HACTL_CXXFLAGS = -std=c++17 -O2 -g -MMD -MP -Wall -Wextra -Werror -Isrc -I/usr/include/zookeeper
HACTL_LIBS = -lzookeeper_st -lcrypto -lcurl -lyaml-cpp -pthread
HACTL_OBJS = $(patsubst %.cpp,%.hactl.o,$(CORE_SRCS) $(DCS_SRCS) src/http/peer_client.cpp $(CLI_SRCS))
%.hactl.o: %.cpp
	$(CXX) $(HACTL_CXXFLAGS) -c $< -o $@

# PGXS tracks no header dependencies: every object writes its own (-MMD -MP),
# so a changed header rebuilds whatever includes it (a stale object with an
# old class layout links fine and crashes).
-include $(OBJS:.o=.d) $(HACTL_OBJS:.o=.d)

pg_hactl: $(HACTL_OBJS)
	$(CXX) -o $@ $^ $(HACTL_LIBS)

all: pg_hactl

install: install-hactl
install-hactl: pg_hactl
	$(MKDIR_P) '$(DESTDIR)$(bindir)'
	$(INSTALL_PROGRAM) pg_hactl '$(DESTDIR)$(bindir)/pg_hactl'
	$(MKDIR_P) '$(DESTDIR)/usr/local/bin'
	ln -sf '$(bindir)/pg_hactl' '$(DESTDIR)/usr/local/bin/pg_hactl'

clean: clean-hactl
clean-hactl:
	rm -f pg_hactl $(HACTL_OBJS) $(OBJS:.o=.d) $(HACTL_OBJS:.o=.d)

unit:
	cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build build -j2
	cd build && ctest --output-on-failure

.PHONY: install-hactl clean-hactl unit
