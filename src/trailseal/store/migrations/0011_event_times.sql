-- 0011 event times: an event is never more than a day ahead of its receipt.
--
-- Ingest has always refused an occurred_at more than a day after the time the event was
-- received (model.FUTURE_TOLERANCE). The database now keeps that rule too, on the inbox
-- and on the log, so a reader may rely on it: the log is partitioned by received_at, and
-- "occurred_at >= since" then implies "received_at >= since - 1 day", which lets a
-- question with `since` skip every partition received before that (reading/query.py).
-- A rule the readers rely on must hold for every row, so it is checked here, not only by
-- the code that writes.

-- Counted as the migrating role, before taking the owner's: the owner is held to
-- row-level security and would see no tenant's rows.
DO $$
DECLARE
    ahead bigint;
BEGIN
    SELECT count(*) INTO ahead FROM trailseal.events
    WHERE occurred_at > received_at + interval '1 day';
    IF ahead > 0 THEN
        RAISE EXCEPTION 'trailseal.events holds % event(s) whose occurred_at is more than a '
            'day after their received_at; ingest never accepted such an event, so they '
            'were written around it. Find them with: SELECT tenant, seq FROM '
            'trailseal.events WHERE occurred_at > received_at + interval ''1 day''', ahead;
    END IF;
END $$;

SET LOCAL ROLE trailseal_owner;

ALTER TABLE trailseal.inbox
    ADD CONSTRAINT inbox_occurred_by_received
        CHECK (occurred_at <= received_at + interval '1 day');
ALTER TABLE trailseal.events
    ADD CONSTRAINT events_occurred_by_received
        CHECK (occurred_at <= received_at + interval '1 day');
