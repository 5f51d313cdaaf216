"""The web console at ``/ui/``: sign in with an API key, search, event detail with the
before/after diff and in-browser receipt verification, target timelines and states,
exports, the log's status and the meta-audit.

Server-rendered (Jinja2) and enhanced with htmx; every page works without scripts but
receipt verification, which runs in the browser by design. Every read goes through the
same code as the API (``trailseal.reading``), always for the session's tenant, and is
meta-audited under the API's action names.
"""

from __future__ import annotations

import re
import secrets
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from starlette.background import BackgroundTask

from trailseal import ingest
from trailseal.bundle import export_bundle
from trailseal.errors import InvalidInput, NotFound
from trailseal.model import TYPE_PATTERN
from trailseal.reading.export import FORMATS, MEDIA_TYPES, export_chunks, filename
from trailseal.reading.query import EventFilter, get_event, query_events
from trailseal.reading.targets import state_at, target_filter, timeline
from trailseal.reading.tree import receipt, verifier_keys
from trailseal.runtime import witness
from trailseal.status import last_run, latest_checkpoint_info, witnessed_status
from trailseal.store import Role, transaction
from trailseal.tenants import authenticate, key_names
from trailseal.web import sessions
from trailseal.web.console import (
    PRESETS,
    ConsoleError,
    ConsoleRoute,
    ConsoleUser,
    SearchForm,
    SignInRequired,
    as_rfc3339,
    cookie_key,
    diff_rows,
    local_input,
    needs,
    render,
    search_form,
    secure,
    signed_in,
    static_response,
)
from trailseal.web.events import find_event
from trailseal.web.filters import parse_time
from trailseal.web.meta import EVENT_READ, RECEIPT_READ, note_log_read, note_read
from trailseal.web.problems import Problem

router = APIRouter(prefix="/ui", route_class=ConsoleRoute, include_in_schema=False)

PAGE = 50
User = Annotated[ConsoleUser, Depends(signed_in)]
_ENDED = {
    "expired": "Your session expired. Sign in again.",
    "revoked": "Your session ended: its key was revoked or lost the read scope.",
    "signed-out": "You are signed out.",
}
_META_ACTIONS = {
    "audit.events.queried": "searched",
    "audit.events.read": "read an event",
    "audit.events.receipt_read": "read a receipt",
    "audit.events.exported": "exported",
    "audit.events.streamed": "streamed",
    "audit.target.timeline_read": "read a timeline",
    "audit.target.state_read": "read a state",
    "audit.log.proof_read": "read a proof",
    "audit.log.tiles_read": "read the log",
}


def _safe_next(value: str | None) -> str:
    """Where to go after signing in: a console path, never another site."""
    if value and value.startswith("/ui/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/ui/"


# -- Static files, sign-in and sign-out --------------------------------------------------------


@router.get("/static/{digest}/{name}")
async def static(digest: str, name: str) -> Response:
    return static_response(digest, name)


@router.get("/sign-in")
async def sign_in_page(request: Request, next: str | None = None,
                       ended: str | None = None) -> Response:
    try:
        await signed_in(request)
    except SignInRequired:
        return _sign_in_form(request, next, message=_ENDED.get(ended or ""))
    return _redirect(_safe_next(next))


def _sign_in_form(request: Request, next: str | None, *, message: str | None = None,
                  error: str | None = None, status: int = 200) -> Response:
    nonce = secrets.token_urlsafe(24)
    response = render(request, "sign_in.html", {
        "csrf": sessions.sign_in_token(cookie_key(request), nonce),
        "next": _safe_next(next), "message": message, "error": error,
    }, status=status)
    sessions.set_cookie(response, sessions.SIGN_IN_COOKIE, nonce,
                        max_age=sessions.SIGN_IN_SECONDS, secure=secure(request))
    return response


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    form = await sessions.read_form(request)
    token = form.get("token", "").strip()
    next_path = form.get("next")
    async with request.app.state.pool.connection() as conn:
        principal = await authenticate(conn, token) if token else None
    if principal is None:
        return _sign_in_form(request, next_path, status=401,
                             error="That key is unknown or revoked.")
    if "read" not in principal.scopes:
        return _sign_in_form(request, next_path, status=403,
                             error="That key lacks the read scope the console needs.")
    settings = request.app.state.settings
    lifetime = settings.console_session_hours * 3600
    session = sessions.new_session(principal.tenant, principal.key_id, lifetime)
    response = _redirect(_safe_next(next_path))
    https = secure(request)
    sessions.set_cookie(response, sessions.COOKIE, sessions.seal(cookie_key(request), session),
                        max_age=int(lifetime), secure=https)
    sessions.set_cookie(response, sessions.HINT_COOKIE, "1", max_age=int(lifetime),
                        secure=https, same_site="lax")
    sessions.clear_cookie(response, sessions.SIGN_IN_COOKIE, secure=https)
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    response = _redirect("/ui/sign-in?ended=signed-out")
    https = secure(request)
    sessions.clear_cookie(response, sessions.COOKIE, secure=https)
    sessions.clear_cookie(response, sessions.HINT_COOKIE, secure=https)
    # Pages are no-store already; this also drops anything a browser kept of them.
    response.headers["Clear-Site-Data"] = '"cache"'
    return response


def _redirect(location: str) -> Response:
    return Response(status_code=303, headers={"Location": location})


# -- Search ------------------------------------------------------------------------------------


def _canonical(request: Request, form: SearchForm, path: str) -> str | None:
    """The URL of the same search without empty fields, when it differs (so a URL that
    is shared or bookmarked holds only what was asked)."""
    given = [k for k, _ in request.query_params.multi_items()]
    wanted = form.query(cursor=request.query_params.get("cursor", ""))
    if len(given) != len(set(given)) or any(
        not request.query_params.get(k, "").strip() for k in given
    ):
        return path + (f"?{wanted}" if wanted else "")
    return None


@router.get("/")
async def search(request: Request, user: User) -> Response:
    form = await search_form(request.query_params)
    canonical = _canonical(request, form, "/ui/")
    if canonical is not None and not request.headers.get("hx-request"):
        return _redirect(canonical)
    page = None
    if form.flt is not None:
        page = await _query(request, user, form.flt, request.query_params.get("cursor"))
    response = render(request, "search.html", {
        "form": form, "page": page, "presets": PRESETS, "local_input": local_input,
        "cursor": request.query_params.get("cursor"),
    }, status=200 if not form.errors else 422)
    if canonical is not None:
        response.headers["HX-Push-Url"] = canonical
    return response


async def _query(
    request: Request, user: ConsoleUser, flt: EventFilter, cursor: str | None
) -> Any:
    note = note_read(request, user.principal, "audit.events.queried", flt.asked())
    async with request.app.state.pool.connection() as conn:
        page = await query_events(conn, user.tenant, flt, limit=PAGE,
                                  cursor_key=request.app.state.cursor_key, after=cursor or None,
                                  warm=request.app.state.warm)
    note.count = len(page.events)
    return page


# -- One event ---------------------------------------------------------------------------------


@router.get("/events/{event_id}")
async def event_page(request: Request, event_id: str, user: User) -> Response:
    note = note_read(request, user.principal, EVENT_READ, {"id": event_id},
                     target=("event", event_id))
    try:
        event = await find_event(request, user.tenant, event_id, get_event)
    except Problem as exc:
        raise ConsoleError(404, "No such event",
                           "This log has no event with that id.") from exc
    note.count = 1
    return render(request, "event.html", {
        "event": event, "diff": diff_rows(event.get("changes") or {}),
    })


@router.get("/events/{event_id}/receipt")
async def event_receipt(request: Request, event_id: str, user: User) -> Response:
    """The same JSON as ``GET /v1/events/{id}/receipt``, for the browser's verifier."""
    note = note_read(request, user.principal, RECEIPT_READ, {"id": event_id},
                     target=("event", event_id))
    try:
        found = await find_event(request, user.tenant, event_id, receipt)
    except Problem:
        return JSONResponse({"detail": "no receipt for this event (yet)"}, 404)
    note.count = 1
    return JSONResponse(found)


@router.get("/log/key")
async def log_key(request: Request, user: User) -> Response:
    """The verifier key(s), one per line, as ``GET /v1/log/key``."""
    note_log_read(request, user.principal, "key")
    async with transaction(request.app.state.pool, Role.READER, user.tenant) as conn:
        keys = await verifier_keys(conn)
    return PlainTextResponse("".join(k + "\n" for k in keys))


# -- A target's timeline and state ----------------------------------------------------------------


_TYPE = re.compile(TYPE_PATTERN)


def _valid_target(target_type: str, target_id: str) -> bool:
    return (len(target_type) <= 64 and _TYPE.match(target_type) is not None
            and 1 <= len(target_id) <= 256)


def _no_target() -> ConsoleError:
    return ConsoleError(404, "No such target", "This log has no events about that target.")


@router.get("/targets/{target_type}/{target_id:path}")
async def target_page(request: Request, target_type: str, target_id: str, user: User) -> Response:
    flt = target_filter(target_type, target_id)
    note = note_read(request, user.principal, "audit.target.timeline_read", flt.asked())
    if not _valid_target(target_type, target_id):
        raise _no_target()
    cursor = request.query_params.get("cursor") or None
    async with request.app.state.pool.connection() as conn:
        page = await timeline(conn, user.tenant, flt, limit=PAGE,
                              cursor_key=request.app.state.cursor_key, after=cursor,
                              warm=request.app.state.warm)
    if page is None:
        raise _no_target()
    note.count = len(page.events)
    at = request.query_params.get("at", "").strip()
    name = next((e["target"].get("name") for e in page.events if e["target"].get("name")), None)
    return render(request, "target.html", {
        "target_type": target_type, "target_id": target_id, "name": name, "page": page,
        "at": at, "at_input": local_input(at) if at else "", "cursor": cursor,
        "state_url": f"/ui/state/{target_type}/{target_id}"
        + (f"?{urlencode({'at': at})}" if at else ""),
    })


@router.get("/state/{target_type}/{target_id:path}")
async def state_part(request: Request, target_type: str, target_id: str, user: User) -> Response:
    """The target's fields as of ``at`` (default now): a fragment for the target page,
    or a page of its own."""
    at = request.query_params.get("at", "").strip()
    asked: dict[str, Any] = {"target_type": target_type, "target_id": target_id}
    try:
        moment = parse_time("at", as_rfc3339(at), up=False) if at else None
    except Problem as exc:
        raise ConsoleError(422, "Invalid time", "“As of” must be a date and time.") from exc
    if moment is not None:
        asked["at"] = moment.isoformat()
    note = note_read(request, user.principal, "audit.target.state_read", asked)
    if not _valid_target(target_type, target_id):
        raise _no_target()
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    async with request.app.state.pool.connection() as conn:
        state = await state_at(conn, user.tenant, target_type, target_id, moment,
                               warm=request.app.state.warm)
    if state is None:
        raise _no_target()
    note.count = state.events
    fragment = request.headers.get("hx-request") and not request.headers.get("hx-boosted")
    return render(request, "state.html", {
        "state": state, "moment": moment, "target_type": target_type, "target_id": target_id,
        "fragment": bool(fragment),
    })


# -- Exports -----------------------------------------------------------------------------------


@router.get("/export")
async def export_page(request: Request, user: User) -> Response:
    needs(user, "export")
    form = await search_form(request.query_params)
    return render(request, "export.html", {
        "form": form, "presets": PRESETS, "local_input": local_input, "formats": FORMATS,
    }, status=200 if not form.errors else 422)


@router.get("/export/download")
async def export_download(request: Request, user: User) -> Response:
    """The same bytes as ``GET /v1/export`` with the same filters, streamed."""
    needs(user, "export")
    asked = request.query_params.get("format", "csv")
    kind = next((f for f in FORMATS if f == asked), None)
    if kind is None:
        raise ConsoleError(422, "Unknown format", "Export as csv, ndjson or json.")
    form = await search_form(request.query_params)
    if form.flt is None:
        raise ConsoleError(422, "Invalid filters", "; ".join(
            f"{k}: {v}" for k, v in form.errors.items()))
    flt = form.flt
    note = note_read(request, user.principal, "audit.events.exported",
                     {**flt.asked(), "format": kind})

    def counted(rows: int) -> None:
        note.count = rows

    async def body() -> Any:
        async with request.app.state.pool.connection() as conn:
            async for chunk in export_chunks(conn, user.tenant, flt, kind, on_row=counted,
                                             warm=request.app.state.warm):
                yield chunk

    stamp = ingest.now().strftime("%Y%m%dT%H%M%SZ")
    return StreamingResponse(body(), media_type=MEDIA_TYPES[kind], headers={
        "Content-Disposition":
            f'attachment; filename="{filename(user.tenant, kind, stamp)}"',
    })


@router.get("/export/bundle")
async def export_evidence(request: Request, user: User) -> Response:
    """An offline evidence bundle of the events *received* in [since, until)."""
    needs(user, "export")
    bounds = {}
    for name in ("since", "until"):
        text = request.query_params.get(name, "").strip()
        try:
            bounds[name] = parse_time(name, as_rfc3339(text)) if text else None
        except Problem as exc:
            raise ConsoleError(422, "Invalid time", f"{name} must be a date and time.") from exc
    asked = {k: v.isoformat() for k, v in bounds.items() if v is not None}
    note = note_read(request, user.principal, "audit.events.exported",
                     {**asked, "format": "bundle"})
    folder = Path(tempfile.mkdtemp(prefix="trailseal-bundle-"))
    stamp = ingest.now().strftime("%Y%m%dT%H%M%SZ")
    out = folder / f"trailseal-{user.tenant}-{stamp}-bundle.zip"
    try:
        async with request.app.state.pool.connection() as conn:
            manifest = await export_bundle(conn, user.tenant, out, since=bounds["since"],
                                           until=bounds["until"])
    except (InvalidInput, NotFound) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise ConsoleError(422, "Nothing to bundle", str(exc).capitalize() + ".") from exc
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    note.count = manifest["end"] - manifest["first"]
    return FileResponse(out, media_type="application/zip", filename=out.name,
                        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True))


# -- The log's status --------------------------------------------------------------------------


@router.get("/log")
async def log_status(request: Request, user: User) -> Response:
    note_log_read(request, user.principal, "checkpoint")
    settings = request.app.state.settings
    published = witness(settings)
    async with request.app.state.pool.connection() as conn:
        checkpoint = await latest_checkpoint_info(conn, user.tenant)
        witnessed = (await witnessed_status(conn, published.folder, user.tenant)
                     if published.folder is not None else None)
        run = await last_run(conn, user.tenant)
    sequencer = request.app.state.sequencer
    failures = sequencer.witness.failures if sequencer is not None and sequencer.witness else None
    return render(request, "log.html", {
        "checkpoint": checkpoint, "witnessed": witnessed, "run": run,
        "witness_url": bool(settings.witness_url), "witness_failures": failures,
    })


# -- The meta-audit ----------------------------------------------------------------------------


@router.get("/meta")
async def meta_audit(request: Request, user: User) -> Response:
    """Who read and exported what: the tenant's own ``audit.*`` events (admin scope)."""
    needs(user, "admin")
    chosen = request.query_params.get("action", "")
    action = chosen if chosen in _META_ACTIONS else "audit.*"
    flt = EventFilter(action=(action,))
    cursor = request.query_params.get("cursor") or None
    page = await _query(request, user, flt, cursor)
    async with request.app.state.pool.connection() as conn:
        names = {str(k): v for k, v in (await key_names(conn, user.tenant)).items()}
    return render(request, "meta.html", {
        "page": page, "names": names, "labels": _META_ACTIONS, "chosen": chosen if
        chosen in _META_ACTIONS else "", "cursor": cursor,
    })
