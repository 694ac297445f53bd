/*
 * lease.cpp: commit-time fencing (DESIGN.md §2.1).
 *
 * The worker publishes the moment its leadership could end (the lease) in
 * shared memory. Every backend checks it itself before a writing transaction
 * commits, so no write commits after the lease ran out even when the worker
 * or the postmaster is frozen. A second check right after the commit record
 * is flushed catches a commit that crossed the deadline while it waited
 * (WAL flush, synchronous replication): that commit is never acknowledged,
 * the client connection is cut instead.
 *
 * C style only: ereport(ERROR) longjmps from here.
 */
extern "C" {
#include "postgres.h"

#include <sys/socket.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "libpq/auth.h"
#include "libpq/libpq-be.h"
#include "miscadmin.h"
}

#include "pg/pg_ha_shared.h"

static ClientAuthentication_hook_type prev_client_auth_hook = NULL;
static bool xact_wrote = false;

/* Milliseconds the lease is past its deadline (> 0 means expired); 0 when no check applies. */
static int64
lease_overdue_ms(void)
{
	uint64		deadline;
	int64		now;

	if (pgha_shared == NULL || pg_atomic_read_u32(&pgha_shared->lease_enforced) == 0)
		return 0;
	if (RecoveryInProgress())
		return 0;
	deadline = pg_atomic_read_u64(&pgha_shared->lease_deadline_ms);
	now = pgha_monotonic_ms();
	if (deadline != 0 && now < (int64) deadline)
		return 0;
	return deadline == 0 ? 1 : now - (int64) deadline + 1;
}

static void
pgha_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			xact_wrote = TransactionIdIsValid(GetTopTransactionIdIfAny());
			if (xact_wrote && lease_overdue_ms() > 0)
			{
				xact_wrote = false;
				ereport(ERROR,
						(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
						 errmsg("pg_ha: this node does not hold a valid leader lease; the transaction was not committed"),
						 errdetail("Leadership could not be confirmed in ZooKeeper in time, so another node may already be the primary."),
						 errhint("Reconnect through the load balancer to reach the current primary.")));
			}
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (xact_wrote && lease_overdue_ms() > 0 && MyProcPort != NULL)
			{
				/*
				 * Committed locally, but the lease ran out while the commit
				 * waited: never acknowledge it. Cutting the connection keeps
				 * the "COMMIT" reply from reaching the client.
				 */
				ereport(LOG,
						(errmsg("pg_ha: the leader lease ran out during a commit; closing the connection without acknowledging it")));
				shutdown(MyProcPort->sock, SHUT_RDWR);
			}
			xact_wrote = false;
			break;
		default:
			xact_wrote = false;
			break;
	}
}

static void
pgha_client_auth(Port *port, int status)
{
	if (prev_client_auth_hook)
		prev_client_auth_hook(port, status);
	if (pgha_shared != NULL && pg_atomic_read_u32(&pgha_shared->fenced) != 0)
		ereport(FATAL,
				(errcode(ERRCODE_CANNOT_CONNECT_NOW),
				 errmsg("pg_ha: this node is being demoted and accepts no connections"),
				 errhint("Connect to the current primary.")));
}

void
pgha_install_lease_hooks(void)
{
	RegisterXactCallback(pgha_xact_callback, NULL);
	prev_client_auth_hook = ClientAuthentication_hook;
	ClientAuthentication_hook = pgha_client_auth;
}
