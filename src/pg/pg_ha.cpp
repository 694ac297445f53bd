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
}

#include "pg/pg_ha_shared.h"

extern "C" {
PG_MODULE_MAGIC;
void		_PG_init(void);
}

PgHaShared *pgha_shared = NULL;

char	   *pgha_scope = NULL;
char	   *pgha_namespace = NULL;
char	   *pgha_node_name = NULL;
char	   *pgha_zookeeper_hosts = NULL;
char	   *pgha_connect_address = NULL;
char	   *pgha_api_listen = NULL;
char	   *pgha_api_connect_address = NULL;
char	   *pgha_superuser = NULL;
char	   *pgha_superuser_password = NULL;
char	   *pgha_replication_user = NULL;
char	   *pgha_replication_password = NULL;
char	   *pgha_rewind_user = NULL;
char	   *pgha_rewind_password = NULL;
char	   *pgha_admin_user = NULL;
char	   *pgha_admin_password = NULL;
char	   *pgha_pg_hba = NULL;
bool		pgha_nofailover = false;
bool		pgha_noloadbalance = false;
bool		pgha_nosync = false;
bool		pgha_clonefrom = false;
bool		pgha_lease_enforcement = true;
int			pgha_lease_safety_margin_ms = 2000;
int			pgha_watchdog_mode = 1;	/* automatic */
char	   *pgha_watchdog_device = NULL;
char	   *pgha_restapi_username = NULL;
char	   *pgha_restapi_password = NULL;
char	   *pgha_restapi_certfile = NULL;
char	   *pgha_restapi_keyfile = NULL;
char	   *pgha_restapi_keyfile_password = NULL;
char	   *pgha_restapi_cafile = NULL;
char	   *pgha_restapi_verify_client = NULL;
int			pgha_watchdog_safety_margin = 5;

static const struct config_enum_entry watchdog_mode_options[] = {
	{"off", 0, false},
	{"automatic", 1, false},
	{"required", 2, false},
	{"false", 0, true},
	{"no", 0, true},
	{"auto", 1, true},
	{"true", 1, true},
	{"yes", 1, true},
	{"on", 1, true},
	{"require", 2, true},
	{NULL, 0, false}
};

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
		pgha_shared->worker_pid = 0;
		pgha_shared->status_generation = 0;
		pgha_shared->status_len = 0;
		pgha_shared->status_json[0] = '\0';
	}
	LWLockRelease(AddinShmemInitLock);
}

static void
define_string(const char *name, const char *desc, char **var, const char *dflt, int flags)
{
	DefineCustomStringVariable(name, desc, NULL, var, dflt, PGC_POSTMASTER, flags, NULL, NULL, NULL);
}

static void
define_bool(const char *name, const char *desc, bool *var, bool dflt, GucContext ctx)
{
	DefineCustomBoolVariable(name, desc, NULL, var, dflt, ctx, 0, NULL, NULL, NULL);
}

static void
define_gucs(void)
{
	define_string("pg_ha.scope", "Cluster name (Patroni's scope); HA is off while empty.", &pgha_scope, "", 0);
	define_string("pg_ha.namespace", "ZooKeeper namespace the cluster lives under.", &pgha_namespace, "/service", 0);
	define_string("pg_ha.node_name", "This member's name, unique in the cluster.", &pgha_node_name, "", 0);
	define_string("pg_ha.zookeeper_hosts", "ZooKeeper ensemble as host:port[,host:port...].",
				  &pgha_zookeeper_hosts, "", 0);
	define_string("pg_ha.connect_address", "host:port other members and clients use to reach this server.",
				  &pgha_connect_address, "", 0);
	define_string("pg_ha.api_listen", "Address the REST/health API listens on (host:port).",
				  &pgha_api_listen, "0.0.0.0:8008", 0);
	define_string("pg_ha.api_connect_address", "host:port other members use to reach this node's REST API.",
				  &pgha_api_connect_address, "", 0);
	define_string("pg_ha.superuser", "Superuser pg_ha connects as locally (bootstrap creates it).",
				  &pgha_superuser, "postgres", 0);
	define_string("pg_ha.superuser_password", "Password of pg_ha.superuser.",
				  &pgha_superuser_password, "", GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL);
	define_string("pg_ha.replication_user", "Role standbys replicate as (bootstrap creates it).",
				  &pgha_replication_user, "replicator", 0);
	define_string("pg_ha.replication_password", "Password of pg_ha.replication_user.",
				  &pgha_replication_password, "", GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL);
	define_string("pg_ha.rewind_user", "Role pg_rewind connects as (bootstrap creates it).",
				  &pgha_rewind_user, "rewind_user", 0);
	define_string("pg_ha.rewind_password", "Password of pg_ha.rewind_user.",
				  &pgha_rewind_password, "", GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL);
	define_string("pg_ha.admin_user", "Administrative role bootstrap creates (CREATEROLE CREATEDB); empty: none.",
				  &pgha_admin_user, "admin", 0);
	define_string("pg_ha.admin_password", "Password of pg_ha.admin_user.",
				  &pgha_admin_password, "", GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL);
	define_string("pg_ha.pg_hba", "pg_hba.conf lines bootstrap writes, separated by ';' (empty: pg_ha's defaults).",
				  &pgha_pg_hba, "", 0);
	define_bool("pg_ha.nofailover", "Tag: this member never becomes leader.", &pgha_nofailover, false, PGC_POSTMASTER);
	define_bool("pg_ha.noloadbalance", "Tag: /replica answers 503 so load balancers skip this member.",
				&pgha_noloadbalance, false, PGC_POSTMASTER);
	define_bool("pg_ha.nosync", "Tag: this member is never chosen as a synchronous standby.",
				&pgha_nosync, false, PGC_POSTMASTER);
	define_bool("pg_ha.clonefrom", "Tag: new members may clone from this one.", &pgha_clonefrom, false, PGC_POSTMASTER);
	define_bool("pg_ha.lease_enforcement",
				"Refuse write commits on a primary whose leader lease has run out (commit-time fencing).",
				&pgha_lease_enforcement, true, PGC_POSTMASTER);
	DefineCustomIntVariable("pg_ha.lease_safety_margin",
							"How long before the ZooKeeper session could expire the leader lease ends.",
							NULL, &pgha_lease_safety_margin_ms, 2000, 100, 60000, PGC_POSTMASTER, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomEnumVariable("pg_ha.watchdog_mode",
							 "Linux watchdog for the leader: off, automatic (use it when it works) or required (no leadership without it).",
							 NULL, &pgha_watchdog_mode, 1, watchdog_mode_options, PGC_POSTMASTER, 0, NULL, NULL, NULL);
	define_string("pg_ha.watchdog_device",
				  "Watchdog device the leader keeps alive (a FIFO selects the test emulator's protocol).",
				  &pgha_watchdog_device, "/dev/watchdog", 0);
	DefineCustomIntVariable("pg_ha.watchdog_safety_margin",
							"Seconds between the watchdog firing and the end of ttl (watchdog timeout = ttl - margin; -1: ttl / 2).",
							NULL, &pgha_watchdog_safety_margin, 5, -1, 3600, PGC_POSTMASTER, GUC_UNIT_S, NULL, NULL, NULL);
	define_string("pg_ha.restapi_username",
				  "REST API: user for HTTP basic authentication of unsafe methods (POST, PATCH, ...); empty = none.",
				  &pgha_restapi_username, "", 0);
	define_string("pg_ha.restapi_password",
				  "REST API: password for pg_ha.restapi_username.",
				  &pgha_restapi_password, "", GUC_SUPERUSER_ONLY);
	define_string("pg_ha.restapi_certfile",
				  "REST API: PEM certificate; set = serve HTTPS.",
				  &pgha_restapi_certfile, "", 0);
	define_string("pg_ha.restapi_keyfile",
				  "REST API: PEM private key (empty = in the certfile).",
				  &pgha_restapi_keyfile, "", 0);
	define_string("pg_ha.restapi_keyfile_password",
				  "REST API: password of an encrypted keyfile.",
				  &pgha_restapi_keyfile_password, "", GUC_SUPERUSER_ONLY);
	define_string("pg_ha.restapi_cafile",
				  "REST API: CA file for client certificates and for calls to other members.",
				  &pgha_restapi_cafile, "", 0);
	define_string("pg_ha.restapi_verify_client",
				  "REST API: client certificates: none, optional or required.",
				  &pgha_restapi_verify_client, "none", 0);
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
