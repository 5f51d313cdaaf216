-- 0003 sources: producer gap detection.
--
--   * a producer (a source) numbers its events 0, 1, 2 ... in context.source and
--     context.source_seq; inbox and events gain the two as query columns (the canonical
--     bytes hold them too, so they are hashed with the rest of the event);
--   * sources keeps, per tenant and source, what arrived of its numbers, so an event lost
--     before it reached the service shows as a gap. The sequencer updates it in the
--     transaction that moves the events; it is a summary of the log, not part of it,
--     so it is not append-only;
--   * ahead holds the numbers seen above high_water + 1 as inclusive runs flattened into
--     one sorted array [lo1, hi1, lo2, hi2, ...]; it grows with the number of gaps, never
--     with the number of events, and holds at most 5,000 runs: past that the sequencer
--     writes off the lowest gap (high_water moves over it, written_off counts it).

SET LOCAL ROLE trailseal_owner;

-- Both tables gain nullable columns without defaults: no rewrite, however large the log.
-- events is checked through the inbox it is filled from, so the CHECK stays on the inbox
-- (small by design) and a populated log is not scanned under lock to add it.
ALTER TABLE trailseal.inbox
    ADD COLUMN source text COLLATE "C",
    ADD COLUMN source_seq bigint,
    ADD CONSTRAINT inbox_source_numbered CHECK (
        (source IS NULL) = (source_seq IS NULL)
        AND source ~ '^[A-Za-z0-9._:-]{1,128}$' AND source_seq >= 0);
ALTER TABLE trailseal.events
    ADD COLUMN source text COLLATE "C",
    ADD COLUMN source_seq bigint;

CREATE TABLE trailseal.sources (
    tenant         text NOT NULL,
    source         text COLLATE "C" NOT NULL CHECK (source ~ '^[A-Za-z0-9._:-]{1,128}$'),
    -- the highest n such that 0..n all arrived (or were written off); -1 while 0 is missing
    high_water     bigint NOT NULL CHECK (high_water >= -1),
    max_seen       bigint NOT NULL CHECK (max_seen >= 0),
    ahead          bigint[] NOT NULL DEFAULT '{}' CHECK (
                       cardinality(ahead) % 2 = 0 AND cardinality(ahead) <= 10000),
    written_off    bigint NOT NULL DEFAULT 0 CHECK (written_off >= 0),
    -- numbers that arrived again under a new event id (the same id is deduped at ingest)
    repeated       bigint NOT NULL DEFAULT 0 CHECK (repeated >= 0),
    first_seen_at  timestamptz NOT NULL,
    last_seen_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant, source),
    CHECK (max_seen = coalesce(ahead[cardinality(ahead)], high_water)),
    CHECK (first_seen_at <= last_seen_at)
);
ALTER TABLE trailseal.sources ENABLE ROW LEVEL SECURITY;
ALTER TABLE trailseal.sources FORCE ROW LEVEL SECURITY;
CREATE POLICY source_scoped ON trailseal.sources
    USING (tenant = trailseal.current_tenant())
    WITH CHECK (tenant = trailseal.current_tenant());
GRANT SELECT, INSERT, UPDATE ON trailseal.sources TO trailseal_sequencer;
GRANT SELECT ON trailseal.sources TO trailseal_reader;
