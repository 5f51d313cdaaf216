-- 0007 archive and retention: sealed segments, tier moves, retention policies, legal
-- holds, the archiver role, and the one door through which a partition of the log is
-- dropped.
--
--   * segments records every sealed segment of a tenant's log: a contiguous seq range
--     (the first starts at 0, each next one right after the last; a trigger refuses
--     anything else), the SHA-256 of its Parquet file, the Merkle root of its leaves, the
--     checkpoint it falls under and its signed manifest. Every event of a segment was
--     received in one month (a CHECK), so one month's partition holds whole segments and
--     dropping it never leaves half of one behind. Append-only: a segment is never
--     rewritten;
--   * segment_events records what happened to a segment afterwards, once each: verified
--     (the stored file was read back and matched the log), cold (moved to the cold
--     storage class), expired (deleted from the store when its retention ended). A new
--     row, never an UPDATE, so the history of every segment stays readable;
--   * retention_policies keeps each tenant's policy as a history (the newest row
--     applies): a preset (soc2, hipaa, finance) or custom, and the days kept hot in
--     PostgreSQL, warm in the store's standard class, and in all before deletion;
--   * legal_holds and legal_hold_releases: a hold on a whole tenant or one target, and
--     its release, both append-only (a release is a row of its own, never an edit);
--   * trailseal_archiver reads the log and writes segments and their events; it drops a
--     month's partition only through trailseal.drop_events_partition, which runs as the
--     owner and checks, for every tenant with events in that month, that each of them is
--     in a verified segment, that the month is past the tenant's hot days, and that no
--     active hold covers it. It trusts its caller for the time only (so retention can be
--     tested with a clock moved forward): an early drop can bring forward when bodies
--     leave PostgreSQL, never lose one, since each is in a verified segment by then.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'trailseal_archiver') THEN
        CREATE ROLE trailseal_archiver NOLOGIN;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'trailseal_archiver'
               AND (rolsuper OR rolbypassrls
                    OR pg_has_role(rolname, 'trailseal_owner', 'MEMBER'))) THEN
        RAISE EXCEPTION 'trailseal: the existing role trailseal_archiver is unsafe'
            USING DETAIL = 'trailseal roles must not be SUPERUSER or BYPASSRLS, and no '
                           'runtime role may be a member of trailseal_owner.';
    END IF;
END $$;

GRANT USAGE ON SCHEMA trailseal TO trailseal_archiver;

SET LOCAL ROLE trailseal_owner;

-- The archiver serves every tenant, as the sequencer does: it lists them all.
CREATE POLICY tenant_archiver ON trailseal.tenants
    TO trailseal_archiver USING (true);
GRANT SELECT ON trailseal.tenants, trailseal.events, trailseal.checkpoints,
    trailseal.log_heads TO trailseal_archiver;

-- Segments ---------------------------------------------------------------------------------
CREATE TABLE trailseal.segments (
    tenant            text NOT NULL REFERENCES trailseal.tenants (name),
    first_seq         bigint NOT NULL CHECK (first_seq >= 0),
    last_seq          bigint NOT NULL,
    object_key        text NOT NULL CHECK (length(object_key) BETWEEN 1 AND 1024),
    file_sha256       bytea NOT NULL CHECK (length(file_sha256) = 32),
    file_bytes        bigint NOT NULL CHECK (file_bytes > 0),
    merkle_root       bytea NOT NULL CHECK (length(merkle_root) = 32),
    chain_before      bytea NOT NULL CHECK (length(chain_before) = 32),
    chain_last        bytea NOT NULL CHECK (length(chain_last) = 32),
    checkpoint_size   bigint NOT NULL,
    checkpoint_root   bytea NOT NULL CHECK (length(checkpoint_root) = 32),
    min_received_at   timestamptz NOT NULL,
    max_received_at   timestamptz NOT NULL,
    min_occurred_at   timestamptz NOT NULL,
    max_occurred_at   timestamptz NOT NULL,
    retain_until      timestamptz NOT NULL,
    manifest          text NOT NULL,
    created_at        timestamptz NOT NULL,
    PRIMARY KEY (tenant, first_seq),
    UNIQUE (tenant, last_seq),
    CHECK (last_seq >= first_seq),
    CHECK (checkpoint_size > last_seq),
    CHECK (min_received_at <= max_received_at AND min_occurred_at <= max_occurred_at),
    -- one month's partition holds whole segments
    CHECK (date_trunc('month', min_received_at AT TIME ZONE 'UTC')
           = date_trunc('month', max_received_at AT TIME ZONE 'UTC')),
    CHECK (retain_until > max_received_at)
);
CREATE INDEX segments_time ON trailseal.segments (tenant, min_occurred_at, max_occurred_at);
ALTER TABLE trailseal.segments ENABLE ROW LEVEL SECURITY;
ALTER TABLE trailseal.segments FORCE ROW LEVEL SECURITY;
CREATE POLICY segment_scoped ON trailseal.segments
    USING (tenant = trailseal.current_tenant())
    WITH CHECK (tenant = trailseal.current_tenant());
GRANT SELECT, INSERT ON trailseal.segments TO trailseal_archiver;
GRANT SELECT ON trailseal.segments TO trailseal_reader;
CREATE TRIGGER segments_append_only BEFORE UPDATE OR DELETE ON trailseal.segments
    FOR EACH ROW EXECUTE FUNCTION trailseal.refuse_change();
CREATE TRIGGER segments_no_truncate BEFORE TRUNCATE ON trailseal.segments
    FOR EACH STATEMENT EXECUTE FUNCTION trailseal.refuse_change();
ALTER TABLE trailseal.segments ENABLE ALWAYS TRIGGER segments_append_only;
ALTER TABLE trailseal.segments ENABLE ALWAYS TRIGGER segments_no_truncate;

-- Segments are contiguous: the first starts at 0, each next one just after the last.
CREATE FUNCTION trailseal.segment_follows() RETURNS trigger
    LANGUAGE plpgsql AS $$
DECLARE expected bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('trailseal.segments'), hashtext(NEW.tenant));
    SELECT coalesce(max(s.last_seq) + 1, 0) INTO expected
        FROM trailseal.segments s WHERE s.tenant = NEW.tenant;
    IF NEW.first_seq <> expected THEN
        RAISE EXCEPTION 'trailseal: a segment of % must start at seq %, not %',
            NEW.tenant, expected, NEW.first_seq
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER segments_contiguous BEFORE INSERT ON trailseal.segments
    FOR EACH ROW EXECUTE FUNCTION trailseal.segment_follows();
ALTER TABLE trailseal.segments ENABLE ALWAYS TRIGGER segments_contiguous;

CREATE TABLE trailseal.segment_events (
    tenant     text NOT NULL,
    first_seq  bigint NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('verified', 'cold', 'expired')),
    at         timestamptz NOT NULL,
    detail     text CHECK (length(detail) <= 2000),
    PRIMARY KEY (tenant, first_seq, kind),
    FOREIGN KEY (tenant, first_seq) REFERENCES trailseal.segments (tenant, first_seq)
);
ALTER TABLE trailseal.segment_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE trailseal.segment_events FORCE ROW LEVEL SECURITY;
CREATE POLICY segment_event_scoped ON trailseal.segment_events
    USING (tenant = trailseal.current_tenant())
    WITH CHECK (tenant = trailseal.current_tenant());
GRANT SELECT, INSERT ON trailseal.segment_events TO trailseal_archiver;
GRANT SELECT ON trailseal.segment_events TO trailseal_reader;
CREATE TRIGGER segment_events_append_only BEFORE UPDATE OR DELETE ON trailseal.segment_events
    FOR EACH ROW EXECUTE FUNCTION trailseal.refuse_change();
CREATE TRIGGER segment_events_no_truncate BEFORE TRUNCATE ON trailseal.segment_events
    FOR EACH STATEMENT EXECUTE FUNCTION trailseal.refuse_change();
ALTER TABLE trailseal.segment_events ENABLE ALWAYS TRIGGER segment_events_append_only;
ALTER TABLE trailseal.segment_events ENABLE ALWAYS TRIGGER segment_events_no_truncate;

-- Retention policies -----------------------------------------------------------------------
CREATE TABLE trailseal.retention_policies (
    tenant       text NOT NULL REFERENCES trailseal.tenants (name),
    set_at       timestamptz NOT NULL,
    preset       text NOT NULL CHECK (preset IN ('soc2', 'hipaa', 'finance', 'custom')),
    retain_days  integer NOT NULL CHECK (retain_days >= 1),
    hot_days     integer NOT NULL CHECK (hot_days >= 1 AND hot_days <= retain_days),
    warm_days    integer NOT NULL CHECK (warm_days >= hot_days),
    PRIMARY KEY (tenant, set_at)
);
ALTER TABLE trailseal.retention_policies ENABLE ROW LEVEL SECURITY;
ALTER TABLE trailseal.retention_policies FORCE ROW LEVEL SECURITY;
CREATE POLICY retention_policy_scoped ON trailseal.retention_policies
    USING (tenant = trailseal.current_tenant())
    WITH CHECK (tenant = trailseal.current_tenant());
GRANT SELECT ON trailseal.retention_policies TO trailseal_archiver, trailseal_reader;
CREATE TRIGGER retention_policies_append_only BEFORE UPDATE OR DELETE
    ON trailseal.retention_policies
    FOR EACH ROW EXECUTE FUNCTION trailseal.refuse_change();
CREATE TRIGGER retention_policies_no_truncate BEFORE TRUNCATE ON trailseal.retention_policies
    FOR EACH STATEMENT EXECUTE FUNCTION trailseal.refuse_change();
ALTER TABLE trailseal.retention_policies ENABLE ALWAYS TRIGGER retention_policies_append_only;
ALTER TABLE trailseal.retention_policies ENABLE ALWAYS TRIGGER retention_policies_no_truncate;

-- Legal holds ------------------------------------------------------------------------------
CREATE TABLE trailseal.legal_holds (
    tenant       text NOT NULL REFERENCES trailseal.tenants (name),
    id           uuid NOT NULL,
    target_type  text,
    target_id    text,
    reason       text NOT NULL CHECK (length(reason) BETWEEN 1 AND 2000),
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant, id),
    CHECK ((target_type IS NULL) = (target_id IS NULL))
);
CREATE TABLE trailseal.legal_hold_releases (
    tenant       text NOT NULL,
    hold_id      uuid NOT NULL,
    reason       text NOT NULL CHECK (length(reason) BETWEEN 1 AND 2000),
    released_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant, hold_id),
    FOREIGN KEY (tenant, hold_id) REFERENCES trailseal.legal_holds (tenant, id)
);
ALTER TABLE trailseal.legal_holds ENABLE ROW LEVEL SECURITY;
ALTER TABLE trailseal.legal_holds FORCE ROW LEVEL SECURITY;
CREATE POLICY legal_hold_scoped ON trailseal.legal_holds
    USING (tenant = trailseal.current_tenant())
    WITH CHECK (tenant = trailseal.current_tenant());
ALTER TABLE trailseal.legal_hold_releases ENABLE ROW LEVEL SECURITY;
ALTER TABLE trailseal.legal_hold_releases FORCE ROW LEVEL SECURITY;
CREATE POLICY legal_hold_release_scoped ON trailseal.legal_hold_releases
    USING (tenant = trailseal.current_tenant())
    WITH CHECK (tenant = trailseal.current_tenant());
GRANT SELECT ON trailseal.legal_holds, trailseal.legal_hold_releases
    TO trailseal_archiver, trailseal_reader;
CREATE TRIGGER legal_holds_append_only BEFORE UPDATE OR DELETE ON trailseal.legal_holds
    FOR EACH ROW EXECUTE FUNCTION trailseal.refuse_change();
CREATE TRIGGER legal_holds_no_truncate BEFORE TRUNCATE ON trailseal.legal_holds
    FOR EACH STATEMENT EXECUTE FUNCTION trailseal.refuse_change();
ALTER TABLE trailseal.legal_holds ENABLE ALWAYS TRIGGER legal_holds_append_only;
ALTER TABLE trailseal.legal_holds ENABLE ALWAYS TRIGGER legal_holds_no_truncate;
CREATE TRIGGER legal_hold_releases_append_only BEFORE UPDATE OR DELETE
    ON trailseal.legal_hold_releases
    FOR EACH ROW EXECUTE FUNCTION trailseal.refuse_change();
CREATE TRIGGER legal_hold_releases_no_truncate BEFORE TRUNCATE
    ON trailseal.legal_hold_releases
    FOR EACH STATEMENT EXECUTE FUNCTION trailseal.refuse_change();
ALTER TABLE trailseal.legal_hold_releases ENABLE ALWAYS TRIGGER legal_hold_releases_append_only;
ALTER TABLE trailseal.legal_hold_releases ENABLE ALWAYS TRIGGER legal_hold_releases_no_truncate;

-- Dropping a month of the log --------------------------------------------------------------
-- Drops the partition of the month holding p_month, as the owner, only if for every tenant
-- with events in it: each event is in a verified segment, the whole month is older than
-- p_now minus the tenant's hot days (90 without a policy), and no active hold (on the
-- tenant, or on a target with an event in that month) covers it. Otherwise it raises,
-- saying why. Each tenant is looked at under its own setting, so row-level security
-- holds here too.
CREATE FUNCTION trailseal.drop_events_partition(p_month timestamptz, p_now timestamptz)
    RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    lo    timestamptz := date_trunc('month', p_month AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    hi    timestamptz := lo + interval '1 month';
    part  text := 'events_' || to_char(lo AT TIME ZONE 'UTC', 'YYYY_MM');
    t     text;
    hot   integer;
BEGIN
    IF to_regclass('trailseal.' || part) IS NULL THEN
        RAISE EXCEPTION 'trailseal: no partition % to drop', part
            USING ERRCODE = 'undefined_table';
    END IF;
    FOR t IN SELECT name FROM trailseal.tenants ORDER BY name LOOP
        PERFORM set_config('trailseal.tenant', t, true);
        CONTINUE WHEN NOT EXISTS (
            SELECT 1 FROM trailseal.events e
            WHERE e.tenant = t AND e.received_at >= lo AND e.received_at < hi);
        SELECT p.hot_days INTO hot FROM trailseal.retention_policies p
            WHERE p.tenant = t ORDER BY p.set_at DESC LIMIT 1;
        IF hi > p_now - make_interval(days => coalesce(hot, 90)) THEN
            RAISE EXCEPTION 'trailseal: % is within the % hot days of tenant %',
                part, coalesce(hot, 90), t USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF EXISTS (
            SELECT 1 FROM trailseal.events e
            WHERE e.tenant = t AND e.received_at >= lo AND e.received_at < hi
              AND NOT EXISTS (
                  SELECT 1 FROM trailseal.segments s
                  JOIN trailseal.segment_events v
                    ON v.tenant = s.tenant AND v.first_seq = s.first_seq
                   AND v.kind = 'verified'
                  WHERE s.tenant = t AND e.seq BETWEEN s.first_seq AND s.last_seq)) THEN
            RAISE EXCEPTION 'trailseal: % holds events of tenant % not in a verified segment',
                part, t USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF EXISTS (
            SELECT 1 FROM trailseal.legal_holds h
            WHERE h.tenant = t
              AND NOT EXISTS (SELECT 1 FROM trailseal.legal_hold_releases r
                              WHERE r.tenant = t AND r.hold_id = h.id)
              AND (h.target_type IS NULL OR EXISTS (
                  SELECT 1 FROM trailseal.events e
                  WHERE e.tenant = t AND e.received_at >= lo AND e.received_at < hi
                    AND e.target_type = h.target_type AND e.target_id = h.target_id))) THEN
            RAISE EXCEPTION 'trailseal: % holds events of tenant % under a legal hold',
                part, t USING ERRCODE = 'insufficient_privilege';
        END IF;
    END LOOP;
    PERFORM set_config('trailseal.tenant', '', true);
    EXECUTE format('DROP TABLE trailseal.%I', part);
    RETURN part;
END $$;
REVOKE ALL ON FUNCTION trailseal.drop_events_partition(timestamptz, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION trailseal.drop_events_partition(timestamptz, timestamptz)
    TO trailseal_archiver;
