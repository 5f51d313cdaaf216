"""A target's history: its timeline, and its fields as of a moment.

A timeline is the event query with the target fixed, so it pages, orders and filters by
time exactly as ``GET /v1/events`` does. A state is rebuilt by replaying the ``changes``
of the target's events in (occurred_at, seq) order up to a moment, inclusive:

* the time axis is ``occurred_at``, the producer's time, because "as of March 12th"
  means when things happened, not when the log heard of them (an event that arrives
  late still counts from when it occurred);
* each change sets its field to ``after``; an ``after`` that is null (or absent) means
  the field was removed, and it is left out of the state;
* a target with no events at all (the meta-audit's own aside) does not exist, for this
  tenant: the caller answers it exactly as another tenant's target.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from psycopg import AsyncConnection, sql

from trailseal.reading.query import (
    EventFilter,
    Order,
    Page,
    conditions,
    query_events,
    stream_rows,
)
from trailseal.store import Role, scoped

if TYPE_CHECKING:
    from trailseal.reading.warm import Warm


@dataclass(frozen=True)
class State:
    """A target's fields as of a moment, and which of its events made them."""

    fields: dict[str, Any]
    seq: int | None  # of the last event whose changes were replayed; None: no such event
    events: int  # how many events' changes were replayed


def target_filter(
    target_type: str,
    target_id: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> EventFilter:
    """The filter of a target's timeline."""
    return EventFilter(target_type=target_type, target_id=target_id, since=since, until=until)


def replay(fields: dict[str, Any], changes: dict[str, Any]) -> None:
    """Apply one event's ``changes`` ({field: {before, after}}) to ``fields``."""
    for name, change in changes.items():
        after = change.get("after") if isinstance(change, dict) else None
        if after is None:
            fields.pop(name, None)  # null or absent after: the field was removed
        else:
            fields[name] = after


async def _exists(
    conn: AsyncConnection, tenant: str, target_type: str | None, target_id: str | None
) -> bool:
    where, params = conditions(tenant, EventFilter(target_type=target_type, target_id=target_id))
    statement = sql.SQL("SELECT EXISTS (SELECT 1 FROM trailseal.events WHERE {})").format(
        sql.SQL(" AND ").join(where)
    )
    cur = await conn.execute(statement, params)
    row = await cur.fetchone()
    return bool(row and row[0])


async def timeline(
    conn: AsyncConnection,
    tenant: str,
    flt: EventFilter,
    *,
    limit: int,
    cursor_key: bytes,
    after: str | None = None,
    order: Order = "desc",
    warm: Warm | None = None,
) -> Page | None:
    """One page of the timeline of the target ``flt`` names (see :func:`target_filter`);
    None when the target has no events at all in ``tenant``."""
    page = await query_events(
        conn, tenant, flt, limit=limit, cursor_key=cursor_key, after=after, order=order,
        warm=warm,
    )
    if not page.events:
        async with scoped(conn, Role.READER, tenant):
            if not await _exists(conn, tenant, flt.target_type, flt.target_id):
                return None
    return page


def state_statement(
    tenant: str, target_type: str, target_id: str, at: datetime
) -> tuple[sql.Composed, list[Any]]:
    """The SELECT of the target's events with occurred_at at or before ``at``, oldest
    first, and its parameters: rows of (seq, occurred_at, canonical, leaf_hash,
    chain_hash), as the query's."""
    where, params = conditions(tenant, target_filter(target_type, target_id))
    where.append(sql.SQL("occurred_at <= %s"))
    params.append(at)
    statement = sql.SQL(
        "SELECT seq, occurred_at, canonical, leaf_hash, chain_hash FROM trailseal.events"
        " WHERE {} ORDER BY occurred_at, seq"
    ).format(sql.SQL(" AND ").join(where))
    return statement, params


async def state_at(
    conn: AsyncConnection,
    tenant: str,
    target_type: str,
    target_id: str,
    at: datetime,
    *,
    batch: int = 1000,
    warm: Warm | None = None,
) -> State | None:
    """The fields of the target as of ``at`` (inclusive); None when the target has no
    events at all in ``tenant``. Reads the target's events in constant memory, from
    PostgreSQL and, with ``warm``, from the segments of those that left it."""
    fields: dict[str, Any] = {}
    last: int | None = None
    used = 0
    statement, params = state_statement(tenant, target_type, target_id, at)
    async with scoped(conn, Role.READER, tenant):
        rows = stream_rows(conn, statement, params, batch=batch)
        if warm is not None:
            from trailseal.reading.warm import merge_async

            until = target_filter(target_type, target_id, until=at + _MICROSECOND)
            rows = merge_async(rows, warm.stream(conn, tenant, until, order="asc",
                                                 batch=batch), "asc")
        seen = False
        async for seq, _, canonical, _, _ in rows:
            seen = True
            changes = json.loads(bytes(canonical)).get("changes") or {}
            if changes:
                replay(fields, changes)
                last, used = seq, used + 1
        if not seen and not await _exists(conn, tenant, target_type, target_id) and not (
            warm is not None
            and await warm.rows(conn, tenant, target_filter(target_type, target_id),
                                order="asc", limit=1)
        ):
            return None
    return State(dict(sorted(fields.items())), last, used)


_MICROSECOND = timedelta(microseconds=1)  # occurred_at <= at, as the query's until < at
