/*
 * worker.cpp: the pg_ha background worker's main loop.
 *
 * The only thread that calls PostgreSQL. Each iteration: wait on the latch,
 * postmaster death and the ZooKeeper socket; observe the local server from
 * shared memory; hand both to the engine (src/engine, no PostgreSQL
 * calls); apply what it asks for (lease, promotion, fencing, shutdown);
 * publish the status for the SQL functions.
 *
 * C style: no C++ objects live in these frames, so ereport longjmps are safe.
 */
extern "C" {
#include "postgres.h"

#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include "access/xlog.h"
#include "access/xlogrecovery.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "postmaster/postmaster.h"
#include "replication/walreceiver.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "tcop/tcopprot.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/spin.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"
}

#include "pg/engine_api.h"
#include "pg/pg_ha_shared.h"

extern "C" {
PGDLLEXPORT void pg_ha_worker_main(Datum main_arg);
}

static PgHaEngine *engine = NULL;
static uint64 last_reply_id = 0;

void
pgha_register_worker(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS;
	/* Before consistency: a standby or a recovering primary must campaign too. */
	worker.bgw_start_time = BgWorkerStart_PostmasterStart;
	worker.bgw_restart_time = 1;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "pg_ha");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "pg_ha_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "pg_ha worker");
	snprintf(worker.bgw_type, BGW_MAXLEN, "pg_ha worker");
	RegisterBackgroundWorker(&worker);
}

/* primary_stop_timeout in effect at the last step (0: none) */
static int	stop_kill_after_s = 0;

/* the engine asks for the stop on every step until the postmaster ends us: log it once */
static bool shutdown_logged = false;

/*
 * Patroni's primary_stop_timeout (synchronous mode): a fast shutdown of a
 * primary can wait for a standby that does not answer (the walsenders wait
 * for it to confirm the shutdown checkpoint, up to wal_sender_timeout). The
 * worker is told to exit when the shutdown begins, so it leaves a guard
 * behind: a shell (exec'd at once, so it holds no shared memory) that kills
 * the postmaster with SIGKILL if, `seconds` later, the same postmaster (PID
 * and start time) is still shutting down (postmaster.pid says "stopping").
 * Only when the postmaster is shutting down now: a worker terminated for
 * any other reason leaves no guard.
 */
static void
leave_stop_guard(int seconds)
{
	char		status[64] = "";
	char		starttime[32] = "";
	char		path[64];
	char		script[2048];
	FILE	   *f;
	pid_t		child;

	f = fopen("postmaster.pid", "r");
	if (f == NULL)
		return;
	for (int line = 1; line <= 8 && fgets(status, sizeof(status), f) != NULL; line++)
		if (line == 8)
			break;
	fclose(f);
	if (strncmp(status, "stopping", 8) != 0)
		return;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int) PostmasterPid);
	f = fopen(path, "r");
	if (f != NULL)
	{
		char		buf[1024];
		size_t		n = fread(buf, 1, sizeof(buf) - 1, f);
		char	   *p;
		int			field = 2;	/* buf after "pid (comm)" starts at field 3 */

		fclose(f);
		buf[n] = '\0';
		p = strrchr(buf, ')');
		while (p != NULL && *p != '\0' && field < 22)
		{
			p = strchr(p + 1, ' ');
			field++;
		}
		if (p != NULL && field == 22)
			sscanf(p + 1, "%31[0-9]", starttime);
	}
	if (starttime[0] == '\0')
		return;
	snprintf(script, sizeof(script),
			 "sleep %d; "
			 "[ \"$(sed -n 8p '%s/postmaster.pid' 2>/dev/null)\" = stopping ] || exit 0; "
			 "[ \"$(sed -n 1p '%s/postmaster.pid' 2>/dev/null)\" = %d ] || exit 0; "
			 "[ \"$(sed 's/.*) //' /proc/%d/stat 2>/dev/null | cut -d' ' -f20)\" = %s ] || exit 0; "
			 "echo \"pg_ha: the shutdown took longer than primary_stop_timeout (%d s) in synchronous mode: "
			 "killing the postmaster (PID %d) with SIGKILL\" >&2; "
			 "kill -KILL %d",
			 seconds, DataDir, DataDir, (int) PostmasterPid, (int) PostmasterPid, starttime, seconds,
			 (int) PostmasterPid, (int) PostmasterPid);
	ereport(LOG, (errmsg("pg_ha: the server is shutting down in synchronous mode: the postmaster will be killed if it "
						 "has not stopped within primary_stop_timeout (%d s)", seconds)));
	fflush(NULL);
	child = fork();
	if (child == 0)
	{
		/* no PostgreSQL code from here on: exec at once */
		char	   *argv[] = {(char *) "sh", (char *) "-c", script, NULL};

		setsid();
		execv("/bin/sh", argv);
		_exit(127);
	}
	if (child < 0)
		ereport(LOG, (errmsg("pg_ha: cannot start the primary_stop_timeout guard: %m")));
}

/* Revoke the lease before anything else, then leave ZooKeeper. */
static void
worker_exit(int code, Datum arg)
{
	if (pgha_shared)
	{
		pg_atomic_write_u64(&pgha_shared->lease_deadline_ms, 0);
		pg_atomic_write_u32(&pgha_shared->sync_strict_waiting, 0);
		pgha_shared->worker_latch = NULL;
	}
	if (stop_kill_after_s > 0)
		leave_stop_guard(stop_kill_after_s);
	if (engine)
	{
		/* a clean stop (code 0 or SIGTERM) releases the leader lock at once */
		pgha_engine_destroy(engine, true);
		engine = NULL;
	}
}

static void
observe_local(PgHaLocal *l)
{
	memset(l, 0, sizeof(*l));
	l->in_recovery = RecoveryInProgress();
	l->standby_signal = access(STANDBY_SIGNAL_FILE, F_OK) == 0;
	l->system_identifier = GetSystemIdentifier();
	l->server_version = PG_VERSION_NUM;
	l->postmaster_start_time = (int64_t) timestamptz_to_time_t(PgStartTime);
	l->wal_level_logical = wal_level >= WAL_LEVEL_LOGICAL;
	l->primary_conninfo = PrimaryConnInfo;
	if (!l->in_recovery)
	{
		l->write_lsn = GetXLogWriteRecPtr();
		l->timeline = (int) GetWALInsertionTimeLine();
	}
	else
	{
		TimeLineID	replay_tli = 0;
		TimeLineID	receive_tli = 0;

		l->hot_standby_active = HotStandbyActive();
		l->replay_lsn = GetXLogReplayRecPtr(&replay_tli);
		l->receive_lsn = GetWalRcvFlushRecPtr(NULL, &receive_tli);
		l->timeline = (int) (receive_tli > replay_tli ? receive_tli : replay_tli);
		SpinLockAcquire(&WalRcv->mutex);
		l->walreceiver_streaming = WalRcv->walRcvState == WALRCV_STREAMING;
		SpinLockRelease(&WalRcv->mutex);
	}
}

/* What pg_promote() does: leave the signal file, wake the postmaster. */
static void
request_promotion(void)
{
	FILE	   *f = AllocateFile(PROMOTE_SIGNAL_FILE, "w");

	if (f == NULL || FreeFile(f) != 0)
	{
		ereport(LOG, (errcode_for_file_access(),
					  errmsg("pg_ha: could not create promote signal file \"%s\": %m", PROMOTE_SIGNAL_FILE)));
		return;
	}
	if (kill(PostmasterPid, SIGUSR1) != 0)
		ereport(LOG, (errmsg("pg_ha: failed to send the promote signal to the postmaster: %m")));
}

/* Hand a waiting SQL request to the engine (once). */
static void
take_request(PgHaLocal *l)
{
	LWLockAcquire(pgha_shared->lock, LW_EXCLUSIVE);
	if (pgha_shared->req_state == PGHA_REQ_PENDING)
	{
		pgha_shared->req_state = PGHA_REQ_TAKEN;
		l->request_id = pgha_shared->req_id;
		l->request_json = pstrdup(pgha_shared->request);
		l->request_pid = pgha_shared->req_pid;
	}
	LWLockRelease(pgha_shared->lock);
}

/* Put the engine's answer into the slot and wake the backend. */
static void
give_reply(const PgHaOutputs *out)
{
	struct Latch *latch = NULL;

	if (out->reply_id == 0 || out->reply_id == last_reply_id)
		return;
	last_reply_id = out->reply_id;
	LWLockAcquire(pgha_shared->lock, LW_EXCLUSIVE);
	if (pgha_shared->req_id == out->reply_id && pgha_shared->req_state == PGHA_REQ_TAKEN)
	{
		if (pgha_shared->req_abandoned)
			pgha_shared->req_state = PGHA_REQ_FREE;
		else
		{
			pgha_shared->reply_status = out->reply_status;
			strlcpy(pgha_shared->reply, out->reply_message ? out->reply_message : "", PGHA_REPLY_MAX);
			pgha_shared->req_state = PGHA_REQ_DONE;
			latch = pgha_shared->req_latch;
		}
	}
	LWLockRelease(pgha_shared->lock);
	if (latch)
		SetLatch(latch);
}

static void
apply_outputs(const PgHaOutputs *out)
{
	for (const char *const *line = out->log_lines; line && *line; line++)
	{
		/* the engine marks operator warnings (e.g. an open REST API) with "WARNING: " */
		if (strncmp(*line, "WARNING: ", 9) == 0)
			ereport(WARNING, (errmsg("pg_ha: %s", *line + 9)));
		else
			ereport(LOG, (errmsg("pg_ha: %s", *line)));
	}

	if (out->fence)
	{
		/* order matters: no commits, no new sessions, then stop */
		pg_atomic_write_u64(&pgha_shared->lease_deadline_ms, 0);
		pg_atomic_write_u32(&pgha_shared->fenced, 1);
	}
	else
	{
		pg_atomic_write_u64(&pgha_shared->lease_deadline_ms, (uint64) out->lease_deadline_ms);
		pg_atomic_write_u32(&pgha_shared->fenced, 0);	/* e.g. an aborted switchover */
	}
	pg_atomic_write_u32(&pgha_shared->lease_enforced,
						(out->lease_enforced || out->fence) ? 1 : 0);
	pg_atomic_write_u32(&pgha_shared->sync_strict_waiting, out->sync_strict_waiting ? 1 : 0);

	if (out->promote)
		request_promotion();
	if ((out->promoting || out->retry_stream) && RecoveryInProgress())
		WakeupRecovery();
	if (out->flush_wal && !RecoveryInProgress())
		XLogFlush(GetXLogInsertRecPtr());

	if (out->status_json)
	{
		int			len = (int) strlen(out->status_json);

		if (len < PGHA_STATUS_MAX)
		{
			LWLockAcquire(pgha_shared->lock, LW_EXCLUSIVE);
			memcpy(pgha_shared->status_json, out->status_json, len + 1);
			pgha_shared->status_len = len;
			pgha_shared->status_generation++;
			LWLockRelease(pgha_shared->lock);
		}
	}

	give_reply(out);
	stop_kill_after_s = out->stop_kill_after_s;

	if (out->shutdown)
	{
		if (out->shutdown_immediate)
		{
			/* fenced without ZooKeeper: walsenders to standbys we cannot reach must not hold the stop */
			ereport(LOG, (errmsg("pg_ha: requesting an immediate shutdown to rejoin as a standby")));
			kill(PostmasterPid, SIGQUIT);
		}
		else
		{
			if (!shutdown_logged)
				ereport(LOG, (errmsg("pg_ha: requesting a fast shutdown")));
			shutdown_logged = true;
			kill(PostmasterPid, SIGINT);
		}
	}
}

/* the rows of core/settings.def plus PostgreSQL's port, socket directories and data directory */
enum
{
	PGHA_N_SETTINGS = 0
#define PGHA_SETTING(field, name, type, dflt, min, max, unit, flags, context, desc) +1
#include "core/settings.def"
#undef PGHA_SETTING
};
#define PGHA_MAX_SETTINGS (PGHA_N_SETTINGS + 3)

/* The label of an enum setting's value (its first label that is not an alias). */
static const char *
enum_label(const char *setting, int value)
{
	static const struct
	{
		const char *setting;
		const char *label;
		int			value;
		bool		hidden;
	}			labels[] = {
#define PGHA_ENUM_VALUE(name, label, value, hidden) {#name, label, value, hidden},
#include "core/settings.def"
#undef PGHA_ENUM_VALUE
	};

	for (size_t i = 0; i < lengthof(labels); i++)
		if (!labels[i].hidden && labels[i].value == value && strcmp(labels[i].setting, setting) == 0)
			return labels[i].label;
	return psprintf("%d", value);
}

#define PGHA_VALUE_STRING(name) (pgha_##name ? pgha_##name : "")
#define PGHA_VALUE_BOOL(name) (pgha_##name ? "on" : "off")
#define PGHA_VALUE_INT(name) psprintf("%d", pgha_##name)	/* in the setting's unit */
#define PGHA_VALUE_ENUM(name) enum_label(#name, pgha_##name)

/*
 * The settings the engine is built from, as name/value pairs: the values of
 * the GUC variables themselves (SHOW masks secrets), then PostgreSQL's own.
 */
static int
settings_pairs(const char **names, const char **values)
{
	int			n = 0;

#define PGHA_SETTING(field, name, type, dflt, min, max, unit, flags, context, desc) \
	names[n] = "pg_ha." #name; \
	values[n++] = PGHA_VALUE_##type(name);
#include "core/settings.def"
#undef PGHA_SETTING
	names[n] = "port";
	values[n++] = psprintf("%d", PostPortNumber);
	names[n] = "unix_socket_directories";
	values[n++] = Unix_socket_directories ? Unix_socket_directories : "";
	names[n] = "data_directory";
	values[n++] = DataDir;
	Assert(n <= PGHA_MAX_SETTINGS);
	return n;
}

void
pg_ha_worker_main(Datum main_arg)
{
	const char *names[PGHA_MAX_SETTINGS];
	const char *values[PGHA_MAX_SETTINGS];
	int			nsettings;
	char		errbuf[512];
	MemoryContext loop_cxt;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	if (pgha_shared == NULL)
		ereport(FATAL, (errmsg("pg_ha: shared memory is not initialized")));
	pgha_shared->worker_pid = MyProcPid;
	pgha_shared->worker_latch = MyLatch;
	/* a request a previous worker took will never be answered */
	LWLockAcquire(pgha_shared->lock, LW_EXCLUSIVE);
	if (pgha_shared->req_state == PGHA_REQ_TAKEN)
	{
		pgha_shared->reply_status = 503;
		strlcpy(pgha_shared->reply, "the pg_ha worker restarted while carrying out the request", PGHA_REPLY_MAX);
		pgha_shared->req_state = pgha_shared->req_abandoned ? PGHA_REQ_FREE : PGHA_REQ_DONE;
		if (pgha_shared->req_latch)
			SetLatch(pgha_shared->req_latch);
	}
	LWLockRelease(pgha_shared->lock);

	nsettings = settings_pairs(names, values);
	engine = pgha_engine_create(names, values, nsettings, errbuf, sizeof(errbuf));
	if (engine == NULL)
	{
		/* misconfigured: say so once and stay out of the way (no restart loop) */
		ereport(LOG,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("pg_ha: high availability is disabled: %s", errbuf),
				 errhint("Fix the pg_ha.* settings and restart the server.")));
		proc_exit(0);
	}
	before_shmem_exit(worker_exit, (Datum) 0);
	ereport(LOG, (errmsg("pg_ha: worker started for member \"%s\" of cluster \"%s\"", pgha_node_name, pgha_scope)));

	loop_cxt = AllocSetContextCreate(TopMemoryContext, "pg_ha loop", ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		PgHaWaitSpec spec;
		PgHaLocal	local;
		PgHaOutputs out;
		WaitEventSet *set;
		WaitEvent	events[4];
		int			nevents;
		bool		zk_r = false,
					zk_w = false,
					woken = false;
		MemoryContext old = MemoryContextSwitchTo(loop_cxt);

		pgha_engine_wait_spec(engine, &spec);
#if PG_VERSION_NUM >= 170000
		/* 17+: owned by a resource owner (none in this worker), memory from TopMemoryContext; freed below. */
		set = CreateWaitEventSet(CurrentResourceOwner, 4);
#else
		set = CreateWaitEventSet(loop_cxt, 4);
#endif
		AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
		AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
		if (spec.zk_fd >= 0 && (spec.zk_read || spec.zk_write))
			AddWaitEventToSet(set, (spec.zk_read ? WL_SOCKET_READABLE : 0) | (spec.zk_write ? WL_SOCKET_WRITEABLE : 0),
							  spec.zk_fd, NULL, NULL);
		if (spec.wake_fd >= 0)
			AddWaitEventToSet(set, WL_SOCKET_READABLE, spec.wake_fd, NULL, NULL);
		nevents = WaitEventSetWait(set, spec.timeout_ms, events, lengthof(events), PG_WAIT_EXTENSION);
		for (int i = 0; i < nevents; i++)
		{
			if (events[i].events & WL_LATCH_SET)
				ResetLatch(MyLatch);
			if (events[i].fd == spec.zk_fd && spec.zk_fd >= 0)
			{
				zk_r = zk_r || (events[i].events & WL_SOCKET_READABLE);
				zk_w = zk_w || (events[i].events & WL_SOCKET_WRITEABLE);
			}
			else if (events[i].fd == spec.wake_fd && spec.wake_fd >= 0)
				woken = true;
		}
		FreeWaitEventSet(set);

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			pgha_engine_set_tags(engine, pgha_nofailover, pgha_noloadbalance, pgha_nosync, pgha_clonefrom);
		}

		observe_local(&local);
		take_request(&local);
		pgha_engine_step(engine, &local, zk_r, zk_w, woken, &out);
		apply_outputs(&out);

		MemoryContextSwitchTo(old);
		MemoryContextReset(loop_cxt);
	}
}
