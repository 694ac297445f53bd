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
#include "lib/stringinfo.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "pgtime.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"
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

/*
 * Operator requests (ha_switchover() & co.): one shared-memory slot, answered
 * by the worker. The backend waits on its latch with a timeout. Cancelling
 * (or timing out) before the worker took the request withdraws it; after
 * that the worker carries it out in full (a switchover is never left half
 * done) and simply nobody reads the answer.
 */
extern "C" {
PG_FUNCTION_INFO_V1(pg_ha_request);
PG_FUNCTION_INFO_V1(pg_ha_switchover);
PG_FUNCTION_INFO_V1(pg_ha_failover);
}

static int
status_errcode(int status)
{
	switch (status)
	{
		case 400:
		case 422:
			return ERRCODE_INVALID_PARAMETER_VALUE;
		case 404:
			return ERRCODE_UNDEFINED_OBJECT;
		case 409:
			return ERRCODE_OBJECT_IN_USE;
		case 412:
			return ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE;
		default:
			return ERRCODE_CONNECTION_FAILURE;
	}
}

static const char *
status_hint(int status)
{
	switch (status)
	{
		case 400:
		case 422:
			return "Check the arguments.";
		case 404:
			return "SELECT name FROM ha_status() lists the members.";
		case 409:
			return "Wait until the pending request finished (ha_status(), ha_node()), then retry.";
		case 412:
			return "SELECT * FROM ha_status() shows each member's state, lag and tags.";
		default:
			return "Check that ZooKeeper is reachable and look for pg_ha messages in the server log.";
	}
}

/*
 * Sends one request to the worker and returns its answer (palloc'd); any
 * refusal or failure is raised as an ERROR.
 */
static char *
pgha_call(const char *kind, const char *args, int timeout_ms)
{
	StringInfoData req;
	uint64		my_id;
	int64		deadline;
	int			status = 0;
	char	   *reply = NULL;

	require_worker_state();
	if (timeout_ms < 1000 || timeout_ms > 3600 * 1000)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("timeout must be between 1 s and 1 h, not %d ms", timeout_ms)));

	initStringInfo(&req);
	appendStringInfo(&req, "{\"kind\": ");
	escape_json(&req, kind);
	appendStringInfo(&req, ", \"args\": %s, \"timeout_ms\": %d}", args, timeout_ms);
	if (req.len >= PGHA_REQUEST_MAX)
		ereport(ERROR, (errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						errmsg("pg_ha request too large (%d bytes, at most %d)", req.len, PGHA_REQUEST_MAX - 1)));

	LWLockAcquire(pgha_shared->lock, LW_EXCLUSIVE);
	if (pgha_shared->worker_latch == NULL)
	{
		LWLockRelease(pgha_shared->lock);
		ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						errmsg("the pg_ha worker is not running"),
						errhint("Check the server log for pg_ha messages.")));
	}
	if (pgha_shared->req_state != PGHA_REQ_FREE)
	{
		LWLockRelease(pgha_shared->lock);
		ereport(ERROR, (errcode(ERRCODE_OBJECT_IN_USE),
						errmsg("another pg_ha request is in progress on this node"),
						errhint("Retry when it has finished.")));
	}
	my_id = ++pgha_shared->req_counter;
	pgha_shared->req_id = my_id;
	pgha_shared->req_state = PGHA_REQ_PENDING;
	pgha_shared->req_pid = MyProcPid;
	pgha_shared->req_latch = MyLatch;
	pgha_shared->req_abandoned = false;
	pgha_shared->reply_status = 0;
	pgha_shared->reply[0] = '\0';
	memcpy(pgha_shared->request, req.data, req.len + 1);
	SetLatch(pgha_shared->worker_latch);
	LWLockRelease(pgha_shared->lock);

	deadline = pgha_monotonic_ms() + timeout_ms + 5000;	/* the worker times out first */
	PG_TRY();
	{
		for (;;)
		{
			LWLockAcquire(pgha_shared->lock, LW_EXCLUSIVE);
			if (pgha_shared->req_id == my_id && pgha_shared->req_state == PGHA_REQ_DONE)
			{
				status = pgha_shared->reply_status;
				reply = pstrdup(pgha_shared->reply);
				pgha_shared->req_state = PGHA_REQ_FREE;
				LWLockRelease(pgha_shared->lock);
				break;
			}
			LWLockRelease(pgha_shared->lock);
			if (pgha_monotonic_ms() > deadline)
				ereport(ERROR, (errcode(ERRCODE_CONNECTION_FAILURE),
								errmsg("pg_ha did not answer the %s request within %d ms", kind, timeout_ms + 5000),
								errhint("ha_node() and the server log show what the worker is doing.")));
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 100, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
	}
	PG_CATCH();
	{
		/* cancelled or timed out: withdraw, or leave the answer to nobody */
		LWLockAcquire(pgha_shared->lock, LW_EXCLUSIVE);
		if (pgha_shared->req_id == my_id)
		{
			if (pgha_shared->req_state == PGHA_REQ_PENDING || pgha_shared->req_state == PGHA_REQ_DONE)
				pgha_shared->req_state = PGHA_REQ_FREE;
			else if (pgha_shared->req_state == PGHA_REQ_TAKEN)
				pgha_shared->req_abandoned = true;
			pgha_shared->req_latch = NULL;
		}
		LWLockRelease(pgha_shared->lock);
		PG_RE_THROW();
	}
	PG_END_TRY();

	if (status < 200 || status >= 300)
		ereport(ERROR,
				(errcode(status_errcode(status)),
				 errmsg("%s", reply),
				 errdetail("pg_ha refused or failed the %s request (status %d).", kind, status),
				 errhint("%s", status_hint(status))));
	return reply;
}

/* _ha_request(kind text, args text, timeout_ms integer) RETURNS text */
extern "C" Datum
pg_ha_request(PG_FUNCTION_ARGS)
{
	char	   *kind = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *args = text_to_cstring(PG_GETARG_TEXT_PP(1));

	PG_RETURN_TEXT_P(cstring_to_text(pgha_call(kind, args, PG_GETARG_INT32(2))));
}

/* The member name between the first pair of double quotes of an answer. */
static text *
quoted_name(const char *reply)
{
	const char *a = strchr(reply, '"');
	const char *b = a ? strchr(a + 1, '"') : NULL;

	if (a == NULL || b == NULL)
		return cstring_to_text(reply);
	return cstring_to_text_with_len(a + 1, (int) (b - a - 1));
}

/*
 * ha_switchover(candidate text, scheduled_at timestamptz) and
 * ha_failover(candidate text), in C rather than PL/pgSQL: after the worker's
 * answer nothing may touch the catalogs on the old primary (a first catalog
 * lookup sets hint bits, which with data checksums writes a full-page image
 * past the new leader's switch point and would force a rewind).
 */
extern "C" Datum
pg_ha_switchover(PG_FUNCTION_ARGS)
{
	StringInfoData args;
	char	   *reply;
	char		when[40] = "";

	initStringInfo(&args);
	appendStringInfoChar(&args, '{');
	if (!PG_ARGISNULL(0))
	{
		appendStringInfoString(&args, "\"candidate\": ");
		escape_json(&args, text_to_cstring(PG_GETARG_TEXT_PP(0)));
	}
	if (!PG_ARGISNULL(1))
	{
		TimestampTz ts = PG_GETARG_TIMESTAMPTZ(1);
		pg_time_t	t;
		struct pg_tm *tm;

		if (ts <= GetCurrentTimestamp())
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("scheduled_at is in the past"),
					 errdetail("scheduled_at is %s.", timestamptz_to_str(ts)),
					 errhint("Leave it NULL to switch over now.")));
		t = timestamptz_to_time_t(ts);
		tm = pg_gmtime(&t);
		pg_strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S+00:00", tm);
		appendStringInfo(&args, "%s\"scheduled_at\": \"%s\"", PG_ARGISNULL(0) ? "" : ", ", when);
	}
	appendStringInfoChar(&args, '}');
	require_worker_state();
	reply = pgha_call("switchover", args.data, 60000);
	if (when[0])
		PG_RETURN_TEXT_P(cstring_to_text(when));
	PG_RETURN_TEXT_P(quoted_name(reply));
}

extern "C" Datum
pg_ha_failover(PG_FUNCTION_ARGS)
{
	StringInfoData args;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a failover needs a candidate"),
				 errhint("SELECT name FROM ha_status() lists the members.")));
	initStringInfo(&args);
	appendStringInfoString(&args, "{\"candidate\": ");
	escape_json(&args, text_to_cstring(PG_GETARG_TEXT_PP(0)));
	appendStringInfoString(&args, ", \"require_no_leader\": true}");
	require_worker_state();
	PG_RETURN_TEXT_P(quoted_name(pgha_call("failover", args.data, 60000)));
}
