-- 0004 correlation: find the events of one request, or of one correlated flow.
--
--   * GET /v1/events?correlation_id=... and ?request_id=... are each served by an index
--     that leads with the tenant and ends with seq, like the others, so a filter plus
--     newest-first order is one index scan and keyset pages resume exactly;
--   * both are partial: events without the id (most system events) take no space in
--     them, and "column = value" implies the column is not null, so the planner uses them.

SET LOCAL ROLE trailseal_owner;

-- On the partitioned log, each partition gets its own copy (and so do later ones).
CREATE INDEX events_correlation ON trailseal.events
    (tenant, correlation_id, occurred_at, seq) WHERE correlation_id IS NOT NULL;
CREATE INDEX events_request ON trailseal.events
    (tenant, request_id, occurred_at, seq) WHERE request_id IS NOT NULL;
