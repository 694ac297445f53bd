/*
 * monotonic.h: the one clock of the leader lease, in plain C so that the
 * PostgreSQL-facing backends (src/pg/lease.cpp) and the PG-free engine
 * (which computes the deadline) read the very same clock.
 *
 * CLOCK_BOOTTIME, not CLOCK_MONOTONIC: it keeps counting while the system is
 * suspended, so a resumed primary sees its lease as expired.
 */
#ifndef PG_HA_MONOTONIC_H
#define PG_HA_MONOTONIC_H

#include <stdint.h>
#include <time.h>

static inline int64_t
pgha_monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
