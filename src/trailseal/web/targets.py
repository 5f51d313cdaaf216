"""``/v1/targets/{type}/{id}``: one target's timeline, and its fields as of a moment.

A target with no events in the key's tenant is a 404, the same whether it never existed,
belongs to another tenant, or is not even a well-formed type and id.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from trailseal.model import TYPE_PATTERN, format_time
from trailseal.reading.targets import state_at, target_filter, timeline
from trailseal.tenants import Principal
from trailseal.web.auth import require
from trailseal.web.events import EventsPage
from trailseal.web.filters import (
    Paging,
    PagingParams,
    Since,
    Until,
    documented,
    paging,
    parse_time,
    problem_responses,
)
from trailseal.web.meta import note_read
from trailseal.web.problems import Problem

router = APIRouter(prefix="/v1/targets", tags=["targets"])

_TYPE = re.compile(TYPE_PATTERN)
TargetType = Annotated[str, Path(
    description="The target's type (`target.type`), e.g. `user`.", examples=["user"])]
TargetId = Annotated[str, Path(
    description="The target's id (`target.id`), percent-encoded; it may contain `/`.",
    examples=["u_42"])]


class TargetRef(BaseModel):
    type: str
    id: str


class TargetState(BaseModel):
    """A target's fields as of ``at``, rebuilt from the ``changes`` of its events."""

    target: TargetRef
    at: str = Field(description="The moment, in UTC at the log's millisecond precision.")
    fields: dict[str, Any] = Field(
        description="Each field's `after` in its latest change at or before `at`; a field "
        "whose latest change has a null `after` was removed and is left out.")
    seq: int | None = Field(
        description="The seq of the last event whose changes were replayed; null if none "
        "occurred at or before `at`.")
    events: int = Field(description="How many events' changes were replayed.")


def _no_such_target() -> Problem:
    return Problem(404, "not-found", "Not found", "no such target")


def _check(target_type: str, target_id: str) -> None:
    # A type or id no event could carry is simply a target that has no events.
    if len(target_type) > 64 or not _TYPE.match(target_type) or not 1 <= len(target_id) <= 256:
        raise _no_such_target()


@router.get(
    "/{target_type}/{target_id:path}/timeline",
    response_model=EventsPage,
    responses=problem_responses(401, 403, 404, 422),
    openapi_extra=documented(PagingParams),
    summary="A target's events, newest first (or oldest first)",
)
async def target_timeline(
    request: Request,
    target_type: TargetType,
    target_id: TargetId,
    who: Annotated[Principal, Depends(require("read"))],
    page: Annotated[Paging, Depends(paging)],
    since: Since = None,
    until: Until = None,
) -> Any:
    """The events whose target is this one, paged and ordered exactly as `GET /v1/events`
    with `target_type` and `target_id` set (its cursors are interchangeable with that
    query's). 404 when the target has no events at all."""
    flt = target_filter(target_type, target_id, since=parse_time("since", since),
                        until=parse_time("until", until))
    note = note_read(request, who, "audit.target.timeline_read", flt.asked())
    _check(target_type, target_id)
    async with request.app.state.pool.connection() as conn:
        found = await timeline(
            conn, who.tenant, flt, limit=page.limit, cursor_key=request.app.state.cursor_key,
            after=page.cursor, order=page.order, warm=request.app.state.warm,
        )
    if found is None:
        raise _no_such_target()
    note.count = len(found.events)
    return {"events": found.events, "next_cursor": found.next_cursor}


@router.get(
    "/{target_type}/{target_id:path}/state",
    response_model=TargetState,
    responses=problem_responses(401, 403, 404, 422),
    summary="A target's fields as of a moment",
)
async def target_state(
    request: Request,
    target_type: TargetType,
    target_id: TargetId,
    who: Annotated[Principal, Depends(require("read"))],
    at: Annotated[str | None, Query(
        description="RFC 3339 time with an offset (default: now). Events that occurred "
        "at or before it count, by `occurred_at`, the producer's time.",
        examples=["2026-03-12T09:00:00Z"])] = None,
) -> Any:
    """The target's fields as of `at`: the `changes` of its events replayed in
    (`occurred_at`, `seq`) order, up to and including `at`. 404 when the target has no
    events at all."""
    asked: dict[str, Any] = {"target_type": target_type, "target_id": target_id}
    moment = parse_time("at", at, up=False)
    if moment is not None:
        asked["at"] = moment.isoformat()
    note = note_read(request, who, "audit.target.state_read", asked)
    _check(target_type, target_id)
    # Stored times have millisecond precision, so "at or before" the millisecond is
    # the same as at or before the exact moment.
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    async with request.app.state.pool.connection() as conn:
        state = await state_at(conn, who.tenant, target_type, target_id, moment,
                               warm=request.app.state.warm)
    if state is None:
        raise _no_such_target()
    note.count = state.events
    return {
        "target": {"type": target_type, "id": target_id},
        "at": format_time(moment),
        "fields": state.fields,
        "seq": state.seq,
        "events": state.events,
    }
