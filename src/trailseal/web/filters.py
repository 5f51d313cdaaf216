"""The query parameters that choose events, parsed once for every endpoint that reads
them: ``GET /v1/events``, target timelines, exports and the SIEM stream.

``Depends(event_filter)`` gives an :class:`~trailseal.reading.query.EventFilter`;
``Depends(paging)`` gives the order, page size and cursor; ``Depends(filtered_page)``
both, checked together. Every bad parameter is a 422 problem document that names it. A
text filter given empty is the same as one left out (as an HTML form sends an empty
field).

Each group of parameters is one pydantic model, validated in one call from the request's
query string (:func:`query_models`) rather than by FastAPI, which looks up and checks
each parameter on its own: about 0.1 ms less per request (``bench/four_questions.py``'s
cheapest question spends about 2 ms of SQL). A route documents the parameters with
``openapi_extra=documented(...)``: the same OpenAPI FastAPI writes for the models
declared as ``Annotated[Model, Query()]``, made by FastAPI from that declaration.
"""

from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from trailseal.errors import FieldProblem, InvalidInput
from trailseal.model import RFC3339
from trailseal.reading.query import MAX_LIMIT, MAX_TEXT, MIN_TEXT, EventFilter, Order
from trailseal.web.problems import MEDIA_TYPE, Problem

_TIME_EXAMPLE = "2026-03-12T09:00:00Z"
_PROBLEM_SCHEMA = {
    "type": "object",
    "description": "An RFC 9457 problem document.",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "index": {"type": ["integer", "null"]},
                    "path": {"type": "string", "description": "e.g. query.ip"},
                    "message": {"type": "string"},
                },
            },
        },
    },
    "required": ["type", "title", "status"],
}
_PROBLEMS = {
    401: "No bearer token, or an unknown or revoked one.",
    403: "The key lacks the `read` scope.",
    404: "No such target: it has no events in this key's tenant.",
    422: "A parameter is invalid (each is named in `errors[].path`), or the cursor was not "
    "issued for this tenant, these filters and this order.",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the problem documents a read endpoint may answer."""
    return {
        status: {
            "description": _PROBLEMS[status],
            "content": {MEDIA_TYPE: {"schema": _PROBLEM_SCHEMA}},
        }
        for status in statuses
    }


def _invalid(parameter: str, message: str) -> Problem:
    return Problem(422, "invalid-input", "Invalid input", f"{parameter} {message}",
                   [FieldProblem(None, f"query.{parameter}", message)])


def parse_time(parameter: str, value: str | None, *, up: bool = True) -> datetime | None:
    """The RFC 3339 time (with an offset) in query parameter ``parameter``; None when
    empty; a 422 problem naming the parameter otherwise. Digits past the microsecond
    round ``up`` (for a bound such as ``since``, so nothing before it gets in) or down."""
    if not value:
        return None
    text = value.strip()
    match = RFC3339.match(text)
    if not match:
        hint = ""
        if " " in text and RFC3339.match(text.replace(" ", "+")):
            hint = "; a + in a URL stands for a space, so write the offset as %2B or use Z"
        raise _invalid(parameter, f"must be an RFC 3339 time with an offset, such as "
                                  f"{_TIME_EXAMPLE}{hint}")
    try:
        parsed = datetime.fromisoformat(text.upper())
        if up and (match[1] or "")[7:].strip("0"):
            parsed += timedelta(microseconds=1)
    except (ValueError, OverflowError):
        raise _invalid(parameter, f"{value!r} is not a valid date and time") from None
    return parsed


Since = Annotated[str | None, Query(
    description="RFC 3339 time with an offset; `occurred_at >= since`.",
    examples=[_TIME_EXAMPLE])]
Until = Annotated[str | None, Query(
    description="RFC 3339 time with an offset; `occurred_at < until`.",
    examples=[_TIME_EXAMPLE])]


def _actions(values: list[str] | None) -> tuple[str, ...]:
    found: list[str] = []
    for value in values or ():
        found += [part.strip() for part in value.split(",") if part.strip()]
    return tuple(found)


class FilterParams(BaseModel):
    """The filter's query parameters, validated as one model (one call into pydantic's
    core, where a parameter each would be twenty calls through FastAPI)."""

    model_config = ConfigDict(extra="ignore")

    actor_id: str | None = Field(
        None, max_length=256, description="The actor's id (`actor.id`), exactly.")
    actor_type: Literal["user", "service", "api_key", "system"] | None = Field(
        None, description="The actor's type (`actor.type`).")
    target_type: str | None = Field(
        None, max_length=64, description="The target's type (`target.type`), exactly.")
    target_id: str | None = Field(
        None, max_length=256, description="The target's id (`target.id`), exactly.")
    action: list[str] | None = Field(
        None, description="Any of these actions: exact (`user.role.updated`) or a prefix "
        "(`auth.login.*`). Repeat the parameter or separate with commas; exact and prefix "
        "may be mixed. Naming actions also finds `audit.*` ones (see `include_meta`).",
        examples=["auth.login.failed", "auth.login.*,user.role.updated"])
    outcome: Literal["success", "failure"] | None = Field(
        None, description="`outcome.status`.")
    ip: str | None = Field(
        None, max_length=64, description="`context.ip` is this address, or falls in this "
        "CIDR network (IPv4 or IPv6), e.g. `203.0.113.0/24` or `2001:db8::/32`.")
    since: str | None = Field(
        None, description="RFC 3339 time with an offset; `occurred_at >= since`.",
        examples=[_TIME_EXAMPLE])
    until: str | None = Field(
        None, description="RFC 3339 time with an offset; `occurred_at < until`.",
        examples=[_TIME_EXAMPLE])
    correlation_id: str | None = Field(
        None, max_length=256, description="`context.correlation_id`, exactly.")
    request_id: str | None = Field(
        None, max_length=256, description="`context.request_id`, exactly.")
    service: str | None = Field(
        None, max_length=256, description="`context.service`, exactly.")
    q: str | None = Field(
        None, max_length=MAX_TEXT,
        description=f"Text ({MIN_TEXT} to {MAX_TEXT} characters, any case) found in the "
        "actor's or the target's id or name.")
    include_meta: bool = Field(
        False, description="Also the `audit.*` events trailseal writes about reads of the "
        "log (the meta-audit). Without it they are left out, unless `action` is given.")


def _many(model: type[BaseModel]) -> frozenset[str]:
    """The fields of ``model`` that take a repeated parameter (a list)."""
    def takes_list(annotation: Any) -> bool:  # list[X], or list[X] | None
        return typing.get_origin(annotation) is list or any(
            typing.get_origin(a) is list for a in typing.get_args(annotation))

    return frozenset(name for name, field in model.model_fields.items()
                     if takes_list(field.annotation))


_LISTS: dict[type[BaseModel], frozenset[str]] = {}


def query_models(request: Request, *models: type[BaseModel]) -> list[Any]:
    """Each of ``models`` validated from the request's query string, as FastAPI would
    for ``Annotated[Model, Query()]``: a list field takes every value of its repeated
    parameter, another field the last; a parameter not given takes the default; unknown
    parameters are ignored. Errors of every model at once, as one 422 naming each
    ``query.<name>``."""
    given = request.query_params
    found: list[Any] = []
    errors: list[Any] = []
    for model in models:
        many = _LISTS.get(model)
        if many is None:
            many = _LISTS[model] = _many(model)
        values = {name: given.getlist(name) if name in many else given[name]
                  for name in model.model_fields if name in given}
        try:
            found.append(model.model_validate(values))
        except ValidationError as exc:
            errors += [{**e, "loc": ("query", *e["loc"])} for e in exc.errors(include_url=False)]
    if errors:
        raise RequestValidationError(errors)
    return found


def documented(*models: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads ``models`` with :func:`query_models`:
    the parameters FastAPI documents for ``Annotated[Model, Query()]`` of each."""
    probe = FastAPI()

    def endpoint(**_: Any) -> None:
        return None

    endpoint.__signature__ = inspect.Signature([  # type: ignore[attr-defined]
        inspect.Parameter(f"p{i}", inspect.Parameter.KEYWORD_ONLY,
                          annotation=Annotated[model, Query()])
        for i, model in enumerate(models)
    ])
    probe.get("/")(endpoint)
    spec = get_openapi(title="probe", version="0", routes=probe.routes)
    return {"parameters": spec["paths"]["/"]["get"]["parameters"]}


async def event_filter(request: Request) -> EventFilter:
    """The filters of one request; each set one must match (AND)."""
    params: FilterParams = query_models(request, FilterParams)[0]
    return filter_of(params)


def filter_of(params: FilterParams) -> EventFilter:
    """The :class:`EventFilter` of valid ``params``; a 422 problem naming a time, an
    address or an action that is not one."""
    try:
        return EventFilter(
            actor_id=params.actor_id or None,
            target_type=params.target_type or None,
            target_id=params.target_id or None,
            action=_actions(params.action),
            outcome=params.outcome,
            since=parse_time("since", params.since),
            until=parse_time("until", params.until),
            correlation_id=params.correlation_id or None,
            request_id=params.request_id or None,
            actor_type=params.actor_type,
            service=params.service or None,
            ip=params.ip or None,
            q=params.q or None,
            include_meta=params.include_meta,
        )
    except InvalidInput as exc:
        problems = [FieldProblem(p.index, f"query.{p.path}", p.message) for p in exc.problems]
        raise Problem(422, "invalid-input", "Invalid input", str(exc), problems) from None


@dataclass(frozen=True)
class Paging:
    """Which page of the results: order, page size, and where the last page ended."""

    order: Order
    limit: int
    cursor: str | None


class PagingParams(BaseModel):
    """The paging query parameters, validated as one model."""

    model_config = ConfigDict(extra="ignore")

    order: Literal["asc", "desc"] = Field(
        "desc", description="`desc` (default): newest first; `asc`: oldest first. Both by "
        "`occurred_at`, then `seq`.")
    limit: int = Field(
        100, ge=1, le=MAX_LIMIT, description=f"Events per page, 1 to {MAX_LIMIT}.")
    cursor: str | None = Field(
        None, max_length=512, description="The `next_cursor` of the page before. It is bound "
        "to the tenant, the filters and the order it was issued for.")


async def paging(request: Request) -> Paging:
    """The paging parameters of one request."""
    return _paging(query_models(request, PagingParams)[0])


def _paging(params: PagingParams) -> Paging:
    return Paging(params.order, params.limit, params.cursor or None)


async def filtered_page(request: Request) -> tuple[EventFilter, Paging]:
    """``event_filter`` and ``paging`` of one request, every model error named at once."""
    filters, page = query_models(request, FilterParams, PagingParams)
    return filter_of(filters), _paging(page)
