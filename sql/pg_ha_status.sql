-- On a server that loads pg_ha without HA settings, every status function
-- says what is missing instead of returning made-up data.
SHOW pg_ha.scope;
SELECT * FROM ha_status();
SELECT * FROM ha_node();
SELECT ha_lease_remaining_ms();
-- Unknown pg_ha.* settings are rejected (the prefix is reserved).
SET pg_ha.no_such_setting = 'x';
-- A node without HA settings does not enforce leases: writes work.
CREATE TABLE pg_ha_regress_t (i int);
INSERT INTO pg_ha_regress_t VALUES (1);
SELECT count(*) FROM pg_ha_regress_t;
DROP TABLE pg_ha_regress_t;

-- Argument errors are caught before anything is asked of the worker.
SELECT ha_failover(NULL);
\set VERBOSITY terse
SELECT ha_switchover('pg-2', now() - interval '1 hour');
\set VERBOSITY default
