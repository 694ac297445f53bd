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
