"""Exports of a tenant's events as CSV, NDJSON or one JSON array, streamed.

The bytes come out a chunk at a time while the events are read through a server-side
cursor (:func:`trailseal.reading.query.iter_events`), so an export of any size runs in
constant memory; the HTTP endpoint and ``trailseal export --format`` write the very same
bytes through :func:`export_chunks`.

CSV has one fixed list of columns, :data:`COLUMNS`, derived from the event schema
(:mod:`trailseal.model`): the log's own fields, then every scalar field of the event with
nested ones flattened to dotted names (``actor.id``, ``context.ip``), then the free-form
parts (``changes``, ``metadata``) as one column of JSON text each, then the hashes. The
columns never depend on the data. Every cell that a spreadsheet would take for a formula
(it starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return) gets a leading
single quote, as OWASP recommends; the csv module quotes commas, quotes and newlines.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Literal

import orjson
from psycopg import AsyncConnection, sql
from pydantic import BaseModel

from trailseal.model import EventV1
from trailseal.reading.query import EventFilter, conditions, iter_events
from trailseal.store import Role, scoped

if TYPE_CHECKING:
    from trailseal.reading.warm import Warm

Format = Literal["csv", "ndjson", "json"]
FORMATS: tuple[Format, ...] = ("csv", "ndjson", "json")
MEDIA_TYPES: dict[Format, str] = {
    "csv": "text/csv; charset=utf-8",
    "ndjson": "application/x-ndjson",
    "json": "application/json",
}
CHUNK_BYTES = 64 * 1024
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

_LOG_FIELDS = ("seq", "id", "occurred_at", "received_at", "tenant")
_HASHES = ("leaf_hash", "chain_hash")


def _columns() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The scalar columns (dotted paths) and the free-form ones (JSON text), in the order
    of the schema's fields."""
    scalar: list[str] = []
    free: list[str] = []
    for name, info in EventV1.model_fields.items():
        if name in _LOG_FIELDS:
            continue
        kind = info.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            scalar.extend(f"{name}.{sub}" for sub in kind.model_fields)
        elif kind is str:
            scalar.append(name)
        else:
            free.append(name)
    return tuple(scalar), tuple(free)


SCALAR_COLUMNS, JSON_COLUMNS = _columns()
COLUMNS: tuple[str, ...] = (*_LOG_FIELDS, *SCALAR_COLUMNS, *JSON_COLUMNS, *_HASHES)
"""Every CSV column, in order; the same for every export."""


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def flatten(event: dict[str, Any]) -> dict[str, str]:
    """The event (an API view: document, seq, hashes) as text per column of
    :data:`COLUMNS`; absent values are empty strings. No neutralising here."""
    row: dict[str, str] = {}
    for column in COLUMNS:
        head, _, tail = column.partition(".")
        value = event.get(head)
        if tail:
            value = value.get(tail) if isinstance(value, dict) else None
        row[column] = _text(value)
    return row


def neutralise(cell: str) -> str:
    """``cell`` made safe from formula injection: a leading quote when it starts like a
    formula."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


class _CsvWriter:
    """CSV rows into a buffer that is handed out as bytes."""

    def __init__(self) -> None:
        self.buffer = io.StringIO()
        self.writer = csv.writer(self.buffer, lineterminator="\r\n")

    def row(self, cells: list[str]) -> None:
        self.writer.writerow([neutralise(c) for c in cells])

    def take(self) -> bytes:
        data = self.buffer.getvalue().encode()
        self.buffer.seek(0)
        self.buffer.truncate()
        return data


def _json(event: dict[str, Any]) -> bytes:
    return orjson.dumps(event)


async def render(
    events: AsyncIterator[dict[str, Any]],
    fmt: Format,
    *,
    on_row: Callable[[int], None] | None = None,
) -> AsyncIterator[bytes]:
    """The bytes of an export of ``events`` in ``fmt``, about :data:`CHUNK_BYTES` at a
    time; ``on_row`` is told the running count after each event."""
    count = 0
    pending: list[bytes] = []
    size = 0
    csv_out = _CsvWriter() if fmt == "csv" else None
    if csv_out is not None:
        csv_out.row(list(COLUMNS))
        pending.append(csv_out.take())
    elif fmt == "json":
        pending.append(b"[")
    async for event in events:
        if csv_out is not None:
            csv_out.row(list(flatten(event).values()))
            piece = csv_out.take()
        elif fmt == "ndjson":
            piece = _json(event) + b"\n"
        else:
            piece = (b"\n" if count == 0 else b",\n") + _json(event)
        pending.append(piece)
        size += len(piece)
        count += 1
        if on_row is not None:
            on_row(count)
        if size >= CHUNK_BYTES:
            yield b"".join(pending)
            pending, size = [], 0
    if fmt == "json":
        pending.append(b"\n]\n" if count else b"]\n")
    if pending:
        yield b"".join(pending)


async def export_chunks(
    conn: AsyncConnection,
    tenant: str,
    flt: EventFilter,
    fmt: Format,
    *,
    on_row: Callable[[int], None] | None = None,
    batch: int = 1000,
    warm: Warm | None = None,
) -> AsyncIterator[bytes]:
    """The export of ``tenant``'s events matching ``flt``, oldest first by (occurred_at,
    seq), read in one snapshot ``batch`` rows at a time. Holds ``conn`` in one
    transaction until exhausted or closed."""
    async with scoped(conn, Role.READER, tenant):
        async for chunk in render(iter_events(conn, tenant, flt, batch=batch, warm=warm),
                                  fmt, on_row=on_row):
            yield chunk


async def count_events(conn: AsyncConnection, tenant: str, flt: EventFilter) -> int:
    """How many of ``tenant``'s events match ``flt`` (the total of a progress bar)."""
    where, params = conditions(tenant, flt)
    statement = sql.SQL("SELECT count(*) FROM trailseal.events WHERE {}").format(
        sql.SQL(" AND ").join(where)
    )
    async with scoped(conn, Role.READER, tenant):
        cur = await conn.execute(statement, params)
        row = await cur.fetchone()
    return int(row[0]) if row else 0


def filename(tenant: str, fmt: Format, stamp: str) -> str:
    """The download's file name: ``trailseal-<tenant>-<stamp>.<fmt>``."""
    return f"trailseal-{tenant}-{stamp}.{fmt}"
