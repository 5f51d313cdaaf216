-- 0001 foundation: roles, schema, tenants, API keys, inbox, the event log.
--
-- Invariants live here, where a reviewer can read them:
--   * events and event_ids are append-only: UPDATE, DELETE and TRUNCATE are refused by
--     triggers that fire for every role, the owner and superusers included (ENABLE ALWAYS,
--     so session_replication_role = replica does not switch them off either); log_heads
--     rows are moved forward but never deleted, by triggers of the same kind;
--   * every tenant table has ROW LEVEL SECURITY enabled and FORCEd; the tenant is the
--     transaction-local setting trailseal.tenant, and a missing setting matches no row;
--   * each runtime role holds only the privileges its job needs:
--       trailseal_ingest     INSERT into inbox and event_ids;
--       trailseal_sequencer  moves inbox rows to events, keeps log_heads;
--       trailseal_reader     SELECT, under RLS.
--   * a leaf hash is SHA-256(0x00 || canonical bytes), checked by the database itself.

DO $$
DECLARE r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['trailseal_owner', 'trailseal_ingest',
                             'trailseal_sequencer', 'trailseal_reader'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
    -- Roles are shared by the whole server, so they may predate this database. Take them
    -- only as safe as the ones created above: no role that skips row-level security, no
    -- owner that logs in, no runtime role that can become the owner.
    FOR r IN SELECT rolname FROM pg_roles
             WHERE rolname IN ('trailseal_owner', 'trailseal_ingest',
                               'trailseal_sequencer', 'trailseal_reader')
               AND (rolsuper OR rolbypassrls
                    OR (rolname = 'trailseal_owner' AND rolcanlogin)
                    OR (rolname <> 'trailseal_owner'
                        AND pg_has_role(rolname, 'trailseal_owner', 'MEMBER')))
    LOOP
        RAISE EXCEPTION 'trailseal: the existing role % is unsafe', r
            USING DETAIL = 'trailseal roles must not be SUPERUSER or BYPASSRLS, '
                           'trailseal_owner must be NOLOGIN, and no runtime role may be '
                           'a member of trailseal_owner.';
    END LOOP;
END $$;

CREATE SCHEMA trailseal AUTHORIZATION trailseal_owner;
GRANT USAGE ON SCHEMA trailseal
    TO trailseal_ingest, trailseal_sequencer, trailseal_reader;

-- Everything below is created by, and so owned by, the owner role.
SET LOCAL ROLE trailseal_owner;

CREATE TABLE trailseal.schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

-- The tenant of the current transaction; NULL when it set none.
CREATE FUNCTION trailseal.current_tenant() RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT nullif(current_setting('trailseal.tenant', true), '') $$;

CREATE FUNCTION trailseal.refuse_change() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'trailseal: % on %.% is refused: the audit log is append-only',
        TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END $$;

-- Tenants --------------------------------------------------------------------------------
CREATE TABLE trailseal.tenants (
    name        text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    created_at  timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE trailseal.tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE trailseal.tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scoped ON trailseal.tenants
    USING (name = trailseal.current_tenant());
-- The owner administers tenants; the sequencer serves every tenant.
CREATE POLICY tenant_catalog ON trailseal.tenants
    TO trailseal_owner, trailseal_sequencer USING (true) WITH CHECK (true);
GRANT SELECT ON trailseal.tenants TO trailseal_sequencer, trailseal_reader;

-- API keys: only the SHA-256 of each token is stored ---------------------------------------
CREATE TABLE trailseal.api_keys (
    tenant      text NOT NULL REFERENCES trailseal.tenants (name),
    id          uuid NOT NULL,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    token_hash  bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    token_hint  text NOT NULL,
    scopes      text[] NOT NULL CHECK (
                    cardinality(scopes) > 0
                    AND scopes <@ ARRAY['ingest', 'read', 'export', 'admin']::text[]),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    PRIMARY KEY (tenant, id)
);
ALTER TABLE trailseal.api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE trailseal.api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY api_key_scoped ON trailseal.api_keys
    USING (tenant = trailseal.current_tenant());
CREATE POLICY api_key_catalog ON trailseal.api_keys
    TO trailseal_owner USING (true) WITH CHECK (true);
GRANT SELECT ON trailseal.api_keys TO trailseal_reader;

-- Authentication happens before the tenant is known: this function is the one door
-- through RLS for it, and it answers only for the holder of a live token.
CREATE FUNCTION trailseal.authenticate(p_token_hash bytea)
    RETURNS TABLE (tenant text, key_id uuid, scopes text[])
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
        SELECT k.tenant, k.id, k.scopes FROM trailseal.api_keys k
        WHERE k.token_hash = p_token_hash AND k.revoked_at IS NULL
    $$;
REVOKE ALL ON FUNCTION trailseal.authenticate(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION trailseal.authenticate(bytea)
    TO trailseal_ingest, trailseal_reader;

-- Event ids: dedupe across the inbox and the log, forever, per tenant ----------------------
CREATE TABLE trailseal.event_ids (
    tenant       text NOT NULL,
    id           uuid NOT NULL,
    received_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant, id)
);
ALTER TABLE trailseal.event_ids ENABLE ROW LEVEL SECURITY;
ALTER TABLE trailseal.event_ids FORCE ROW LEVEL SECURITY;
CREATE POLICY event_id_scoped ON trailseal.event_ids
    USING (tenant = trailseal.current_tenant())
    WITH CHECK (tenant = trailseal.current_tenant());
GRANT INSERT, SELECT (id) ON trailseal.event_ids TO trailseal_ingest;  -- SELECT for RETURNING
GRANT SELECT ON trailseal.event_ids TO trailseal_reader;
CREATE TRIGGER event_ids_append_only BEFORE UPDATE OR DELETE ON trailseal.event_ids
    FOR EACH ROW EXECUTE FUNCTION trailseal.refuse_change();
CREATE TRIGGER event_ids_no_truncate BEFORE TRUNCATE ON trailseal.event_ids
    FOR EACH STATEMENT EXECUTE FUNCTION trailseal.refuse_change();
ALTER TABLE trailseal.event_ids ENABLE ALWAYS TRIGGER event_ids_append_only;
ALTER TABLE trailseal.event_ids ENABLE ALWAYS TRIGGER event_ids_no_truncate;

-- Inbox: accepted, not yet sequenced ----------------------------------------------------------
-- Ingest fills the query columns, the canonical bytes and their leaf hash, so the
-- sequencer only orders, chains and moves rows without shipping bodies to and fro.
CREATE TABLE trailseal.inbox (
    tenant          text NOT NULL,
    pos             bigint GENERATED ALWAYS AS IDENTITY,
    id              uuid NOT NULL,
    occurred_at     timestamptz NOT NULL,
    received_at     timestamptz NOT NULL,
    actor_type      text NOT NULL,
    actor_id        text NOT NULL,
    actor_name      text,
    action          text COLLATE "C" NOT NULL,
    target_type     text NOT NULL,
    target_id       text NOT NULL,
    target_name     text,
    outcome         text NOT NULL,
    ip              inet,
    request_id      text,
    correlation_id  text,
    service         text,
    canonical       bytea NOT NULL,
    leaf_hash       bytea NOT NULL,
    PRIMARY KEY (tenant, pos),
    UNIQUE (tenant, id),
    CHECK (leaf_hash = sha256('\x00'::bytea || canonical))
);
ALTER TABLE trailseal.inbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE trailseal.inbox FORCE ROW LEVEL SECURITY;
CREATE POLICY inbox_scoped ON trailseal.inbox
    USING (tenant = trailseal.current_tenant())
    WITH CHECK (tenant = trailseal.current_tenant());
GRANT INSERT ON trailseal.inbox TO trailseal_ingest;
GRANT SELECT, DELETE ON trailseal.inbox TO trailseal_sequencer;

-- Events: the log ---------------------------------------------------------------------------
-- Partitioned by month of received_at (server time, close to seq order), so retention
-- drops whole partitions once their segments are archived.
CREATE TABLE trailseal.events (
    tenant          text NOT NULL,
    seq             bigint NOT NULL CHECK (seq >= 0),
    id              uuid NOT NULL,
    occurred_at     timestamptz NOT NULL,
    received_at     timestamptz NOT NULL,
    actor_type      text NOT NULL,
    actor_id        text NOT NULL,
    actor_name      text,
    action          text COLLATE "C" NOT NULL,
    target_type     text NOT NULL,
    target_id       text NOT NULL,
    target_name     text,
    outcome         text NOT NULL,
    ip              inet,
    request_id      text,
    correlation_id  text,
    service         text,
    canonical       bytea NOT NULL,
    leaf_hash       bytea NOT NULL,
    chain_hash      bytea NOT NULL CHECK (length(chain_hash) = 32),
    CHECK (leaf_hash = sha256('\x00'::bytea || canonical))
) PARTITION BY RANGE (received_at);

-- Each index leads with the tenant and ends with seq, so a filter plus newest-first
-- order is one index scan and keyset pages resume exactly.
CREATE INDEX events_target ON trailseal.events
    (tenant, target_type, target_id, occurred_at, seq);
CREATE INDEX events_actor ON trailseal.events (tenant, actor_id, occurred_at, seq);
CREATE INDEX events_action ON trailseal.events (tenant, action, occurred_at, seq);
CREATE INDEX events_seq ON trailseal.events (tenant, seq);
CREATE INDEX events_time ON trailseal.events (tenant, occurred_at, seq);
CREATE INDEX events_id ON trailseal.events (tenant, id);
CREATE INDEX events_received ON trailseal.events USING brin (received_at);

ALTER TABLE trailseal.events ENABLE ROW LEVEL SECURITY;
ALTER TABLE trailseal.events FORCE ROW LEVEL SECURITY;
CREATE POLICY event_scoped ON trailseal.events
    USING (tenant = trailseal.current_tenant())
    WITH CHECK (tenant = trailseal.current_tenant());
GRANT INSERT, SELECT ON trailseal.events TO trailseal_sequencer;
GRANT SELECT ON trailseal.events TO trailseal_reader;

-- Row triggers are cloned onto every partition; the TRUNCATE trigger is added to each
-- partition by trailseal.create_events_partition, because statement triggers are not.
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON trailseal.events
    FOR EACH ROW EXECUTE FUNCTION trailseal.refuse_change();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON trailseal.events
    FOR EACH STATEMENT EXECUTE FUNCTION trailseal.refuse_change();
ALTER TABLE trailseal.events ENABLE ALWAYS TRIGGER events_append_only;
ALTER TABLE trailseal.events ENABLE ALWAYS TRIGGER events_no_truncate;

-- Creates the month partition holding p_at, if missing. Runs as the owner, so the
-- sequencer needs no DDL rights; serialised so concurrent callers do not collide.
CREATE FUNCTION trailseal.create_events_partition(p_at timestamptz) RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    lo   timestamptz := date_trunc('month', p_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    hi   timestamptz := lo + interval '1 month';
    part text := 'events_' || to_char(lo AT TIME ZONE 'UTC', 'YYYY_MM');
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('trailseal.create_events_partition'));
    IF to_regclass('trailseal.' || part) IS NULL THEN
        EXECUTE format('CREATE TABLE trailseal.%I PARTITION OF trailseal.events
                        FOR VALUES FROM (%L) TO (%L)', part, lo, hi);
        EXECUTE format('CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON trailseal.%I
                        FOR EACH STATEMENT EXECUTE FUNCTION trailseal.refuse_change()', part);
        EXECUTE format('ALTER TABLE trailseal.%I ENABLE ALWAYS TRIGGER events_no_truncate',
                       part);
        EXECUTE format('ALTER TABLE trailseal.%I ENABLE ALWAYS TRIGGER events_append_only',
                       part);
        -- Reached only through the parent, whose policy applies; the partition itself
        -- admits nobody directly.
        EXECUTE format('ALTER TABLE trailseal.%I ENABLE ROW LEVEL SECURITY', part);
        EXECUTE format('ALTER TABLE trailseal.%I FORCE ROW LEVEL SECURITY', part);
    END IF;
    RETURN part;
END $$;
REVOKE ALL ON FUNCTION trailseal.create_events_partition(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION trailseal.create_events_partition(timestamptz)
    TO trailseal_sequencer;

-- The head of each tenant's log: its size and latest chain hash. The sequencer locks the
-- row for the length of a batch, so one transaction at a time extends a tenant's log.
CREATE TABLE trailseal.log_heads (
    tenant      text PRIMARY KEY,
    size        bigint NOT NULL CHECK (size >= 0),
    chain_hash  bytea NOT NULL CHECK (length(chain_hash) = 32),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE trailseal.log_heads ENABLE ROW LEVEL SECURITY;
ALTER TABLE trailseal.log_heads FORCE ROW LEVEL SECURITY;
CREATE POLICY log_head_scoped ON trailseal.log_heads
    USING (tenant = trailseal.current_tenant())
    WITH CHECK (tenant = trailseal.current_tenant());
GRANT SELECT, INSERT, UPDATE ON trailseal.log_heads TO trailseal_sequencer;
GRANT SELECT ON trailseal.log_heads TO trailseal_reader;
CREATE TRIGGER log_heads_no_delete BEFORE DELETE ON trailseal.log_heads
    FOR EACH ROW EXECUTE FUNCTION trailseal.refuse_change();
CREATE TRIGGER log_heads_no_truncate BEFORE TRUNCATE ON trailseal.log_heads
    FOR EACH STATEMENT EXECUTE FUNCTION trailseal.refuse_change();
-- ALWAYS, as for the log itself: session_replication_role = replica must not let a head
-- be deleted (and a tenant's log restarted at seq 0).
ALTER TABLE trailseal.log_heads ENABLE ALWAYS TRIGGER log_heads_no_delete;
ALTER TABLE trailseal.log_heads ENABLE ALWAYS TRIGGER log_heads_no_truncate;

-- Tenants with events waiting in the inbox. Probes each tenant under its own setting,
-- so the inbox's policy holds even here.
CREATE FUNCTION trailseal.pending_tenants() RETURNS SETOF text
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE t text;
BEGIN
    FOR t IN SELECT name FROM trailseal.tenants ORDER BY name LOOP
        PERFORM set_config('trailseal.tenant', t, true);
        IF EXISTS (SELECT 1 FROM trailseal.inbox i WHERE i.tenant = t) THEN
            RETURN NEXT t;
        END IF;
    END LOOP;
    PERFORM set_config('trailseal.tenant', '', true);
END $$;
REVOKE ALL ON FUNCTION trailseal.pending_tenants() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION trailseal.pending_tenants() TO trailseal_sequencer;

SELECT trailseal.create_events_partition(now());
SELECT trailseal.create_events_partition(now() + interval '1 month');
