"""A tenant's sources: what arrived of each producer's numbered events, and the gaps.

The sequencer keeps one row per source in ``sources`` (see ``trailseal.gaps``); this
module reads them, in source order, one page at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection, sql

from trailseal.errors import InvalidInput
from trailseal.gaps import SourceState
from trailseal.store import Role, scoped

MAX_LIMIT = 1000
MAX_GAPS = 100  # gaps listed per source; ``missing`` counts them all


@dataclass(frozen=True)
class SourceReport:
    """One source: its high water mark, the highest number seen, and what is missing."""

    source: str
    high_water: int
    max_seen: int
    missing: int
    gaps: list[tuple[int, int]]  # inclusive ranges, lowest first, at most MAX_GAPS
    written_off: int
    repeated: int
    first_seen_at: datetime
    last_seen_at: datetime


@dataclass(frozen=True)
class SourcesPage:
    """One page of sources and the cursor of the next (the last source listed), if any."""

    sources: list[SourceReport]
    next_cursor: str | None


def _report(row: tuple[Any, ...]) -> SourceReport:
    source, high_water, max_seen, ahead, written_off, repeated, first, last = row
    state = SourceState(high_water, tuple(ahead), written_off, repeated)
    return SourceReport(
        source=source,
        high_water=high_water,
        max_seen=max_seen,
        missing=state.missing,
        gaps=state.gaps(MAX_GAPS),
        written_off=written_off,
        repeated=repeated,
        first_seen_at=first,
        last_seen_at=last,
    )


async def list_sources(
    conn: AsyncConnection,
    tenant: str,
    *,
    source: str | None = None,
    only_gaps: bool = False,
    limit: int = MAX_LIMIT,
    after: str | None = None,
) -> SourcesPage:
    """Sources of ``tenant`` in source order (byte order): all, or just ``source``; with
    ``only_gaps``, only those missing a number; those after ``after``, if given."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}")
    where: list[sql.Composable] = [sql.SQL("tenant = %s")]
    params: list[Any] = [tenant]
    if source is not None:
        where.append(sql.SQL("source = %s"))
        params.append(source)
    if only_gaps:
        where.append(sql.SQL("(max_seen > high_water OR written_off > 0)"))
    if after is not None:
        where.append(sql.SQL("source > %s"))
        params.append(after)
    statement = sql.SQL(
        "SELECT source, high_water, max_seen, ahead, written_off, repeated, first_seen_at,"
        " last_seen_at FROM trailseal.sources WHERE {} ORDER BY source LIMIT %s"
    ).format(sql.SQL(" AND ").join(where))
    async with scoped(conn, Role.READER, tenant):
        cur = await conn.execute(statement, [*params, limit + 1])
        rows = await cur.fetchall()
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = rows[-1][0]
    return SourcesPage([_report(row) for row in rows], next_cursor)
