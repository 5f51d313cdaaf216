-- 0008 operations: sequencer leases, and the health of every tenant's log in one call.
--
--   * sequencer_leases: which sequencer process holds which tenant, until when. A process
--     takes a lease whose expires_at has passed and renews its own; the lease spreads
--     tenants over processes and hands a dead process's tenants over once it expires.
--     It is not what keeps two processes from writing one tenant's log at once: every
--     batch still takes the advisory lock and the log_heads row lock in its own
--     transaction (see trailseal.sequencer), so an expired holder that wakes up late
--     can never fork the log;
--   * sequencer_members: each running sequencer's heartbeat, so a process knows how many
--     share the work and takes (or gives back) a fair share of the tenants;
--   * log_health(): per tenant, the inbox's depth and oldest arrival, the log's size and
--     last move, the newest checkpoint and verify run, the archive's reach. Counts and
--     times only, never an event; it probes each tenant under its own setting, as
--     pending_tenants() does, so the tables' policies hold inside it too.

SET LOCAL ROLE trailseal_owner;

CREATE TABLE trailseal.sequencer_leases (
    tenant       text PRIMARY KEY REFERENCES trailseal.tenants (name),
    holder       text NOT NULL CHECK (length(holder) BETWEEN 1 AND 200),
    acquired_at  timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
ALTER TABLE trailseal.sequencer_leases ENABLE ROW LEVEL SECURITY;
ALTER TABLE trailseal.sequencer_leases FORCE ROW LEVEL SECURITY;
CREATE POLICY sequencer_lease_scoped ON trailseal.sequencer_leases
    USING (tenant = trailseal.current_tenant());
-- Sequencers share tenants among themselves, so they see every lease.
CREATE POLICY sequencer_lease_catalog ON trailseal.sequencer_leases
    TO trailseal_sequencer USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE ON trailseal.sequencer_leases TO trailseal_sequencer;
GRANT SELECT ON trailseal.sequencer_leases TO trailseal_reader;

CREATE TABLE trailseal.sequencer_members (
    holder   text PRIMARY KEY CHECK (length(holder) BETWEEN 1 AND 200),
    seen_at  timestamptz NOT NULL
);
GRANT SELECT, INSERT, UPDATE, DELETE ON trailseal.sequencer_members TO trailseal_sequencer;
GRANT SELECT ON trailseal.sequencer_members TO trailseal_reader;

CREATE FUNCTION trailseal.log_health()
    RETURNS TABLE (tenant text, inbox_depth bigint, inbox_oldest timestamptz,
                   log_size bigint, head_moved_at timestamptz, checkpoint_size bigint,
                   checkpoint_at timestamptz, verified_at timestamptz, verified_ok boolean,
                   archived_size bigint, lease_holder text, lease_expires_at timestamptz)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE t text;
BEGIN
    FOR t IN SELECT name FROM trailseal.tenants ORDER BY name LOOP
        PERFORM set_config('trailseal.tenant', t, true);
        tenant := t;
        SELECT count(*), min(i.received_at) INTO inbox_depth, inbox_oldest
            FROM trailseal.inbox i WHERE i.tenant = t;
        SELECT h.size, h.updated_at INTO log_size, head_moved_at
            FROM trailseal.log_heads h WHERE h.tenant = t;
        SELECT c.size, c.created_at INTO checkpoint_size, checkpoint_at
            FROM trailseal.checkpoints c WHERE c.tenant = t ORDER BY c.size DESC LIMIT 1;
        SELECT v.finished_at, v.ok INTO verified_at, verified_ok
            FROM trailseal.verify_runs v WHERE v.tenant = t
            ORDER BY v.finished_at DESC, v.id DESC LIMIT 1;
        SELECT max(s.last_seq) + 1 INTO archived_size
            FROM trailseal.segments s WHERE s.tenant = t;
        SELECT l.holder, l.expires_at INTO lease_holder, lease_expires_at
            FROM trailseal.sequencer_leases l WHERE l.tenant = t;
        RETURN NEXT;
        log_size := NULL; head_moved_at := NULL; checkpoint_size := NULL;
        checkpoint_at := NULL; verified_at := NULL; verified_ok := NULL;
        lease_holder := NULL; lease_expires_at := NULL;
    END LOOP;
    PERFORM set_config('trailseal.tenant', '', true);
END $$;
REVOKE ALL ON FUNCTION trailseal.log_health() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION trailseal.log_health() TO trailseal_reader, trailseal_sequencer;
