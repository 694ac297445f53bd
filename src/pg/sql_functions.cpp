/*
 * sql_functions.cpp: C entry points behind the extension's SQL functions.
 * They read the status the worker publishes in shared memory; the SQL layer
 * (pg_ha--0.1.sql) turns that JSON into rows. C style only.
 */
extern "C" {
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "storage/lwlock.h"
#include "utils/builtins.h"
}

#include "pg/pg_ha_shared.h"

extern "C" {
PG_FUNCTION_INFO_V1(pg_ha_status_json);
PG_FUNCTION_INFO_V1(pg_ha_lease_remaining);
}

static void
require_worker_state(void)
{
	if (pgha_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_ha is not loaded through shared_preload_libraries"),
				 errhint("Add pg_ha to shared_preload_libraries in postgresql.conf and restart the server.")));
	if (!pgha_configured())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_ha is not configured on this server"),
				 errhint("Set pg_ha.scope, pg_ha.node_name and pg_ha.zookeeper_hosts and restart the server.")));
}

/* The worker's latest status as JSON text: {"node": {...}, "members": [...]}. */
extern "C" Datum
pg_ha_status_json(PG_FUNCTION_ARGS)
{
	text	   *result;

	require_worker_state();
	LWLockAcquire(pgha_shared->lock, LW_SHARED);
	if (pgha_shared->status_len == 0)
	{
		LWLockRelease(pgha_shared->lock);
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the pg_ha worker has not published its status yet"),
				 errhint("Wait a few seconds; check the server log for pg_ha messages if this persists.")));
	}
	result = cstring_to_text_with_len(pgha_shared->status_json, pgha_shared->status_len);
	LWLockRelease(pgha_shared->lock);
	PG_RETURN_TEXT_P(result);
}

/* Milliseconds left on this node's leader lease (0 when it has none). */
extern "C" Datum
pg_ha_lease_remaining(PG_FUNCTION_ARGS)
{
	int64		deadline;
	int64		now;

	require_worker_state();
	deadline = (int64) pg_atomic_read_u64(&pgha_shared->lease_deadline_ms);
	now = pgha_monotonic_ms();
	PG_RETURN_INT64(deadline > now ? deadline - now : 0);
}
