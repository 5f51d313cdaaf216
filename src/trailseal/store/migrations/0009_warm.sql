-- 0009 warm segments: recorded when their partition is dropped.
--
-- A segment is warm once its month's partition of trailseal.events is gone. Reads found
-- that out segment by segment (a catalog lookup for each of the tenant's sealed
-- segments, on every page of every query), a cost that grew with the log. Now the drop
-- itself records it: drop_events_partition adds a 'dropped' event for every segment of
-- the month, in the transaction that drops the partition, and reads look up those alone
-- through a partial index. Segments whose partition an earlier version dropped get
-- theirs here.

SET LOCAL ROLE trailseal_owner;

ALTER TABLE trailseal.segment_events DROP CONSTRAINT segment_events_kind_check;
ALTER TABLE trailseal.segment_events ADD CONSTRAINT segment_events_kind_check
    CHECK (kind IN ('verified', 'cold', 'expired', 'dropped'));
CREATE INDEX segment_events_dropped ON trailseal.segment_events (tenant, first_seq)
    WHERE kind = 'dropped';

-- The checks and the DROP stay as 0007 wrote them, callable only from the new function.
ALTER FUNCTION trailseal.drop_events_partition(timestamptz, timestamptz)
    RENAME TO drop_events_partition_checked;
REVOKE ALL ON FUNCTION trailseal.drop_events_partition_checked(timestamptz, timestamptz)
    FROM PUBLIC, trailseal_archiver;

-- Each tenant under its own setting, so the table's policy holds here too. Only the
-- owner runs it (from drop_events_partition, which runs as the owner).
CREATE FUNCTION trailseal.mark_dropped(p_month timestamptz, p_at timestamptz)
    RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    lo  timestamptz := date_trunc('month', p_month AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    t   text;
BEGIN
    FOR t IN SELECT name FROM trailseal.tenants ORDER BY name LOOP
        PERFORM set_config('trailseal.tenant', t, true);
        INSERT INTO trailseal.segment_events (tenant, first_seq, kind, at)
        SELECT s.tenant, s.first_seq, 'dropped', p_at FROM trailseal.segments s
        WHERE s.tenant = t AND s.min_received_at >= lo
          AND s.min_received_at < lo + interval '1 month'
        ON CONFLICT DO NOTHING;
    END LOOP;
    PERFORM set_config('trailseal.tenant', '', true);
END $$;
REVOKE ALL ON FUNCTION trailseal.mark_dropped(timestamptz, timestamptz) FROM PUBLIC;

CREATE FUNCTION trailseal.drop_events_partition(p_month timestamptz, p_now timestamptz)
    RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    part  text := trailseal.drop_events_partition_checked(p_month, p_now);
BEGIN
    PERFORM trailseal.mark_dropped(p_month, p_now);
    RETURN part;
END $$;
REVOKE ALL ON FUNCTION trailseal.drop_events_partition(timestamptz, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION trailseal.drop_events_partition(timestamptz, timestamptz)
    TO trailseal_archiver;

-- Segments whose partition an earlier version dropped.
DO $$
DECLARE
    t  text;
BEGIN
    FOR t IN SELECT name FROM trailseal.tenants ORDER BY name LOOP
        PERFORM set_config('trailseal.tenant', t, true);
        INSERT INTO trailseal.segment_events (tenant, first_seq, kind, at)
        SELECT s.tenant, s.first_seq, 'dropped', now() FROM trailseal.segments s
        WHERE s.tenant = t
          AND to_regclass('trailseal.events_'
                          || to_char(s.min_received_at AT TIME ZONE 'UTC', 'YYYY_MM')) IS NULL
        ON CONFLICT DO NOTHING;
    END LOOP;
    PERFORM set_config('trailseal.tenant', '', true);
END $$;
