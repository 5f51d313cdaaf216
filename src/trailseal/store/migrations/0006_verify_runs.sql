-- 0006 verify runs: the outcome of each `trailseal verify` of a tenant's log, so the
-- service (the console's log status page) can say when the log was last checked and
-- what was found.
--
--   * one row per tenant per run, written by `trailseal verify` as trailseal_owner (the
--     role verify already acts as) once the tenant's check has finished;
--   * append-only like the log itself: a record of a failed check cannot be turned into
--     a passed one, or removed, by UPDATE, DELETE or TRUNCATE (triggers ENABLE ALWAYS);
--   * row-level security by tenant, forced; the reader may SELECT its tenant's runs.
--
-- A row is what verify reported, not a proof: whoever may act as the owner can also
-- insert a row that says "ok". It tells an operator that a check ran; the check itself
-- is `trailseal verify` (or a bundle, or a receipt checked in the browser).

SET LOCAL ROLE trailseal_owner;

CREATE TABLE trailseal.verify_runs (
    tenant        text NOT NULL REFERENCES trailseal.tenants (name),
    finished_at   timestamptz NOT NULL DEFAULT now(),
    id            uuid NOT NULL,
    from_seq      bigint NOT NULL DEFAULT 0 CHECK (from_seq >= 0),
    events        bigint NOT NULL CHECK (events >= 0),
    checkpoints   bigint NOT NULL CHECK (checkpoints >= 0),
    witnessed     bigint NOT NULL CHECK (witnessed >= 0),
    ok            boolean NOT NULL,
    -- the first departure found, when not ok: its seq, kind (altered, deleted ...) and why
    finding_seq   bigint,
    finding_kind  text CHECK (length(finding_kind) <= 32),
    detail        text CHECK (length(detail) <= 2000),
    notes         text[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant, finished_at, id),
    CHECK ((ok = (finding_kind IS NULL)) AND (ok = (finding_seq IS NULL)))
);
ALTER TABLE trailseal.verify_runs ENABLE ROW LEVEL SECURITY;
ALTER TABLE trailseal.verify_runs FORCE ROW LEVEL SECURITY;
CREATE POLICY verify_run_scoped ON trailseal.verify_runs
    USING (tenant = trailseal.current_tenant())
    WITH CHECK (tenant = trailseal.current_tenant());
GRANT SELECT ON trailseal.verify_runs TO trailseal_reader;
CREATE TRIGGER verify_runs_append_only BEFORE UPDATE OR DELETE ON trailseal.verify_runs
    FOR EACH ROW EXECUTE FUNCTION trailseal.refuse_change();
CREATE TRIGGER verify_runs_no_truncate BEFORE TRUNCATE ON trailseal.verify_runs
    FOR EACH STATEMENT EXECUTE FUNCTION trailseal.refuse_change();
ALTER TABLE trailseal.verify_runs ENABLE ALWAYS TRIGGER verify_runs_append_only;
ALTER TABLE trailseal.verify_runs ENABLE ALWAYS TRIGGER verify_runs_no_truncate;
