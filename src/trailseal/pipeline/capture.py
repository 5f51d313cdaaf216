"""Trigger capture: every INSERT, UPDATE and DELETE of a table becomes an event in the
outbox, written by PostgreSQL in the transaction that made the change.

``install_capture`` reads the table's primary key from the catalog and puts one row
trigger, ``trailseal_capture``, on it. The trigger calls one shared function in the
outbox's schema, ``trailseal_capture()``, with what it needs fixed at install time:

* ``action``: ``<table>.created|updated|deleted``, the table name lowercased (refused at
  install when it cannot form a valid action);
* ``target``: ``{"type": "<schema>.<table>", "id": <primary key>}``, a composite key's
  values joined with ``:`` in key order;
* ``changes``: for INSERT the ``after`` of every column, for DELETE the ``before``, for
  UPDATE only the columns whose value changed; excluded columns never appear, and an
  UPDATE that changed only excluded (or no) columns writes no event;
* ``actor``: the JSON of the transaction-local setting ``trailseal.actor``, else
  ``{"type": "system", "id": "db:" || current_user}``; ``context`` carries
  ``trailseal.correlation_id`` and ``trailseal.request_id`` when set. The SDK's
  ``set_audit_context`` sets all three with ``set_config(..., true)``, so they end with
  the transaction and stay correct behind a pooler. A setting that is not JSON makes the
  statement fail (never a silently wrong actor);
* ``id``: a UUIDv7 of the same instant as ``occurred_at`` (``clock_timestamp()``, UTC,
  milliseconds), so events of one transaction keep their order.

Values are converted by ``to_jsonb``. Numbers a JSON reader cannot keep exactly — integers
past ±(2^53−1), and any number of that magnitude — become strings, because the service
refuses them. Other limits of the event schema are not worked around: a primary key
longer than 256 characters, a value nested deeper than 32 levels, or an event over
65,535 bytes in canonical form is refused by the service, and the relay keeps its row
as dead. Exclude large columns (documents, blobs) to stay well inside them. TRUNCATE
fires no row trigger and is not captured.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import psycopg
from psycopg import sql

from trailseal.errors import InvalidInput, NotFound
from trailseal.model import TYPE_PATTERN
from trailseal.pipeline.outbox import outbox_exists, outbox_table, uuid7_function

TRIGGER = "trailseal_capture"
FUNCTION = "trailseal_capture"
_ACTION_PART = re.compile(r"^[a-z][a-z0-9_]*$")
_TYPE = re.compile(TYPE_PATTERN)
_MAX_TYPE = 64

_FUNCTION_DDL = """
CREATE OR REPLACE FUNCTION {function}() RETURNS trigger
    LANGUAGE plpgsql AS $$
DECLARE
    -- Arguments fixed by install_capture: action prefix, target type, key, exclusions.
    v_prefix   text := TG_ARGV[0];
    v_type     text := TG_ARGV[1];
    v_keys     text[] := TG_ARGV[2]::text[];
    v_skip     text[] := TG_ARGV[3]::text[];
    v_at       timestamptz := clock_timestamp();
    v_row      jsonb;
    v_old      jsonb;
    v_new      jsonb;
    v_id       text;
    v_changes  jsonb;
    v_actor    text := nullif(current_setting('trailseal.actor', true), '');
BEGIN
    IF TG_OP = 'DELETE' THEN
        v_row := to_jsonb(OLD);
        v_old := v_row - v_skip;
    ELSE
        v_row := to_jsonb(NEW);
        v_new := v_row - v_skip;
        IF TG_OP = 'UPDATE' THEN
            v_old := to_jsonb(OLD) - v_skip;
        END IF;
    END IF;

    SELECT coalesce(jsonb_object_agg(k, jsonb_build_object('before', v_old -> k,
                                                           'after', v_new -> k)), '{{}}')
      INTO v_changes
      FROM jsonb_object_keys(coalesce(v_new, v_old)) AS k
     WHERE TG_OP <> 'UPDATE' OR (v_old -> k) IS DISTINCT FROM (v_new -> k);
    IF TG_OP = 'UPDATE' AND v_changes = '{{}}' THEN
        RETURN NULL;
    END IF;
    -- The service keeps numbers as IEEE doubles; past 2^53 they could not be kept exact.
    IF v_changes @? '$.** ? (@.type() == "number"
                            && (@ > 9007199254740991 || @ < -9007199254740991))' THEN
        v_changes := {exact}(v_changes);
    END IF;

    SELECT string_agg(v_row ->> k, ':' ORDER BY n) INTO v_id
      FROM unnest(v_keys) WITH ORDINALITY AS u(k, n);

    INSERT INTO {outbox} (event) VALUES (jsonb_build_object(
        'id', {uuid7}(v_at),
        'occurred_at', to_char(v_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
        'actor', coalesce(v_actor::jsonb,
                          jsonb_build_object('type', 'system', 'id', 'db:' || current_user)),
        'action', v_prefix || CASE TG_OP WHEN 'INSERT' THEN '.created'
                                         WHEN 'UPDATE' THEN '.updated'
                                         ELSE '.deleted' END,
        'target', jsonb_build_object('type', v_type, 'id', v_id),
        'changes', v_changes,
        'context', jsonb_strip_nulls(jsonb_build_object(
            'correlation_id', nullif(current_setting('trailseal.correlation_id', true), ''),
            'request_id', nullif(current_setting('trailseal.request_id', true), ''))),
        'outcome', jsonb_build_object('status', 'success')));
    RETURN NULL;
END $$;

-- A copy of a JSON value with every number past ±(2^53-1) written as a string.
CREATE OR REPLACE FUNCTION {exact}(p_value jsonb) RETURNS jsonb
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    CASE jsonb_typeof(p_value)
    WHEN 'number' THEN
        IF abs(p_value::numeric) > 9007199254740991 THEN
            RETURN to_jsonb(p_value #>> '{{}}');
        END IF;
    WHEN 'array' THEN
        RETURN (SELECT coalesce(jsonb_agg({exact}(e) ORDER BY i), '[]')
                  FROM jsonb_array_elements(p_value) WITH ORDINALITY AS a(e, i));
    WHEN 'object' THEN
        RETURN (SELECT coalesce(jsonb_object_agg(k, {exact}(e)), '{{}}')
                  FROM jsonb_each(p_value) AS o(k, e));
    ELSE
        NULL;
    END CASE;
    RETURN p_value;
END $$;
"""


def capture_function(schema: str = "public") -> sql.Composable:
    """The qualified name of the shared trigger function in the outbox's ``schema``."""
    return sql.Identifier(schema, FUNCTION)


def _split(table: str) -> tuple[str, str]:
    """``schema.table`` (or ``table``, in ``public``) as exact catalog names."""
    schema, dot, name = table.partition(".")
    if not dot:
        schema, name = "public", table
    if not schema or not name:
        raise InvalidInput(f"{table!r} is not a table name like public.users")
    return schema, name


def _relation(conn: psycopg.Connection, schema: str, name: str) -> int:
    row = conn.execute(
        "SELECT c.oid, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s",
        (schema, name),
    ).fetchone()
    if row is None:
        raise NotFound(f"no table {schema}.{name} in this database")
    if row[1] not in ("r", "p"):
        raise InvalidInput(f"{schema}.{name} is not a table; only tables can be captured")
    return int(row[0])


def _columns(conn: psycopg.Connection, oid: int) -> list[str]:
    cur = conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s AND attnum > 0"
        " AND NOT attisdropped ORDER BY attnum",
        (oid,),
    )
    return [row[0] for row in cur]


def primary_key(conn: psycopg.Connection, oid: int) -> list[str]:
    """The primary key columns of the relation ``oid``, in key order; empty without one."""
    cur = conn.execute(
        "SELECT a.attname FROM pg_index i"
        " CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)"
        " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
        " WHERE i.indrelid = %s AND i.indisprimary ORDER BY k.n",
        (oid,),
    )
    return [row[0] for row in cur]


def _names(schema: str, name: str) -> tuple[str, str]:
    """The action prefix and target type of ``schema.name``; refused when invalid."""
    prefix = name.lower()
    if not _ACTION_PART.fullmatch(prefix):
        raise InvalidInput(
            f"table name {name!r} cannot form an action such as {prefix}.created: actions "
            "take lowercase letters, digits and _ and start with a letter"
        )
    target_type = f"{schema}.{name}"
    if len(target_type) > _MAX_TYPE or not _TYPE.match(target_type):
        raise InvalidInput(
            f"{target_type!r} cannot be a target type: at most {_MAX_TYPE} characters of "
            "letters, digits and _ . : -"
        )
    return prefix, target_type


def install_function(conn: psycopg.Connection, schema: str = "public") -> None:
    """Create (or replace) the shared trigger function for the outbox in ``schema``."""
    exact = sql.Identifier(schema, "trailseal_exact_numbers")
    conn.execute(
        sql.SQL(_FUNCTION_DDL).format(
            function=capture_function(schema),
            exact=exact,
            outbox=outbox_table(schema),
            uuid7=uuid7_function(schema),
        )
    )


def install_capture(
    conn: psycopg.Connection,
    table: str,
    exclude_columns: Iterable[str] = (),
    *,
    schema: str = "public",
) -> list[str]:
    """Capture the row changes of ``table`` (``schema.table``, exact names; ``public`` when
    unqualified) into the outbox in ``schema``; returns the primary key columns.

    Idempotent: installing again replaces the trigger, with the new exclusions. Refuses,
    with ``NotFound`` or ``InvalidInput``, a missing table, one without a primary key, a
    name that cannot form an action or a target type, an excluded column the table does
    not have, and a schema without an outbox (``install_outbox`` first).
    """
    excluded = [exclude_columns] if isinstance(exclude_columns, str) else list(exclude_columns)
    table_schema, name = _split(table)
    with conn.transaction():
        oid = _relation(conn, table_schema, name)
        prefix, target_type = _names(table_schema, name)
        columns = _columns(conn, oid)
        unknown = [c for c in excluded if c not in columns]
        if unknown:
            raise InvalidInput(
                f"{table_schema}.{name} has no column {', '.join(map(repr, unknown))} "
                "to exclude"
            )
        keys = primary_key(conn, oid)
        if not keys:
            raise InvalidInput(
                f"{table_schema}.{name} has no primary key; capture names each row by its "
                "primary key, so add one first"
            )
        if not outbox_exists(conn, schema):
            raise NotFound(
                f"no outbox in schema {schema}: run `trailseal outbox install` first"
            )
        install_function(conn, schema)
        conn.execute(
            sql.SQL(
                "CREATE OR REPLACE TRIGGER {trigger} AFTER INSERT OR UPDATE OR DELETE"
                " ON {table} FOR EACH ROW EXECUTE FUNCTION {function}({args})"
            ).format(
                trigger=sql.Identifier(TRIGGER),
                table=sql.Identifier(table_schema, name),
                function=capture_function(schema),
                args=sql.SQL(", ").join(
                    sql.Literal(arg)
                    for arg in (prefix, target_type, _array(conn, keys),
                                _array(conn, excluded))
                ),
            )
        )
    return keys


def _array(conn: psycopg.Connection, values: list[str]) -> str:
    """The text form of ``values`` as a PostgreSQL ``text[]``, quoted by the server."""
    row = conn.execute("SELECT %s::text[]::text", (values,)).fetchone()
    assert row is not None
    return str(row[0])
