"""``GET /v1/stream``: the SIEM feed, a tenant's events after a cursor in seq order.

Framing: ``format=ocsf`` answers ``application/json`` ``{"events": [OCSF event, ...],
"next_cursor": "..."}``; ``format=syslog`` answers ``text/plain`` with one RFC 5424 line
per event, each ended by LF, and the cursor in the ``Trailseal-Next-Cursor`` header.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from trailseal.errors import FieldProblem, InvalidInput
from trailseal.reading import siem
from trailseal.runtime import origin_host
from trailseal.tenants import Principal
from trailseal.web.auth import require
from trailseal.web.filters import problem_responses
from trailseal.web.meta import note_read
from trailseal.web.problems import Problem

router = APIRouter(prefix="/v1", tags=["stream"])

STREAMED = siem.STREAMED
CURSOR_HEADER = "Trailseal-Next-Cursor"

_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "`ocsf`: `{\"events\": [...], \"next_cursor\": \"...\"}`, each event "
        "an OCSF 1.2 object (Authentication 3002, Account Change 3001 or API Activity 6003) "
        "with the original event in `raw_data`. `syslog`: one RFC 5424 line per event "
        "(`text/plain`), the cursor in the `Trailseal-Next-Cursor` header. The cursor is "
        "there even when no event is, so a client can poll with it.",
        "headers": {
            CURSOR_HEADER: {
                "description": "With `format=syslog`: the cursor to send next.",
                "schema": {"type": "string"},
            }
        },
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "events": {"type": "array", "items": {"type": "object"}},
                        "next_cursor": {"type": "string"},
                    },
                    "required": ["events", "next_cursor"],
                }
            },
            "text/plain": {"schema": {"type": "string"}},
        },
    },
    **problem_responses(401, 403),
    422: {
        **problem_responses(422)[422],
        "description": "A parameter is invalid, or the cursor was not issued by this "
        "server for this key's tenant (the answer says no more than that).",
    },
}


@router.get("/stream", responses=_RESPONSES, summary="The SIEM feed: events after a cursor")
async def stream(
    request: Request,
    who: Annotated[Principal, Depends(require("read"))],
    cursor: Annotated[str | None, Query(
        max_length=512, description="The `next_cursor` of the answer before; none to start "
        "at seq 0. Bound to the tenant it was issued for.")] = None,
    format: Annotated[Literal["ocsf", "syslog"], Query(
        description="`ocsf` (JSON) or `syslog` (RFC 5424 lines).")] = "ocsf",
    limit: Annotated[int, Query(
        ge=1, le=siem.MAX_LIMIT, description=f"Most events per answer, 1 to "
        f"{siem.MAX_LIMIT}.")] = 100,
) -> Response:
    """The key's tenant's events from the cursor on, in `seq` order, at most `limit`.
    Every event is in the feed except `audit.events.streamed`, the meta-audit's record
    of reads of the feed itself (a poller would otherwise be fed the record of its last
    poll for ever); they stay in the log. An answer with fewer than `limit` events has
    reached the end of the log: poll again later with its cursor."""
    key = request.app.state.cursor_key
    try:
        start = siem.position(key, who.tenant, cursor or None)
    except InvalidInput as exc:
        raise Problem(422, "invalid-input", "Invalid input", str(exc),
                      [FieldProblem(None, "query.cursor", str(exc))]) from None
    note = note_read(request, who, STREAMED,
                     {"format": format, "limit": limit, "from_seq": start})
    async with request.app.state.pool.connection() as conn:
        feed = await siem.read_feed(conn, who.tenant, start, limit)
    note.count = len(feed.entries)
    next_cursor = siem.next_cursor(key, who.tenant, feed)
    headers = {"Cache-Control": "no-store"}
    if format == "syslog":
        host = origin_host(request.app.state.settings)
        text = "".join(siem.syslog_line(e, host) + "\n" for e in feed.entries)
        return PlainTextResponse(text, headers={**headers, CURSOR_HEADER: next_cursor})
    return JSONResponse(
        {"events": [siem.ocsf_event(e) for e in feed.entries], "next_cursor": next_cursor},
        headers=headers,
    )
