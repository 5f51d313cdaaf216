"""``/v1/sources``: producer gap detection.

Each producer numbers its events (``context.source``, ``context.source_seq``); this shows,
per source, how far its numbers arrived without a hole and which numbers never did, so
an event lost before it reached the service is visible.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel

from trailseal.model import SOURCE_PATTERN, format_time
from trailseal.reading.sources import MAX_LIMIT, list_sources
from trailseal.tenants import Principal
from trailseal.web.auth import require

router = APIRouter(prefix="/v1", tags=["sources"])


class Source(BaseModel):
    source: str
    high_water: int
    max_seen: int
    missing: int
    gaps: list[tuple[int, int]]
    written_off: int
    repeated: int
    first_seen_at: str
    last_seen_at: str


class SourcesPage(BaseModel):
    sources: list[Source]
    next_cursor: str | None


@router.get("/sources", response_model=SourcesPage,
            summary="Each producer's numbering: high water mark and gaps")
async def sources(
    request: Request,
    who: Annotated[Principal, Depends(require("admin"))],
    source: Annotated[str | None, Query(pattern=SOURCE_PATTERN)] = None,
    only_gaps: bool = False,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
    cursor: Annotated[str | None, Query(pattern=SOURCE_PATTERN)] = None,
) -> Any:
    """The key's tenant's sources in source order: `high_water` (every number up to it
    arrived; -1 while 0 is missing), `max_seen`, `missing` (numbers in 0..max_seen that
    did not arrive) and `gaps`, the first 100 missing ranges (inclusive), lowest first."""
    async with request.app.state.pool.connection() as conn:
        page = await list_sources(
            conn, who.tenant, source=source, only_gaps=only_gaps, limit=limit, after=cursor
        )
    return {
        "sources": [
            {
                "source": s.source,
                "high_water": s.high_water,
                "max_seen": s.max_seen,
                "missing": s.missing,
                "gaps": [list(gap) for gap in s.gaps],
                "written_off": s.written_off,
                "repeated": s.repeated,
                "first_seen_at": format_time(s.first_seen_at),
                "last_seen_at": format_time(s.last_seen_at),
            }
            for s in page.sources
        ],
        "next_cursor": page.next_cursor,
    }
