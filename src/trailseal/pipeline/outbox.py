"""The transactional outbox in a producer's own PostgreSQL database.

A producer writes each event into ``trailseal_outbox`` in the same transaction as the
business change it describes (``trailseal.client.outbox.record_in_transaction``, or the
capture triggers of ``trailseal.pipeline.capture``), so a committed change always has its
event and a rolled-back one never does. ``trailseal relay`` (``pipeline.relay``) ships the
rows and deletes them once the service has taken them.

The table, in a schema of the user's choice (default ``public``)::

    id          bigint identity, the order rows are shipped in (not the commit order:
                the relay never keeps a high-water mark, so a late commit is not skipped)
    event       jsonb, one event of schema v1, with its UUIDv7 id
    created_at  when the row was written
    attempts    deliveries tried that failed
    last_error  why the last one failed
    dead_at     when the service refused the event for good (422): such rows are kept,
                out of the relay's way, for a person to read; never deleted silently

and ``trailseal_outbox_history``: the rows the relay delivered, moved there in the
transaction that deletes them from the outbox (``DELETE ... RETURNING`` into an INSERT)
and kept for a bounded time (the relay's ``keep_days``), so ``trailseal selfaudit`` can
sample what the producer sent and look for each event in the log::

    id            bigint identity
    outbox_id     the row's id in the outbox
    event         jsonb, the event as it was shipped
    created_at    when the outbox row was written
    delivered_at  when the relay deleted it, the service having taken it

Next to it, ``trailseal_uuid7(timestamptz)``: a UUIDv7 built in SQL, for PostgreSQL 15
and later (18 has ``uuidv7()``; earlier versions have nothing). It takes the 48-bit Unix
milliseconds of its argument and 74 random bits of ``gen_random_uuid()``, whose version
nibble it changes from 4 to 7; the variant bits are already ``10``.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

TABLE = "trailseal_outbox"
HISTORY = "trailseal_outbox_history"
UUID7 = "trailseal_uuid7"
_LOCK = "trailseal.outbox.install"

_DDL = """
CREATE SCHEMA IF NOT EXISTS {schema};

CREATE TABLE IF NOT EXISTS {table} (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event       jsonb NOT NULL CHECK (jsonb_typeof(event) = 'object'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    attempts    integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error  text,
    dead_at     timestamptz
);

-- The relay's queue: rows still to ship, in id order. Dead rows stay out of it, so a
-- pile of them at the front never slows the scan.
CREATE INDEX IF NOT EXISTS {pending} ON {table} (id) WHERE dead_at IS NULL;

CREATE TABLE IF NOT EXISTS {history} (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    outbox_id     bigint NOT NULL,
    event         jsonb NOT NULL,
    created_at    timestamptz NOT NULL,
    delivered_at  timestamptz NOT NULL DEFAULT now()
);
-- Both the relay's pruning and the self-audit's window read by delivery time.
CREATE INDEX IF NOT EXISTS {delivered} ON {history} (delivered_at);

CREATE OR REPLACE FUNCTION {uuid7}(p_at timestamptz DEFAULT clock_timestamp())
    RETURNS uuid
    LANGUAGE sql VOLATILE PARALLEL SAFE
    AS $$
        SELECT encode(
            set_bit(set_bit(
                overlay(uuid_send(gen_random_uuid())
                        PLACING substring(
                            int8send(floor(extract(epoch FROM p_at) * 1000)::bigint) FROM 3)
                        FROM 1 FOR 6),
                52, 1),
            53, 1),
            'hex')::uuid
    $$;
"""


def outbox_table(schema: str = "public") -> sql.Composable:
    """The qualified name of the outbox table in ``schema``."""
    return sql.Identifier(schema, TABLE)


def history_table(schema: str = "public") -> sql.Composable:
    """The qualified name of the outbox's delivery history in ``schema``."""
    return sql.Identifier(schema, HISTORY)


def uuid7_function(schema: str = "public") -> sql.Composable:
    """The qualified name of the UUIDv7 function installed with the outbox."""
    return sql.Identifier(schema, UUID7)


def install_outbox(conn: psycopg.Connection, schema: str = "public") -> None:
    """Create the outbox table, its index, its delivery history and the UUIDv7 function
    in ``schema`` (created too, if missing). Idempotent, and safe to run from several
    processes at once; runs in a transaction of its own, or in a savepoint of the
    caller's."""
    statement = sql.SQL(_DDL).format(
        schema=sql.Identifier(schema),
        table=outbox_table(schema),
        pending=sql.Identifier(f"{TABLE}_pending"),
        history=history_table(schema),
        delivered=sql.Identifier(f"{HISTORY}_delivered"),
        uuid7=uuid7_function(schema),
    )
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (_LOCK,))
        conn.execute(statement)


def _table_exists(conn: psycopg.Connection, schema: str, name: str) -> bool:
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s AND c.relkind = 'r')",
        (schema, name),
    ).fetchone()
    return bool(row and row[0])


def outbox_exists(conn: psycopg.Connection, schema: str = "public") -> bool:
    """Whether ``schema`` holds an outbox table."""
    return _table_exists(conn, schema, TABLE)


def history_exists(conn: psycopg.Connection, schema: str = "public") -> bool:
    """Whether ``schema`` holds the outbox's delivery history (outboxes installed before
    it existed gain it when ``install_outbox`` runs again)."""
    return _table_exists(conn, schema, HISTORY)
