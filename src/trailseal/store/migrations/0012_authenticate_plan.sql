-- 0012 authenticate keeps its plan: the same lookup, in PL/pgSQL.
--
-- Every API request calls trailseal.authenticate(). As a SQL function that is SECURITY
-- DEFINER with its own search_path it cannot be inlined, and PostgreSQL before 18 parses
-- and plans such a body again on every call; PL/pgSQL keeps the plan for the session
-- (PostgreSQL 18 caches SQL functions' plans too). What it returns, to whom, and as whom
-- it runs are unchanged (CREATE OR REPLACE keeps the owner and the grants).

SET LOCAL ROLE trailseal_owner;

CREATE OR REPLACE FUNCTION trailseal.authenticate(p_token_hash bytea)
    RETURNS TABLE (tenant text, key_id uuid, scopes text[])
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    RETURN QUERY SELECT k.tenant, k.id, k.scopes FROM trailseal.api_keys k
    WHERE k.token_hash = p_token_hash AND k.revoked_at IS NULL;
END $$;
