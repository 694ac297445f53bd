/*
 * pg_ha_shared.h: shared-memory state of pg_ha and the GUC variables.
 * Included only by files under src/pg that include postgres.h.
 */
#ifndef PG_HA_SHARED_H
#define PG_HA_SHARED_H

#ifdef __cplusplus
extern "C" {
#endif

#include "postgres.h"

#include "port/atomics.h"
#include "storage/lwlock.h"

#define PGHA_STATUS_MAX (256 * 1024)
#define PGHA_REQUEST_MAX 8192
#define PGHA_REPLY_MAX 8192

/* The one operator-request slot (SQL control functions -> worker). */
typedef enum PgHaRequestState
{
	PGHA_REQ_FREE = 0,
	PGHA_REQ_PENDING,			/* written by a backend, not yet seen by the worker */
	PGHA_REQ_TAKEN,				/* the worker carries it out; it will answer */
	PGHA_REQ_DONE				/* answered; the backend copies the reply and frees the slot */
} PgHaRequestState;

typedef struct PgHaShared
{
	LWLock	   *lock;			/* protects status_json */
	/* leader lease: pgha_monotonic_ms() milliseconds; 0 = none */
	pg_atomic_uint64 lease_deadline_ms;
	pg_atomic_uint32 lease_enforced;	/* 1 = commits that wrote need a valid lease */
	pg_atomic_uint32 fenced;	/* 1 = refuse new connections (demotion under way) */
	pg_atomic_uint32 sync_strict_waiting;	/* 1 = strict sync mode has no synchronous standby */
	pid_t		worker_pid;
	struct Latch *worker_latch;	/* NULL while no worker runs */
	/* request slot, protected by `lock` */
	int			req_state;		/* PgHaRequestState */
	uint64		req_id;
	uint64		req_counter;
	int			req_pid;
	struct Latch *req_latch;	/* the waiting backend's latch */
	bool		req_abandoned;	/* the backend gave up waiting (cancel, timeout) */
	int			reply_status;
	char		request[PGHA_REQUEST_MAX];
	char		reply[PGHA_REPLY_MAX];
	uint64		status_generation;
	int			status_len;
	char		status_json[PGHA_STATUS_MAX];
} PgHaShared;

extern PgHaShared *pgha_shared;

/*
 * GUC variables (pg_ha.cpp): pgha_<name> for every row of core/settings.def,
 * e.g. pgha_scope, pgha_namespace, pgha_lease_safety_margin (ms).
 */
#define PGHA_C_TYPE_STRING char *
#define PGHA_C_TYPE_BOOL bool
#define PGHA_C_TYPE_INT int
#define PGHA_C_TYPE_ENUM int
#define PGHA_C_INIT_STRING(dflt) NULL	/* PostgreSQL sets the default */
#define PGHA_C_INIT_BOOL(dflt) dflt
#define PGHA_C_INIT_INT(dflt) dflt
#define PGHA_C_INIT_ENUM(dflt) dflt
#define PGHA_SETTING(field, name, type, dflt, min, max, unit, flags, context, desc) \
	extern PGHA_C_TYPE_##type pgha_##name;
#include "core/settings.def"
#undef PGHA_SETTING

/* true when pg_ha.scope etc. are set, i.e. this node is under HA control */
extern bool pgha_configured(void);

/* lease.cpp */
extern void pgha_install_lease_hooks(void);
#include "core/monotonic.h"	/* pgha_monotonic_ms(): the lease clock */

/* worker.cpp */
extern void pgha_register_worker(void);

#ifdef __cplusplus
}
#endif

#endif
