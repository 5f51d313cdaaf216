-- 0002 the Merkle tree: C2SP tiles, signed checkpoints, the log keys, the tree's right edge.
--
--   * tiles holds every FULL tile (256 hashes) of each tenant's RFC 6962 tree, at every
--     tile level, with the tile's own root; partial tiles are derived, never stored, so
--     the table is append-only like events;
--   * checkpoints holds a signed C2SP checkpoint for each batch the sequencer commits;
--   * log_keys publishes the verifier keys the checkpoints are signed with;
--   * log_heads gains the tree's right edge (the partial tiles, serialised) and the size
--     the tree covers, so a log that predates this migration is caught up by the sequencer.

SET LOCAL ROLE trailseal_owner;

CREATE TABLE trailseal.tiles (
    tenant  text NOT NULL,
    level   smallint NOT NULL CHECK (level BETWEEN 0 AND 7),
    idx     bigint NOT NULL CHECK (idx >= 0),
    hashes  bytea NOT NULL CHECK (length(hashes) = 8192),
    root    bytea NOT NULL CHECK (length(root) = 32),
    PRIMARY KEY (tenant, level, idx)
);
ALTER TABLE trailseal.tiles ENABLE ROW LEVEL SECURITY;
ALTER TABLE trailseal.tiles FORCE ROW LEVEL SECURITY;
CREATE POLICY tile_scoped ON trailseal.tiles
    USING (tenant = trailseal.current_tenant())
    WITH CHECK (tenant = trailseal.current_tenant());
GRANT SELECT, INSERT ON trailseal.tiles TO trailseal_sequencer;
GRANT SELECT ON trailseal.tiles TO trailseal_reader;
CREATE TRIGGER tiles_append_only BEFORE UPDATE OR DELETE ON trailseal.tiles
    FOR EACH ROW EXECUTE FUNCTION trailseal.refuse_change();
CREATE TRIGGER tiles_no_truncate BEFORE TRUNCATE ON trailseal.tiles
    FOR EACH STATEMENT EXECUTE FUNCTION trailseal.refuse_change();
ALTER TABLE trailseal.tiles ENABLE ALWAYS TRIGGER tiles_append_only;
ALTER TABLE trailseal.tiles ENABLE ALWAYS TRIGGER tiles_no_truncate;

CREATE TABLE trailseal.checkpoints (
    tenant      text NOT NULL,
    size        bigint NOT NULL CHECK (size >= 0),
    root        bytea NOT NULL CHECK (length(root) = 32),
    note        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, size)
);
ALTER TABLE trailseal.checkpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE trailseal.checkpoints FORCE ROW LEVEL SECURITY;
CREATE POLICY checkpoint_scoped ON trailseal.checkpoints
    USING (tenant = trailseal.current_tenant())
    WITH CHECK (tenant = trailseal.current_tenant());
GRANT SELECT, INSERT ON trailseal.checkpoints TO trailseal_sequencer;
GRANT SELECT ON trailseal.checkpoints TO trailseal_reader;
CREATE TRIGGER checkpoints_append_only BEFORE UPDATE OR DELETE ON trailseal.checkpoints
    FOR EACH ROW EXECUTE FUNCTION trailseal.refuse_change();
CREATE TRIGGER checkpoints_no_truncate BEFORE TRUNCATE ON trailseal.checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION trailseal.refuse_change();
ALTER TABLE trailseal.checkpoints ENABLE ALWAYS TRIGGER checkpoints_append_only;
ALTER TABLE trailseal.checkpoints ENABLE ALWAYS TRIGGER checkpoints_no_truncate;

-- Public verifier keys (never a private key). Not per tenant: one service key signs every
-- tenant's checkpoints, and any reader may learn it.
CREATE TABLE trailseal.log_keys (
    verifier_key  text PRIMARY KEY,
    created_at    timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT ON trailseal.log_keys TO trailseal_sequencer;
GRANT SELECT ON trailseal.log_keys TO trailseal_reader;
CREATE TRIGGER log_keys_append_only BEFORE UPDATE OR DELETE ON trailseal.log_keys
    FOR EACH ROW EXECUTE FUNCTION trailseal.refuse_change();
ALTER TABLE trailseal.log_keys ENABLE ALWAYS TRIGGER log_keys_append_only;

ALTER TABLE trailseal.log_heads
    ADD COLUMN tree_size bigint NOT NULL DEFAULT 0 CHECK (tree_size >= 0),
    ADD COLUMN edge bytea NOT NULL DEFAULT '\x'::bytea;
