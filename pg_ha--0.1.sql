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
    OUT tags jsonb, OUT api_url text, OUT conn_url text)
RETURNS record
LANGUAGE sql STABLE
AS $$
    SELECT n.name, n.scope, n.role, n.state, n.is_leader, n.accepts_writes, nullif(n.leader, ''),
           n.timeline, n.lsn::pg_lsn, n.paused, n.dcs_ok, @extschema@.ha_lease_remaining_ms(), n.message,
           n.tags, n.api_url, n.conn_url
    FROM jsonb_to_record(@extschema@.ha_status_json() -> 'node')
         AS n(name text, scope text, role text, state text, is_leader boolean, accepts_writes boolean,
              leader text, timeline integer, lsn text, paused boolean, dcs_ok boolean,
              message text, tags jsonb, api_url text, conn_url text)
$$;

-- Status is for monitoring roles; nothing here is for PUBLIC.
REVOKE ALL ON FUNCTION ha_status_text(), ha_status_json(), ha_status(), ha_node(), ha_lease_remaining_ms() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ha_status_text(), ha_status_json(), ha_status(), ha_node(), ha_lease_remaining_ms() TO pg_monitor;
