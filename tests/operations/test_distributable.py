"""The schema distributes by tenant (Citus): every primary key and unique constraint of
a table with a tenant column includes it, so each holds within one tenant's shard, and
leads with it but for the exceptions named below."""

from __future__ import annotations

import psycopg


def test_every_key_of_a_tenant_table_leads_with_the_tenant(database_url):
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            """
            SELECT c.relname, con.conname, a.attname,
                   EXISTS (SELECT 1 FROM pg_attribute k WHERE k.attrelid = con.conrelid
                           AND k.attnum = ANY(con.conkey) AND k.attname = 'tenant')
            FROM pg_constraint con
            JOIN pg_class c ON c.oid = con.conrelid
            JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = con.conkey[1]
            WHERE c.relnamespace = 'trailseal'::regnamespace
              AND con.contype IN ('p', 'u')
              AND c.relispartition = false
              AND EXISTS (SELECT 1 FROM pg_attribute t WHERE t.attrelid = c.oid
                          AND t.attname = 'tenant' AND NOT t.attisdropped)
            """).fetchall()
    assert rows, "no keys found"
    # api_keys.token_hash is unique across tenants on purpose: a token names its tenant,
    # and authentication looks it up before any tenant is known.
    across = {("api_keys", "api_keys_token_hash_key")}
    # inbox (id, tenant) keeps an id unique within its tenant; it leads with the id so
    # that the primary key (tenant, pos) is the only index that finds a tenant's waiting
    # rows (migration 0013: the queue's plans do not depend on its statistics).
    led_by_another = {("inbox", "inbox_id_tenant_key")}
    keys = {(table, name): (first, has_tenant) for table, name, first, has_tenant in rows}
    assert {k for k, (_, has_tenant) in keys.items() if not has_tenant} == across
    assert {k for k, (first, _) in keys.items() if first != "tenant"} == across | led_by_another
