/*
 * engine_api.h: the C boundary between the worker's PostgreSQL-facing loop
 * (worker.cpp, includes postgres.h) and the HA engine (src/engine, pure
 * C++ with ZooKeeper, HTTP threads and libpq, never PostgreSQL's API).
 *
 * Only plain C types cross it; the engine catches every C++ exception before
 * returning, and PostgreSQL errors never unwind through engine frames because
 * the engine never calls PostgreSQL.
 */
#ifndef PG_HA_ENGINE_API_H
#define PG_HA_ENGINE_API_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What the worker read from shared memory this iteration. */
typedef struct PgHaLocal
{
	bool		in_recovery;
	bool		standby_signal;		/* standby.signal exists */
	bool		hot_standby_active; /* a standby accepts read-only connections */
	uint64_t	system_identifier;
	int			server_version;
	int			timeline;
	uint64_t	write_lsn;
	uint64_t	receive_lsn;
	uint64_t	replay_lsn;
	bool		walreceiver_streaming;
	const char *primary_conninfo;	/* current GUC value, may be NULL */
	int64_t		postmaster_start_time;	/* epoch seconds */
	bool		wal_level_logical;	/* wal_level = logical */
	/* an operator request from a backend (SQL), 0 = none; see pg_ha_shared.h */
	uint64_t	request_id;
	const char *request_json;
	int			request_pid;
} PgHaLocal;

typedef struct PgHaWaitSpec
{
	int			zk_fd;			/* -1: none */
	bool		zk_read;
	bool		zk_write;
	int			wake_fd;		/* eventfd the HTTP threads signal; -1: none */
	long		timeout_ms;
} PgHaWaitSpec;

/* What the worker must do in PostgreSQL after a step. */
typedef struct PgHaOutputs
{
	int64_t		lease_deadline_ms;	/* pgha_monotonic_ms() (core/monotonic.h); 0 = no lease */
	bool		lease_enforced;		/* false only with pg_ha.lease_enforcement = off (also while paused) */
	bool		promote;			/* request promotion now */
	bool		flush_wal;			/* flush the WAL written so far (a switchover's catch-up) */
	bool		promoting;			/* a promotion we asked for is under way: wake the startup process */
	bool		retry_stream;		/* a standby's stream ended: wake the startup process to retry now */
	bool		fence;				/* refuse connections and writes from now on */
	bool		sync_strict_waiting;	/* strict synchronous mode has no synchronous standby */
	bool		shutdown;			/* shut the postmaster down (after fencing) */
	bool		shutdown_immediate; /* ... without a shutdown checkpoint (fenced without ZooKeeper) */
	int			stop_kill_after_s;	/* primary_stop_timeout in effect now (0: none); see worker_exit */
	uint64_t	reply_id;			/* answer to request `reply_id` (0 = none yet) */
	int			reply_status;		/* HTTP-style status: 200/202 ok, 4xx refused, 503 failed */
	const char *reply_message;
	const char *status_json;		/* for the SQL functions (NULL: keep the last); valid until next step */
	const char *const *log_lines;	/* messages to ereport(LOG), NULL-terminated */
} PgHaOutputs;

typedef struct PgHaEngine PgHaEngine;

/*
 * Builds the engine from the node's settings as `n` name/value pairs: every
 * pg_ha.* setting of core/settings.def (the raw GUC values, secrets
 * included) plus PostgreSQL's port, unix_socket_directories and
 * data_directory. NULL on failure (also for a bad or unknown setting), with
 * a message in errbuf.
 */
PgHaEngine *pgha_engine_create(const char *const *names, const char *const *values, int n, char *errbuf,
							   int errbuf_len);
void		pgha_engine_wait_spec(PgHaEngine *engine, PgHaWaitSpec *spec);
void		pgha_engine_step(PgHaEngine *engine, const PgHaLocal *local, bool zk_readable, bool zk_writable,
							 bool woken, PgHaOutputs *out);
/* Clean exit: closes the ZooKeeper session (releasing the leader lock) when `release` is set. */
void		pgha_engine_destroy(PgHaEngine *engine, bool release);
/* The member tags after a configuration reload (pg_ha.nofailover & co.). */
void		pgha_engine_set_tags(PgHaEngine *engine, bool nofailover, bool noloadbalance, bool nosync,
								 bool clonefrom);

#ifdef __cplusplus
}
#endif

#endif
