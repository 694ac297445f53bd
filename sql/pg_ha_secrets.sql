-- Secret settings (scripts/regress.sh sets pg_ha.superuser_password): SHOW
-- prints ******** when one is set, to everyone, and '' when it is not;
-- pg_read_all_settings (so pg_monitor) may SHOW them, plain users may not;
-- pg_settings leaves them out.
CREATE ROLE regress_ha_secret_watcher LOGIN IN ROLE pg_monitor;
CREATE ROLE regress_ha_secret_plain LOGIN;
SHOW pg_ha.superuser_password;
SET ROLE regress_ha_secret_watcher;
SHOW pg_ha.superuser_password;
SELECT current_setting('pg_ha.superuser_password');
SHOW pg_ha.replication_password;
SHOW pg_ha.restapi_password;
SELECT count(*) AS secrets_in_pg_settings FROM pg_settings WHERE name LIKE 'pg_ha.%password';
SELECT count(*) AS leaked FROM pg_settings WHERE setting LIKE '%regress-secret%';
SHOW pg_ha.superuser;
RESET ROLE;
SET ROLE regress_ha_secret_plain;
SHOW pg_ha.superuser_password;
SHOW pg_ha.superuser;
RESET ROLE;
DROP ROLE regress_ha_secret_watcher;
DROP ROLE regress_ha_secret_plain;
