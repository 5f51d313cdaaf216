-- 0005 reading: an index that leads with the tenant for every filter of GET /v1/events.
--
-- The reader runs under row-level security, and PostgreSQL then turns a condition into
-- an index condition only if its operator is LEAKPROOF (it may not see other tenants'
-- rows before the policy has dropped them). Comparisons, = and ^@ (starts with) are;
-- LIKE, ILIKE and inet <<= are not. So the queries (reading/query.py) say:
--   * action prefix:  action ^@ 'user.'  (a btree range, as action has the C collation);
--   * ip in network:  ip >= network AND ip <= last address, then ip <<= network;
--   * q, text in ids and names:  <column> OPERATOR(trailseal_ext.~~*) '%text%', an ILIKE
--     whose function is declared LEAKPROOF, which a GIN trigram index serves (below).
--
-- Indexes:
--   * actor_type, outcome, service and ip each get (tenant, <column>, occurred_at, seq),
--     like those of 0001 and 0004, so one filter plus either order is one index scan and
--     keyset pages resume exactly; service and ip are partial (many events carry
--     neither), and "column = value" or "ip >= ..." implies not null;
--   * without an action filter, reads leave out the meta-audit's own audit.* events; a
--     partial index on (tenant, occurred_at, seq) without them keeps "newest first" one
--     index scan however many reads the log records;
--   * events_names: GIN over actor_id, actor_name, target_id and target_name with
--     pg_trgm's trigram operator class around the leakproof ILIKE; a search is a bitmap
--     OR of the four columns. It is the one index that does not lead with the tenant: a
--     GIN index has no column order, and the tenant as one more key (btree_gin) would
--     match the whole tenant, which the planner rightly prices above a scan. The rows
--     the trigrams find are checked for the tenant (and by the policy) on the table.
--
-- Privileges. pg_trgm is a contrib extension, trusted since PostgreSQL 13, so any
-- migrating role that may create in this database installs it; it goes into a schema
-- of its own (trailseal's holds only what trailseal_owner owns), unless an
-- administrator installed it already. Declaring a function LEAKPROOF and creating an
-- operator class need a superuser: migrating as one gets the trigram index; migrating
-- as a non-superuser (see docs/database.md) gets the same operator without LEAKPROOF and
-- no trigram index, so q still answers, by reading the tenant's events.
--
-- Why ILIKE may be declared leakproof here: texticlike's result is its only output and
-- its only error ("LIKE pattern must not end with escape character") depends on the
-- pattern alone, which trailseal always passes as an escaped constant; EXECUTE is
-- granted to the reader only.

CREATE SCHEMA IF NOT EXISTS trailseal_ext;
CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA trailseal_ext;

DO $$
DECLARE
    trgm  name := (SELECT n.nspname FROM pg_extension e
                   JOIN pg_namespace n ON n.oid = e.extnamespace
                   WHERE e.extname = 'pg_trgm');
    super boolean := (SELECT rolsuper FROM pg_roles WHERE rolname = current_user);
BEGIN
    IF super THEN
        CREATE FUNCTION trailseal_ext.names_ilike(text, text) RETURNS boolean
            LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF AS 'texticlike';
    ELSE
        CREATE FUNCTION trailseal_ext.names_ilike(text, text) RETURNS boolean
            LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS 'SELECT $1 ILIKE $2';
    END IF;
    CREATE OPERATOR trailseal_ext.~~* (
        FUNCTION = trailseal_ext.names_ilike, LEFTARG = text, RIGHTARG = text,
        RESTRICT = iclikesel, JOIN = iclikejoinsel
    );
    IF super THEN
        -- pg_trgm's own GIN support functions; strategy 4 is its ILIKE.
        EXECUTE format(
            'CREATE OPERATOR CLASS trailseal_ext.names_trgm_ops FOR TYPE text USING gin AS'
            '  OPERATOR 4 trailseal_ext.~~* (text, text),'
            '  FUNCTION 1 btint4cmp (int4, int4),'
            '  FUNCTION 2 %1$I.gin_extract_value_trgm (text, internal),'
            '  FUNCTION 3 %1$I.gin_extract_query_trgm'
            '             (text, internal, int2, internal, internal, internal, internal),'
            '  FUNCTION 4 %1$I.gin_trgm_consistent'
            '             (internal, int2, text, int4, internal, internal, internal, internal),'
            '  FUNCTION 6 %1$I.gin_trgm_triconsistent'
            '             (internal, int2, text, int4, internal, internal, internal),'
            '  STORAGE int4', trgm);
        CREATE INDEX events_names ON trailseal.events USING gin (
            actor_id trailseal_ext.names_trgm_ops,
            actor_name trailseal_ext.names_trgm_ops,
            target_id trailseal_ext.names_trgm_ops,
            target_name trailseal_ext.names_trgm_ops
        );
    END IF;
END $$;

-- The owner clones events_names onto each new month partition; the reader names the
-- operator in its queries.
GRANT USAGE ON SCHEMA trailseal_ext TO trailseal_owner, trailseal_reader;
REVOKE ALL ON FUNCTION trailseal_ext.names_ilike(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION trailseal_ext.names_ilike(text, text) TO trailseal_reader;

SET LOCAL ROLE trailseal_owner;

-- On the partitioned log, each partition gets its own copy (and so do later ones).
CREATE INDEX events_actor_type ON trailseal.events (tenant, actor_type, occurred_at, seq);
CREATE INDEX events_outcome ON trailseal.events (tenant, outcome, occurred_at, seq);
CREATE INDEX events_service ON trailseal.events
    (tenant, service, occurred_at, seq) WHERE service IS NOT NULL;
CREATE INDEX events_ip ON trailseal.events
    (tenant, ip, occurred_at, seq) WHERE ip IS NOT NULL;
-- The predicate is the very text the query adds (reading/query.py, conditions()).
CREATE INDEX events_time_recorded ON trailseal.events
    (tenant, occurred_at, seq) WHERE action NOT LIKE 'audit.%';
