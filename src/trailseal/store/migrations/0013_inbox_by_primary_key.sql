-- 0013 a tenant's rows in the inbox are found by the primary key alone.
--
-- The inbox is a queue: rows arrive and leave all day, so its statistics are always out
-- of date, and a tenant's backlog is often far larger than the planner believes. The
-- sequencer deletes each batch by the tenant and the batch's positions; planned for a
-- handful of rows, that delete walked the (tenant, id) unique index, which has the same
-- leading column as the primary key (tenant, pos), and filtered every waiting row of the
-- tenant, for every batch: a batch cost more as the backlog grew, so a sequencer that
-- fell behind fell further behind. An id stays unique within its tenant through an
-- index led by the id instead, so the primary key is the only index that finds a
-- tenant's rows, and the delete reads the batch's rows only, whatever the statistics say.

SET LOCAL ROLE trailseal_owner;

ALTER TABLE trailseal.inbox
    DROP CONSTRAINT inbox_tenant_id_key,
    ADD CONSTRAINT inbox_id_tenant_key UNIQUE (id, tenant);
