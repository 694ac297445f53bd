/*
 * monotonic.h: the one clock of the leader lease (plain C, no PostgreSQL).
 *
 * The worker's engine computes the lease deadline with it and every backend
 * compares that deadline with it, so both sides must read the same clock.
 * CLOCK_BOOTTIME, not CLOCK_MONOTONIC: it keeps counting while the machine is
 * suspended, so a resumed primary finds its lease expired (review F6).
 * Neither clock counts the time a virtual machine is paused; the worker's
 * clock-jump detection covers that.
 *
 * Included from PostgreSQL-facing files (src/pg) and from PG-free C++ alike:
 * only <stdint.h>, <stdlib.h> and <time.h>.
 */
#ifndef PGHA_MONOTONIC_H
#define PGHA_MONOTONIC_H

#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#ifndef CLOCK_BOOTTIME
#error "pg_ha needs CLOCK_BOOTTIME (Linux)"
#endif

/* The clock id of the lease (also checked by tests/unit/test_monotonic.cpp). */
#define PGHA_LEASE_CLOCK CLOCK_BOOTTIME

/*
 * Milliseconds since boot, suspend included. It cannot fail on Linux >= 2.6.39;
 * if it ever did there would be no safe value to return (0 would make every
 * lease look valid), so the process aborts instead.
 */
static inline int64_t
pgha_monotonic_ms(void)
{
	struct timespec ts;

	if (clock_gettime(PGHA_LEASE_CLOCK, &ts) != 0)
		abort();
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif							/* PGHA_MONOTONIC_H */
