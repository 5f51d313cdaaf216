"""``GET /v1/export``: a tenant's events as a CSV, NDJSON or JSON download, streamed."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from trailseal import ingest
from trailseal.reading.export import COLUMNS, MEDIA_TYPES, Format, export_chunks, filename
from trailseal.reading.query import EventFilter
from trailseal.tenants import Principal
from trailseal.web.auth import require
from trailseal.web.filters import FilterParams, documented, event_filter, problem_responses
from trailseal.web.meta import note_read

router = APIRouter(prefix="/v1", tags=["export"])

EXPORTED = "audit.events.exported"

_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The download, streamed as it is read (`Content-Disposition: "
        "attachment`). `csv`: a header row, then one row per event in the columns "
        f"{', '.join(f'`{c}`' for c in COLUMNS)}; cells that start with `=`, `+`, `-`, `@`, "
        "a tab or a carriage return get a leading `'`. `ndjson`: one event per line. "
        "`json`: one array of events. Each event as `GET /v1/events` gives it.",
        "headers": {
            "Content-Disposition": {
                "description": "`attachment; filename=\"trailseal-<tenant>-<time>.<format>\"`",
                "schema": {"type": "string"},
            }
        },
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/x-ndjson": {"schema": {"type": "string"}},
            "application/json": {
                "schema": {"type": "array", "items": {"type": "object"}}
            },
        },
    },
    **problem_responses(401),
    403: {**problem_responses(403)[403], "description": "The key lacks the `export` scope."},
    422: {**problem_responses(422)[422],
          "description": "A parameter is invalid; each is named in `errors[].path`."},
}


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses=_RESPONSES,
    openapi_extra=documented(FilterParams),
    summary="Export events as CSV, NDJSON or JSON",
)
async def export_events(
    request: Request,
    who: Annotated[Principal, Depends(require("export"))],
    flt: Annotated[EventFilter, Depends(event_filter)],
    format: Annotated[Format, Query(
        description="`csv`, `ndjson` (one event per line) or `json` (one array).")] = "ndjson",
) -> StreamingResponse:
    """Every event of the key's tenant matching the filters (the same as `GET
    /v1/events`), oldest first by (`occurred_at`, `seq`), from one consistent snapshot.
    The answer is written while the events are read, in constant memory at any size; if
    the read fails midway the connection is cut, so a download that ends early is never
    mistaken for a complete one (a complete JSON export ends with `]`)."""
    note = note_read(request, who, EXPORTED, {**flt.asked(), "format": format})
    request.app.state.metrics.exports.labels(format).inc()

    def counted(rows: int) -> None:
        note.count = rows

    async def body() -> Any:
        async with request.app.state.pool.connection() as conn:
            async for chunk in export_chunks(conn, who.tenant, flt, format, on_row=counted,
                                             warm=request.app.state.warm):
                yield chunk

    stamp = ingest.now().strftime("%Y%m%dT%H%M%SZ")
    return StreamingResponse(
        body(),
        media_type=MEDIA_TYPES[format],
        headers={
            "Content-Disposition": f'attachment; filename="{filename(who.tenant, format, stamp)}"',
            "Cache-Control": "no-store",
        },
    )
