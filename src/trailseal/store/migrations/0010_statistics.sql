-- 0010 statistics: what the planner knows of the columns a question combines.
--
-- A page of events is the first rows of the matches in (occurred_at, seq) order. The
-- planner either walks an index in that order and stops at a page, or reads every match
-- and sorts them; it chooses by its estimate of how many matches there are. Over
-- audit data that estimate multiplies correlated conditions as if they were independent:
-- a target is always of one type, and a setting is changed only by setting.* actions, so
-- "target_type = 'setting' AND target_id = 'billing.plan' AND action ^@ 'setting.'"
-- came to 6 rows where 3,983 matched, and the plan read and sorted all of them.
-- Extended statistics (functional dependencies and the most common combinations) on
-- these columns correct it. The planner uses a partition's own statistics, so every
-- partition gets them: the ones that exist here, and each new one as it is created.

SET LOCAL ROLE trailseal_owner;

-- Idempotent; ANALYZE (autovacuum's, or the caller's) fills them in.
CREATE FUNCTION trailseal.add_partition_statistics(p_part text) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    EXECUTE format('CREATE STATISTICS IF NOT EXISTS trailseal.%I (dependencies, mcv)
                    ON target_type, target_id, action FROM trailseal.%I',
                   p_part || '_targets', p_part);
END $$;
REVOKE ALL ON FUNCTION trailseal.add_partition_statistics(text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION trailseal.create_events_partition(p_at timestamptz) RETURNS text
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
        PERFORM trailseal.add_partition_statistics(part);
    END IF;
    RETURN part;
END $$;

-- A partition that no longer receives events is never analyzed again by autovacuum, so
-- the existing ones are analyzed here (ANALYZE reads a sample, not the whole table).
DO $$
DECLARE part text;
BEGIN
    FOR part IN
        SELECT c.relname FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'trailseal.events'::regclass ORDER BY c.relname
    LOOP
        PERFORM trailseal.add_partition_statistics(part);
        EXECUTE format('ANALYZE trailseal.%I', part);
    END LOOP;
END $$;
