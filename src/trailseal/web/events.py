"""``/v1/events``: ingest (POST) and read (GET)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from psycopg import AsyncConnection
from pydantic import BaseModel

from trailseal import ingest
from trailseal.errors import BadJSON
from trailseal.reading.query import EventFilter, get_event, read_page, sequenced
from trailseal.tenants import Principal
from trailseal.web.auth import Reading, reading, require
from trailseal.web.filters import (
    FilterParams,
    Paging,
    PagingParams,
    documented,
    filtered_page,
    problem_responses,
)
from trailseal.web.meta import EVENT_READ, note_read
from trailseal.web.problems import Problem

router = APIRouter(prefix="/v1", tags=["events"])

_BATCH_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "oneOf": [
                    {"$ref": "#/components/schemas/EventV1"},
                    {
                        "type": "object",
                        "properties": {
                            "events": {
                                "type": "array",
                                "items": {"$ref": "#/components/schemas/EventV1"},
                                "minItems": 1,
                                "maxItems": ingest.MAX_BATCH_EVENTS,
                            }
                        },
                        "required": ["events"],
                        "additionalProperties": False,
                    },
                ]
            }
        }
    },
}


class Accepted(BaseModel):
    """202: written to the inbox (or already there, for duplicates)."""

    accepted: list[uuid.UUID]
    duplicates: list[uuid.UUID]


class SequencedEvent(BaseModel):
    id: uuid.UUID
    seq: int
    leaf_hash: str


class Sequenced(Accepted):
    """201: every event of the request is in the log."""

    sequenced: list[SequencedEvent]


class EventsPage(BaseModel):
    events: list[dict[str, Any]]
    next_cursor: str | None


async def _read_body(request: Request) -> bytes:
    """The body, refused with 413 before it is buffered past the limit."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > ingest.MAX_BODY_BYTES):
        raise Problem(413, "too-large", "Payload too large",
                      f"a request body is at most {ingest.MAX_BODY_BYTES} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > ingest.MAX_BODY_BYTES:
            raise Problem(413, "too-large", "Payload too large",
                          f"a request body is at most {ingest.MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _check_media_type(request: Request) -> None:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise Problem(415, "unsupported-media-type", "Unsupported media type",
                      "send the events as application/json")


@router.post(
    "/events",
    status_code=202,
    response_model=Accepted,
    responses={201: {"model": Sequenced}, 413: {}, 415: {}, 422: {}},
    openapi_extra={"requestBody": _BATCH_BODY},
    summary="Record one event or a batch of up to 1,000",
)
async def post_events(
    request: Request,
    who: Annotated[Principal, Depends(require("ingest"))],
    wait: Annotated[Literal["sequenced"] | None, Query()] = None,
) -> Any:
    """Validate and accept events. A batch is accepted whole or refused whole (422, with
    every bad field named). Re-sent ids are reported as duplicates and stored once.
    With ``?wait=sequenced`` the answer (201) waits until every event has its seq; if
    that takes longer than the configured wait, it is the plain 202."""
    _check_media_type(request)
    raw = await _read_body(request)
    try:
        raw_events = ingest.parse_body(raw)
    except ingest.TooLarge as exc:
        raise Problem(413, "too-large", "Payload too large", str(exc)) from None
    except BadJSON as exc:
        raise Problem(400, "bad-json", "Malformed JSON", str(exc)) from None
    received_at = ingest.now()
    prepared = ingest.prepare(raw_events, who.tenant, received_at)
    async with request.app.state.pool.connection() as conn:
        result = await ingest.write_inbox(conn, who.tenant, prepared, received_at)
    request.app.state.metrics.ingested.inc(len(result.accepted))
    sequencer = request.app.state.sequencer
    if sequencer is not None and result.accepted:
        sequencer.nudge()
    body = Accepted(accepted=result.accepted, duplicates=result.duplicates)
    if wait is None:
        return JSONResponse(body.model_dump(mode="json"), 202)
    ids = list(dict.fromkeys(e.id for e in prepared))
    found = await _wait_sequenced(request, who.tenant, ids)
    if len(found) < len(ids):
        # Safely in the inbox, but the sequencer did not get to them in time.
        return JSONResponse(body.model_dump(mode="json"), 202)
    done = Sequenced(
        **body.model_dump(),
        sequenced=[SequencedEvent(id=i, seq=found[i][0], leaf_hash=found[i][1].hex()) for i in ids],
    )
    return JSONResponse(done.model_dump(mode="json"), 201)


async def _wait_sequenced(
    request: Request, tenant: str, ids: list[uuid.UUID]
) -> dict[uuid.UUID, tuple[int, bytes]]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + request.app.state.settings.wait_sequenced_seconds
    delay = 0.002
    while True:
        async with request.app.state.pool.connection() as conn:
            found = await sequenced(conn, tenant, ids)
        if len(found) == len(ids) or loop.time() >= deadline:
            return found
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)


@router.get(
    "/events",
    response_model=EventsPage,
    responses=problem_responses(401, 403, 422),
    openapi_extra=documented(FilterParams, PagingParams),
    summary="Search events, newest first (or oldest first)",
)
async def list_events(
    request: Request,
    read: Annotated[Reading, Depends(reading())],
    asked: Annotated[tuple[EventFilter, Paging], Depends(filtered_page)],
) -> Any:
    """Events of the key's tenant matching every given filter, one page at a time, in
    (`occurred_at`, `seq`) order; pass `next_cursor` back as `cursor` for the next page.
    The meta-audit's own `audit.*` events are left out unless `include_meta=true` or
    `action` names them."""
    flt, page = asked
    found = await read_page(  # with the key's lookup, when the key was seen before
        read.conn, read.tenant, flt, limit=page.limit,
        cursor_key=request.app.state.cursor_key, after=page.cursor, order=page.order,
        warm=request.app.state.warm,
    )
    note = note_read(request, await read.checked(), "audit.events.queried", flt.asked())
    note.count = len(found.rows)
    # The documented EventsPage, written around the stored canonical bytes (no parse,
    # no model, no second JSON encoding of the same events).
    return Response(found.json(), media_type="application/json")


@router.get("/events/{event_id}", summary="One event by id")
async def read_event(
    request: Request,
    event_id: str,
    who: Annotated[Principal, Depends(require("read"))],
) -> Any:
    """The event with this id, with its seq, leaf hash and chain hash. Another tenant's
    id answers exactly as a missing one does."""
    note_read(request, who, EVENT_READ, {"id": event_id}, target=("event", event_id)).count = 1
    return await find_event(request, who.tenant, event_id, get_event)


Lookup = Callable[[AsyncConnection, str, uuid.UUID], Awaitable[dict[str, Any] | None]]


async def find_event(request: Request, tenant: str, event_id: str, lookup: Lookup) -> Any:
    """``lookup`` of one of ``tenant``'s events by id; a malformed, missing or another
    tenant's id is the same 404."""
    try:
        parsed = uuid.UUID(event_id)
    except ValueError:
        raise Problem(404, "not-found", "Not found", "no such event") from None
    async with request.app.state.pool.connection() as conn:
        found = await lookup(conn, tenant, parsed)
    if found is None:
        raise Problem(404, "not-found", "Not found", "no such event")
    return found
