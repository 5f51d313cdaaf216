-- 0014 pending_tenants() probes each tenant's inbox by the primary key, whatever the
-- statistics say.
--
-- The function asks, tenant by tenant, whether the inbox holds a row. PL/pgSQL plans
-- that probe (`tenant = $1`) once for the session after five calls: a generic plan
-- estimated from the inbox's statistics. A queue's statistics are whatever the last
-- ANALYZE saw; when it saw one tenant's backlog, the generic estimate is that every row
-- matches any tenant, and a sequential scan that stops at its first row looks cheapest.
-- For a tenant with nothing waiting it reads the whole heap instead, which a queue that
-- once held millions of rows keeps at its largest size: measured at 64 ms a tenant on a
-- 224 MB inbox holding 80,000 rows, 10.5 s a call with 136 tenants, and the sequencers
-- call it before every sweep. Ordered by the primary key and limited to one row, the
-- probe has no cheap plan but the primary key's first entry for the tenant: a sequential
-- scan would have to sort every row it estimates. What it returns, to whom, and as whom
-- it runs are unchanged (CREATE OR REPLACE keeps the owner and the grants).

SET LOCAL ROLE trailseal_owner;

CREATE OR REPLACE FUNCTION trailseal.pending_tenants() RETURNS SETOF text
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE t text;
BEGIN
    FOR t IN SELECT name FROM trailseal.tenants ORDER BY name LOOP
        PERFORM set_config('trailseal.tenant', t, true);
        PERFORM 1 FROM trailseal.inbox i WHERE i.tenant = t ORDER BY i.tenant, i.pos LIMIT 1;
        IF FOUND THEN
            RETURN NEXT t;
        END IF;
    END LOOP;
    PERFORM set_config('trailseal.tenant', '', true);
END $$;
