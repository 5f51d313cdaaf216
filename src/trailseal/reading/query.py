"""Queries over a tenant's events, newest first, with keyset pagination.

Every statement names the tenant explicitly as well as relying on row-level security,
and every filter is served by an index that leads with the tenant.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection, sql

from trailseal.errors import InvalidInput
from trailseal.reading import cursor
from trailseal.store import Role, scoped

MAX_LIMIT = 1000
_PREFIX = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*\.\*$")
_COLUMNS = sql.SQL("seq, occurred_at, canonical, leaf_hash, chain_hash")


@dataclass(frozen=True)
class EventFilter:
    """The filters of ``GET /v1/events``; None means "any"."""

    actor_id: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    action: str | None = None  # exact, or a prefix written "user.*"
    outcome: str | None = None
    since: datetime | None = None  # occurred_at >= since
    until: datetime | None = None  # occurred_at < until
    correlation_id: str | None = None
    request_id: str | None = None

    def fingerprint(self) -> str:
        """A stable text of the filters, which a cursor is bound to."""
        values = {
            k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(self).items()
        }
        # Filters added later are left out while unset, so cursors issued before they
        # existed stay valid.
        for later in ("correlation_id", "request_id"):
            if values[later] is None:
                del values[later]
        return json.dumps(values, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class Page:
    """One page of events and the cursor of the next, if any."""

    events: list[dict[str, Any]]
    next_cursor: str | None


def event_view(row: tuple[Any, ...]) -> dict[str, Any]:
    """The API form of a stored event: its document plus seq and hex hashes."""
    seq, _, canonical, leaf, chain = row
    document: dict[str, Any] = json.loads(bytes(canonical))
    document["seq"] = seq
    document["leaf_hash"] = bytes(leaf).hex()
    document["chain_hash"] = bytes(chain).hex()
    return document


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _conditions(tenant: str, flt: EventFilter) -> tuple[list[sql.Composable], list[Any]]:
    where: list[sql.Composable] = [sql.SQL("tenant = %s")]
    params: list[Any] = [tenant]
    for column in (
        "actor_id", "target_type", "target_id", "outcome", "correlation_id", "request_id"
    ):
        value = getattr(flt, column)
        if value is not None:
            where.append(sql.SQL("{} = %s").format(sql.Identifier(column)))
            params.append(value)
    if flt.action is not None:
        if flt.action.endswith("*"):
            if not _PREFIX.match(flt.action):
                raise InvalidInput("action prefix must look like user.* or user.role.*")
            where.append(sql.SQL("action LIKE %s"))
            params.append(_like_prefix(flt.action[:-1]))
        else:
            where.append(sql.SQL("action = %s"))
            params.append(flt.action)
    if flt.since is not None:
        where.append(sql.SQL("occurred_at >= %s"))
        params.append(flt.since)
    if flt.until is not None:
        where.append(sql.SQL("occurred_at < %s"))
        params.append(flt.until)
    return where, params


async def query_events(
    conn: AsyncConnection,
    tenant: str,
    flt: EventFilter,
    *,
    limit: int,
    cursor_key: bytes,
    after: str | None = None,
) -> Page:
    """Events of ``tenant`` matching ``flt``, newest first (occurred_at, then seq)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}")
    where, params = _conditions(tenant, flt)
    fingerprint = flt.fingerprint()
    if after is not None:
        occurred_at, seq = cursor.decode(cursor_key, tenant, fingerprint, after)
        where.append(sql.SQL("(occurred_at, seq) < (%s, %s)"))
        params.extend([occurred_at, seq])
    statement = sql.SQL(
        "SELECT {} FROM trailseal.events WHERE {} ORDER BY occurred_at DESC, seq DESC LIMIT %s"
    ).format(_COLUMNS, sql.SQL(" AND ").join(where))
    async with scoped(conn, Role.READER, tenant):
        cur = await conn.execute(statement, [*params, limit + 1])
        rows = await cur.fetchall()
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = cursor.encode(cursor_key, tenant, fingerprint, last[1], last[0])
    return Page([event_view(row) for row in rows], next_cursor)


async def get_event(
    conn: AsyncConnection, tenant: str, event_id: uuid.UUID
) -> dict[str, Any] | None:
    """One event of ``tenant`` by id; None when missing or another tenant's."""
    statement = sql.SQL("SELECT {} FROM trailseal.events WHERE tenant = %s AND id = %s").format(
        _COLUMNS
    )
    async with scoped(conn, Role.READER, tenant):
        cur = await conn.execute(statement, (tenant, event_id))
        row = await cur.fetchone()
    return event_view(row) if row else None


async def sequenced(
    conn: AsyncConnection, tenant: str, ids: list[uuid.UUID]
) -> dict[uuid.UUID, tuple[int, bytes]]:
    """Seq and leaf hash of those of ``ids`` already in the log."""
    async with scoped(conn, Role.READER, tenant):
        cur = await conn.execute(
            "SELECT e.id, e.seq, e.leaf_hash FROM trailseal.event_ids i"
            " JOIN trailseal.events e"
            "   ON e.tenant = i.tenant AND e.id = i.id AND e.received_at = i.received_at"
            " WHERE i.tenant = %s AND i.id = ANY(%s)",
            (tenant, ids),
        )
        return {row[0]: (row[1], bytes(row[2])) for row in await cur.fetchall()}
