-- A plain user may not read HA status; a pg_monitor member may.
CREATE ROLE pg_ha_plain LOGIN;
CREATE ROLE pg_ha_watcher LOGIN IN ROLE pg_monitor;
SET ROLE pg_ha_plain;
SELECT * FROM ha_status();
SELECT * FROM ha_node();
RESET ROLE;
SET ROLE pg_ha_watcher;
SELECT * FROM ha_status();
RESET ROLE;
DROP ROLE pg_ha_plain;
DROP ROLE pg_ha_watcher;
