-- 0015 pending_tenants() plans its probe with sorting off, so the primary key is the
-- only plan left.
--
-- 0014 ordered the per-tenant probe by the primary key and limited it to one row, so
-- that no plan kept from stale statistics scans the inbox's heap for each tenant. It
-- left another way out, taken on PostgreSQL 18: when the last ANALYZE saw a drained
-- queue (a few live rows in a table and indexes left at their largest size), the cost
-- of reaching one row through the bloated primary key is estimated from its pages per
-- live row, and a scan of the inbox's (id, tenant) index for the tenant, whose leading
-- id the statistics say has a handful of values, plus a sort of the row or two it
-- expects, looks cheaper. That scan reads the whole index, dead entries included, for
-- every tenant: measured at 452 ms and 454,634 buffers a call with 136 tenants on a
-- 298 MB inbox, against 11.7 ms and 2,911 buffers through the primary key. With sorting
-- off for the function, every plan but the primary key's ordered scan needs a sort, so
-- that scan is chosen whatever the statistics say, as the sequencer's own read of the
-- inbox's head already is. The body, what it returns, to whom, and as whom it runs are
-- unchanged.

SET LOCAL ROLE trailseal_owner;

ALTER FUNCTION trailseal.pending_tenants() SET enable_sort = off;
