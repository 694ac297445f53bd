-- pg_ha SQL surface, version 0.1
\echo Use "CREATE EXTENSION pg_ha" to load this file. \quit

CREATE FUNCTION ha_status_text() RETURNS text
AS 'MODULE_PATHNAME', 'pg_ha_status_json'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION ha_status_json() RETURNS jsonb
LANGUAGE sql STABLE
AS $$ SELECT @extschema@.ha_status_text()::jsonb $$;

CREATE FUNCTION ha_lease_remaining_ms() RETURNS bigint
AS 'MODULE_PATHNAME', 'pg_ha_lease_remaining'
LANGUAGE C STRICT VOLATILE;

-- One row per cluster member, as the local worker last saw the cluster.
CREATE FUNCTION ha_status(
    OUT name text, OUT host text, OUT port integer, OUT role text, OUT state text,
    OUT timeline integer, OUT lsn pg_lsn, OUT lag bigint, OUT tags jsonb, OUT is_leader boolean)
RETURNS SETOF record
LANGUAGE sql STABLE
AS $$
    SELECT m.name, m.host, m.port, m.role, m.state, m.timeline, m.lsn::pg_lsn, m.lag, m.tags, m.is_leader
    FROM jsonb_to_recordset(@extschema@.ha_status_json() -> 'members')
         AS m(name text, host text, port integer, role text, state text, timeline integer,
              lsn text, lag bigint, tags jsonb, is_leader boolean)
    ORDER BY m.name
$$;

-- The local node: role, leadership, lease and the HA loop's last decision.
CREATE FUNCTION ha_node(
    OUT name text, OUT scope text, OUT role text, OUT state text, OUT is_leader boolean,
    OUT accepts_writes boolean, OUT leader text, OUT timeline integer, OUT lsn pg_lsn,
    OUT paused boolean, OUT dcs_ok boolean, OUT lease_remaining_ms bigint, OUT message text,
    OUT tags jsonb, OUT api_url text, OUT conn_url text, OUT sync_waiting text)
RETURNS record
LANGUAGE sql STABLE
AS $$
    SELECT n.name, n.scope, n.role, n.state, n.is_leader, n.accepts_writes, nullif(n.leader, ''),
           n.timeline, n.lsn::pg_lsn, n.paused, n.dcs_ok, @extschema@.ha_lease_remaining_ms(), n.message,
           n.tags, n.api_url, n.conn_url, nullif(n.sync_waiting, '')
    FROM jsonb_to_record(@extschema@.ha_status_json() -> 'node')
         AS n(name text, scope text, role text, state text, is_leader boolean, accepts_writes boolean,
              leader text, timeline integer, lsn text, paused boolean, dcs_ok boolean,
              message text, tags jsonb, api_url text, conn_url text, sync_waiting text)
$$;

-- Status is for monitoring roles; nothing here is for PUBLIC.
REVOKE ALL ON FUNCTION ha_status_text(), ha_status_json(), ha_status(), ha_node(), ha_lease_remaining_ms() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ha_status_text(), ha_status_json(), ha_status(), ha_node(), ha_lease_remaining_ms() TO pg_monitor;

-- ---------------------------------------------------------------------------
-- Control. The local worker carries each request out (through shared memory)
-- and the function returns once it is done; every refusal is an error with
-- an errcode, a detail and a hint. Callers need the pgha_admin role.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'pgha_admin') THEN
        CREATE ROLE pgha_admin NOLOGIN;
        COMMENT ON ROLE pgha_admin IS 'may call the pg_ha control functions (ha_switchover(), ha_pause(), ...)';
    END IF;
END
$$;

CREATE FUNCTION _ha_request(kind text, args text, timeout_ms integer) RETURNS text
AS 'MODULE_PATHNAME', 'pg_ha_request'
LANGUAGE C STRICT VOLATILE;

-- Moves the primary to `candidate` (NULL: the most advanced eligible member).
-- Returns the new leader's name once it accepts writes, or, with
-- scheduled_at, the time the switchover is scheduled for (UTC).
CREATE FUNCTION ha_switchover(candidate text DEFAULT NULL, scheduled_at timestamptz DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'pg_ha_switchover'
LANGUAGE C VOLATILE;

-- For a cluster without a healthy leader: makes `candidate` the leader.
CREATE FUNCTION ha_failover(candidate text) RETURNS text
AS 'MODULE_PATHNAME', 'pg_ha_failover'
LANGUAGE C VOLATILE;

-- Maintenance mode: nothing fails over automatically while paused.
CREATE FUNCTION ha_pause() RETURNS text
LANGUAGE sql VOLATILE
AS $$ SELECT @extschema@._ha_request('pause', '{}', 10000) $$;

CREATE FUNCTION ha_resume() RETURNS text
LANGUAGE sql VOLATILE
AS $$ SELECT @extschema@._ha_request('resume', '{}', 10000) $$;

CREATE FUNCTION ha_reload() RETURNS text
LANGUAGE sql VOLATILE
AS $$ SELECT @extschema@._ha_request('reload', '{}', 10000) $$;

CREATE FUNCTION ha_restart(member text) RETURNS text
LANGUAGE sql VOLATILE STRICT
AS $$ SELECT @extschema@._ha_request('restart', pg_catalog.jsonb_build_object('member', member)::text, 15000) $$;

CREATE FUNCTION ha_reinitialize(member text) RETURNS text
LANGUAGE sql VOLATILE STRICT
AS $$ SELECT @extschema@._ha_request('reinitialize', pg_catalog.jsonb_build_object('member', member)::text, 15000) $$;

-- The dynamic configuration (the `config` znode) as the worker last read it.
CREATE FUNCTION ha_config() RETURNS jsonb
LANGUAGE sql STABLE
AS $$ SELECT @extschema@.ha_status_json() -> 'config' $$;

-- Merges `changes` into the dynamic configuration (RFC 7386: null removes a
-- key) after validating the result; returns the new configuration.
CREATE FUNCTION ha_set_config(changes jsonb) RETURNS jsonb
LANGUAGE sql VOLATILE STRICT
AS $$ SELECT @extschema@._ha_request('set_config', changes::text, 15000)::jsonb $$;

-- Promotions the cluster went through (the `history` znode).
CREATE FUNCTION ha_history(
    OUT timeline integer, OUT lsn pg_lsn, OUT reason text, OUT "timestamp" timestamptz, OUT new_leader text)
RETURNS SETOF record
LANGUAGE sql STABLE
AS $$
    SELECT h.timeline, h.lsn::pg_lsn, h.reason, h."timestamp"::timestamptz, h.new_leader
    FROM jsonb_to_recordset(@extschema@.ha_status_json() -> 'history')
         AS h(timeline integer, lsn text, reason text, "timestamp" text, new_leader text)
    ORDER BY h.timeline
$$;

REVOKE ALL ON FUNCTION _ha_request(text, text, integer), ha_switchover(text, timestamptz), ha_failover(text),
    ha_pause(), ha_resume(), ha_reload(), ha_restart(text), ha_reinitialize(text), ha_set_config(jsonb),
    ha_config(), ha_history() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _ha_request(text, text, integer), ha_switchover(text, timestamptz), ha_failover(text),
    ha_pause(), ha_resume(), ha_reload(), ha_restart(text), ha_reinitialize(text), ha_set_config(jsonb)
    TO pgha_admin;
GRANT EXECUTE ON FUNCTION ha_config(), ha_history() TO pg_monitor, pgha_admin;
-- The control functions read the status too.
GRANT EXECUTE ON FUNCTION ha_status_text(), ha_status_json(), ha_status(), ha_node(), ha_lease_remaining_ms() TO pgha_admin;
