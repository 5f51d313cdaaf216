"""The schema distributes by tenant (Citus): every primary key and unique constraint of
a table with a tenant column leads with it, so each holds within one tenant's shard."""

from __future__ import annotations

import psycopg


def test_every_key_of_a_tenant_table_leads_with_the_tenant(database_url):
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            """
            SELECT c.relname, con.conname, a.attname
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
    allowed = {("api_keys", "api_keys_token_hash_key")}
    leading = {(table, name): first for table, name, first in rows}
    wrong = {k: v for k, v in leading.items() if v != "tenant" and k not in allowed}
    assert wrong == {}
