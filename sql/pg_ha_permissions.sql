-- A plain user may not read HA status; a pg_monitor member may.
CREATE ROLE regress_ha_plain LOGIN;
CREATE ROLE regress_ha_watcher LOGIN IN ROLE pg_monitor;
SET ROLE regress_ha_plain;
SELECT * FROM ha_status();
SELECT * FROM ha_node();
RESET ROLE;
SET ROLE regress_ha_watcher;
SELECT * FROM ha_status();
RESET ROLE;
DROP ROLE regress_ha_plain;
DROP ROLE regress_ha_watcher;

-- Control functions: not for PUBLIC nor pg_monitor; pgha_admin may call them.
CREATE ROLE regress_ha_plain2 LOGIN;
CREATE ROLE regress_ha_watcher2 LOGIN IN ROLE pg_monitor;
CREATE ROLE regress_ha_operator LOGIN IN ROLE pgha_admin;
SET ROLE regress_ha_plain2;
SELECT ha_switchover('pg-2');
SELECT ha_failover('pg-2');
SELECT ha_pause();
SELECT ha_resume();
SELECT ha_set_config('{"ttl": 20}');
SELECT ha_restart('pg-1');
SELECT ha_reinitialize('pg-1');
SELECT ha_reload();
SELECT * FROM ha_history();
SELECT ha_config();
RESET ROLE;
SET ROLE regress_ha_watcher2;
SELECT ha_switchover();
SELECT ha_pause();
-- pg_monitor may read history and config (this server is not under HA control)
SELECT * FROM ha_history();
RESET ROLE;
SET ROLE regress_ha_operator;
-- allowed, but this server is not under HA control
SELECT ha_switchover('pg-2');
SELECT ha_pause();
RESET ROLE;
SELECT p.proname, has_function_privilege('pgha_admin', p.oid, 'EXECUTE') AS admin,
       has_function_privilege('pg_monitor', p.oid, 'EXECUTE') AS monitor,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public
FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_ha'
ORDER BY 1;
DROP ROLE regress_ha_plain2;
DROP ROLE regress_ha_watcher2;
DROP ROLE regress_ha_operator;
