/*
 * lease.cpp: commit-time fencing.
 *
 * The worker publishes the moment its leadership could end (the lease) in
 * shared memory, on the clock of core/monotonic.h. Every backend checks it
 * itself before a writing transaction commits, so no write commits after the
 * lease ran out even when the worker or the postmaster is frozen. A second
 * check right after the commit record is flushed catches a commit that crossed
 * the deadline while it waited (WAL flush, synchronous replication): that
 * commit is never acknowledged, the client connection is cut instead.
 *
 * "Writing" means: the transaction has an XID, called
 * pg_logical_emit_message() (the non-transactional form writes WAL without
 * an XID; it is also refused before it writes), or has pending
 * LISTEN/UNLISTEN/NOTIFY actions (PreCommit_Notify assigns the XID only
 * after the PRE_COMMIT callback). COMMIT PREPARED runs in a transaction
 * without an XID: a ProcessUtility hook checks it before and after.
 *
 * Other WAL without an XID is deliberately not counted: reads write it too
 * (hint-bit full-page images with data checksums, page pruning, also of
 * catalog pages, e.g. in the worker's own queries during a switchover), and
 * so do VACUUM and other background processes; none of it is a client write.
 *
 * C style only: ereport(ERROR) longjmps from here.
 */
extern "C" {
#include "postgres.h"

#include <sys/socket.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_proc.h"
#include "commands/async.h"
#include "libpq/auth.h"
#include "libpq/libpq-be.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "replication/syncrep.h"
#include "replication/walsender.h"
#include "tcop/utility.h"
#include "utils/fmgrprotos.h"
#include "utils/fmgrtab.h"
}

#include "pg/pg_ha_shared.h"

static ClientAuthentication_hook_type prev_client_auth_hook = NULL;
static ProcessUtility_hook_type prev_process_utility_hook = NULL;
static object_access_hook_type prev_object_access_hook = NULL;

/* The transaction being committed counts as writing (decided at PRE_COMMIT). */
static bool xact_wrote = false;

/* The transaction is about to call pg_logical_emit_message() (set before the call). */
static bool xact_emitted_message = false;

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
refuse_without_lease(const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
			 errmsg("pg_ha: this node does not hold a valid leader lease; %s", what),
			 errdetail("Leadership could not be confirmed in ZooKeeper in time, so another node may already be the primary."),
			 errhint("Reconnect through the load balancer to reach the current primary.")));
	pg_unreachable();
}

/*
 * Cut the client connection so that the reply to a commit that is already
 * durable locally never reaches the client. Needs a client connection.
 */
static void
cut_connection(const char *what)
{
	if (MyProcPort == NULL)
		return;
	ereport(LOG,
			(errmsg("pg_ha: the leader lease ran out during %s; closing the connection without acknowledging it", what)));
	shutdown(MyProcPort->sock, SHUT_RDWR);
}

/*
 * LISTEN/UNLISTEN/NOTIFY pending in this transaction. async.c keeps that
 * state static; AtPrepare_Notify() is the one exported test of it (it raises
 * a plain ERROR, without side effects, when anything is pending). Only
 * called when the lease is overdue, i.e. when the answer refuses the commit.
 */
static bool
notify_pending(void)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	uint32		holdoff = InterruptHoldoffCount;
	uint32		cancel_holdoff = QueryCancelHoldoffCount;
	uint32		crit = CritSectionCount;
	volatile bool pending = false;

	PG_TRY();
	{
		AtPrepare_Notify();
	}
	PG_CATCH();
	{
		/* errfinish() reset these for the handler; restore the caller's */
		InterruptHoldoffCount = holdoff;
		QueryCancelHoldoffCount = cancel_holdoff;
		CritSectionCount = crit;
		MemoryContextSwitchTo(oldcxt);
		FlushErrorState();
		pending = true;
	}
	PG_END_TRY();
	return pending;
}

/*
 * Strict synchronous mode with no synchronous standby: a writing commit would
 * wait for one indefinitely. With pg_ha.synchronous_strict_fail_fast it is
 * refused now instead (nothing was committed, so nothing is lost).
 */
static void
refuse_if_strict_sync_would_hang(void)
{
	if (!pgha_synchronous_strict_fail_fast || pgha_shared == NULL ||
		pg_atomic_read_u32(&pgha_shared->sync_strict_waiting) == 0)
		return;
	if (!SyncRepRequested() || RecoveryInProgress())
		return;
	xact_wrote = false;
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("pg_ha: no synchronous standby is available; the commit was refused instead of waiting for one"),
			 errdetail("synchronous_mode_strict is on, and pg_ha.synchronous_strict_fail_fast makes such commits fail at once."),
			 errhint("Bring a standby back (it becomes synchronous within a loop), or turn synchronous_mode_strict off with pg_hactl edit-config.")));
}

/* At PRE_COMMIT/PRE_PREPARE: does this transaction count as writing, and may it commit? */
static void
check_before_commit(void)
{
	xact_wrote = TransactionIdIsValid(GetTopTransactionIdIfAny()) || xact_emitted_message;
	if (xact_wrote)
		refuse_if_strict_sync_would_hang();
	if (lease_overdue_ms() == 0)
		return;
	if (!xact_wrote && notify_pending())
		xact_wrote = true;
	if (xact_wrote)
	{
		xact_wrote = false;
		refuse_without_lease("the transaction was not committed");
	}
}

static void
pgha_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			check_before_commit();
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:

			/*
			 * An XID assigned after PRE_COMMIT (PreCommit_Notify) makes the
			 * commit a writing one too.
			 */
			if ((xact_wrote || TransactionIdIsValid(GetTopTransactionIdIfAny())) &&
				lease_overdue_ms() > 0)
			{
				/*
				 * Committed locally, but the lease ran out while the commit
				 * waited: never acknowledge it. Cutting the connection keeps
				 * the "COMMIT" reply from reaching the client.
				 */
				cut_connection("a commit");
			}
			xact_wrote = false;
			xact_emitted_message = false;
			break;
		default:
			xact_wrote = false;
			xact_emitted_message = false;
			break;
	}
}

/*
 * COMMIT PREPARED commits a transaction prepared earlier, from a transaction
 * of its own that has no XID, so the PRE_COMMIT check does not see it. The
 * lease is checked before (refuse) and after (cut the connection: the commit
 * is durable, the reply must not go out). ROLLBACK PREPARED stays allowed.
 */
static void
pgha_process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
					 ProcessUtilityContext context, ParamListInfo params,
					 QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;
	bool		commit_prepared = false;

	if (parsetree != NULL && IsA(parsetree, TransactionStmt))
		commit_prepared = ((TransactionStmt *) parsetree)->kind == TRANS_STMT_COMMIT_PREPARED;
	if (commit_prepared && lease_overdue_ms() > 0)
		refuse_without_lease("the prepared transaction was not committed");

	if (prev_process_utility_hook)
		prev_process_utility_hook(pstmt, queryString, readOnlyTree, context, params,
								  queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);

	if (commit_prepared && lease_overdue_ms() > 0)
		cut_connection("COMMIT PREPARED");
}

/*
 * pg_logical_emit_message(): the built-in functions, found by their C entry
 * points (whatever their OIDs and signatures in this major version).
 */
static bool
is_emit_message(Oid fn_oid)
{
	uint16		index;

	if (fn_oid > fmgr_last_builtin_oid)
		return false;
	index = fmgr_builtin_oid_index[fn_oid];
	if (index == InvalidOidBuiltinMapping)
		return false;
	return fmgr_builtins[index].func == pg_logical_emit_message_text ||
		fmgr_builtins[index].func == pg_logical_emit_message_bytea;
}

/*
 * A non-transactional logical message is in the WAL, and decoded, as soon as
 * it is written: refuse it before that without a lease, and mark the
 * transaction as writing for the pre-commit check. (The transactional form
 * assigns an XID, so it counts anyway.) The executor announces every function
 * it is about to call with OAT_FUNCTION_EXECUTE (ExecInitFunc), built-in ones
 * included, which fmgr's hooks do not see.
 */
static void
pgha_object_access(ObjectAccessType access, Oid classId, Oid objectId, int subId, void *arg)
{
	if (prev_object_access_hook)
		prev_object_access_hook(access, classId, objectId, subId, arg);
	if (access == OAT_FUNCTION_EXECUTE && classId == ProcedureRelationId && is_emit_message(objectId))
	{
		if (lease_overdue_ms() > 0)
			refuse_without_lease("the logical message was not written");
		xact_emitted_message = true;
	}
}

/*
 * While fenced (a demotion under way), refuse new sessions, except physical
 * replication: a walsender cannot write, and a switchover's candidate whose
 * stream broke just before must be able to stream the last WAL from here.
 */
static void
pgha_client_auth(Port *port, int status)
{
	if (prev_client_auth_hook)
		prev_client_auth_hook(port, status);
	if (am_walsender && !am_db_walsender)
		return;
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
	prev_process_utility_hook = ProcessUtility_hook;
	ProcessUtility_hook = pgha_process_utility;
	prev_object_access_hook = object_access_hook;
	object_access_hook = pgha_object_access;
}
