/*
 * pg_ha.cpp: module entry point. GUCs, shared memory, hooks, worker registration.
 *
 * This file and the other PostgreSQL-facing files in src/pg are written in
 * C style (no C++ objects with destructors), so an ereport(ERROR) longjmp
 * never crosses a C++ frame.
 */
extern "C" {
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "utils/guc.h"
#include "utils/memutils.h"
}

#include "pg/pg_ha_shared.h"

extern "C" {
PG_MODULE_MAGIC;
void		_PG_init(void);
}

PgHaShared *pgha_shared = NULL;

/* GUC variables: pgha_<name>, one per row of core/settings.def */
#define PGHA_SETTING(field, name, type, dflt, min, max, unit, flags, context, desc) \
	PGHA_C_TYPE_##type pgha_##name = PGHA_C_INIT_##type(dflt);
#include "core/settings.def"
#undef PGHA_SETTING

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

bool
pgha_configured(void)
{
	return pgha_scope && pgha_scope[0] && pgha_node_name && pgha_node_name[0] &&
		pgha_zookeeper_hosts && pgha_zookeeper_hosts[0];
}

static void
pgha_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(PgHaShared)));
	RequestNamedLWLockTranche("pg_ha", 1);
}

static void
pgha_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	pgha_shared = (PgHaShared *) ShmemInitStruct("pg_ha", sizeof(PgHaShared), &found);
	if (!found)
	{
		/*
		 * Also after a crash-restart: the lease starts empty, so no write
		 * commits until the restarted worker has proven it still leads.
		 */
		pgha_shared->lock = &(GetNamedLWLockTranche("pg_ha"))->lock;
		pg_atomic_init_u64(&pgha_shared->lease_deadline_ms, 0);
		pg_atomic_init_u32(&pgha_shared->lease_enforced,
						   (pgha_configured() && pgha_lease_enforcement) ? 1 : 0);
		pg_atomic_init_u32(&pgha_shared->fenced, 0);
		pg_atomic_init_u32(&pgha_shared->sync_strict_waiting, 0);
		pgha_shared->worker_pid = 0;
		pgha_shared->status_generation = 0;
		pgha_shared->status_len = 0;
		pgha_shared->status_json[0] = '\0';
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * SHOW and current_setting() print ******** for a secret that is set, to
 * everyone: GUC_SUPERUSER_ONLY alone still lets pg_read_all_settings (and so
 * pg_monitor) read it (security review S1). GUC_NO_SHOW_ALL keeps secrets out
 * of SHOW ALL and pg_settings. The worker reads the variables themselves.
 * One hook per secret row: a show hook takes no argument.
 */
#define PGHA_SHOW_HOOK_NONE(name)
#define PGHA_SHOW_HOOK_SECRET(name) \
	static const char * \
	show_secret_##name(void) \
	{ \
		return (pgha_##name && pgha_##name[0]) ? "********" : ""; \
	}
#define PGHA_SETTING(field, name, type, dflt, min, max, unit, flags, context, desc) PGHA_SHOW_HOOK_##flags(name)
#include "core/settings.def"
#undef PGHA_SETTING

/* The labels of every enum setting, with the setting they belong to. */
typedef struct PgHaEnumValue
{
	const char *setting;
	struct config_enum_entry entry;
} PgHaEnumValue;

static const PgHaEnumValue enum_values[] = {
#define PGHA_ENUM_VALUE(name, label, value, hidden) {#name, {label, value, hidden}},
#include "core/settings.def"
#undef PGHA_ENUM_VALUE
};

/* NULL-terminated options of one enum setting (kept for the life of the process). */
static const struct config_enum_entry *
enum_options(const char *setting)
{
	struct config_enum_entry *opts;
	int			n = 0;

	opts = (struct config_enum_entry *)
		MemoryContextAllocZero(TopMemoryContext, sizeof(*opts) * (lengthof(enum_values) + 1));
	for (size_t i = 0; i < lengthof(enum_values); i++)
		if (strcmp(enum_values[i].setting, setting) == 0)
			opts[n++] = enum_values[i].entry;
	return opts;
}

#define PGHA_GUC_CONTEXT_POSTMASTER PGC_POSTMASTER
#define PGHA_GUC_CONTEXT_RELOAD PGC_SIGHUP
#define PGHA_GUC_FLAGS_NONE 0
#define PGHA_GUC_FLAGS_SECRET (GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL)
#define PGHA_GUC_UNIT_NONE 0
#define PGHA_GUC_UNIT_MS GUC_UNIT_MS
#define PGHA_GUC_UNIT_S GUC_UNIT_S
#define PGHA_GUC_SHOW_NONE(name) NULL
#define PGHA_GUC_SHOW_SECRET(name) show_secret_##name

#define PGHA_DEFINE_STRING(name, dflt, min, max, unit, flags, context, desc) \
	DefineCustomStringVariable("pg_ha." #name, desc, NULL, &pgha_##name, dflt, PGHA_GUC_CONTEXT_##context, \
							   PGHA_GUC_FLAGS_##flags, NULL, NULL, PGHA_GUC_SHOW_##flags(name));
#define PGHA_DEFINE_BOOL(name, dflt, min, max, unit, flags, context, desc) \
	DefineCustomBoolVariable("pg_ha." #name, desc, NULL, &pgha_##name, dflt, PGHA_GUC_CONTEXT_##context, \
							 PGHA_GUC_FLAGS_##flags, NULL, NULL, NULL);
#define PGHA_DEFINE_INT(name, dflt, min, max, unit, flags, context, desc) \
	DefineCustomIntVariable("pg_ha." #name, desc, NULL, &pgha_##name, dflt, min, max, PGHA_GUC_CONTEXT_##context, \
							PGHA_GUC_FLAGS_##flags | PGHA_GUC_UNIT_##unit, NULL, NULL, NULL);
#define PGHA_DEFINE_ENUM(name, dflt, min, max, unit, flags, context, desc) \
	DefineCustomEnumVariable("pg_ha." #name, desc, NULL, &pgha_##name, dflt, enum_options(#name), \
							 PGHA_GUC_CONTEXT_##context, PGHA_GUC_FLAGS_##flags, NULL, NULL, NULL);

/* One GUC per row of core/settings.def. */
static void
define_gucs(void)
{
#define PGHA_SETTING(field, name, type, dflt, min, max, unit, flags, context, desc) \
	PGHA_DEFINE_##type(name, dflt, min, max, unit, flags, context, desc)
#include "core/settings.def"
#undef PGHA_SETTING
	MarkGUCPrefixReserved("pg_ha");
}

void
_PG_init(void)
{
	/*
	 * Loaded by CREATE EXTENSION or LOAD (also in single-user bootstrap):
	 * PGC_POSTMASTER settings cannot be defined after startup, and the SQL
	 * functions explain what is missing.
	 */
	if (!process_shared_preload_libraries_in_progress)
		return;

	define_gucs();

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = pgha_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = pgha_shmem_startup;

	pgha_install_lease_hooks();

	if (!pgha_configured())
	{
		ereport(LOG,
				(errmsg("pg_ha is loaded but not configured: high availability is off"),
				 errhint("Set pg_ha.scope, pg_ha.node_name and pg_ha.zookeeper_hosts.")));
		return;
	}
	pgha_register_worker();
}
