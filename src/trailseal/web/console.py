"""The console's plumbing: templates, static files, security headers, the signed-in
user, and the search form that turns into an :class:`EventFilter`.

Every console route is a :class:`ConsoleRoute`: whatever it answers (a page, a
redirect to sign in, a designed error page) leaves with the console's security headers
(a strict Content-Security-Policy, no framing, no referrer, ``no-store``), and every
POST is refused with 403 unless it carries the session's CSRF token.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute

from trailseal.errors import InvalidInput, NotFound
from trailseal.reading.query import EventFilter
from trailseal.tenants import Principal, live_key
from trailseal.web import sessions
from trailseal.web.filters import FilterParams, filter_of
from trailseal.web.problems import Problem

log = logging.getLogger(__name__)

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
STATIC_FILES = (
    "console.css", "console.js", "verify.js", "resume.js", "htmx.min.js", "favicon.svg",
)
_STATIC_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}


# -- Templates and static files --------------------------------------------------------------


@cache
def static_files() -> dict[str, tuple[str, bytes]]:
    """Each static file's name -> (content digest, bytes), read from the package."""
    folder = resources.files("trailseal.web") / "static"
    found = {}
    for name in STATIC_FILES:
        data = (folder / name).read_bytes()
        found[name] = (hashlib.sha256(data).hexdigest()[:16], data)
    return found


def static_url(name: str) -> str:
    """The URL of a static file, with its content digest in it (so it can be cached for
    a year: a new version has a new URL)."""
    digest, _ = static_files()[name]
    return f"/ui/static/{digest}/{name}"


def static_response(digest: str, name: str) -> Response:
    found = static_files().get(name)
    if found is None or found[0] != digest:
        return Response("not found", 404, media_type="text/plain")
    suffix = name[name.rfind("."):]
    return Response(found[1], media_type=_STATIC_TYPES[suffix], headers={
        "Cache-Control": "public, max-age=31536000, immutable"})


def _time(value: Any) -> str:
    """``2026-03-12T09:02:00.000Z`` -> ``2026-03-12 09:02:00``, for reading."""
    if isinstance(value, datetime):
        value = value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    text = str(value or "")
    return text.replace("T", " ")[:19]


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True)


@cache
def templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("trailseal.web", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["static"] = static_url
    env.filters["time"] = _time
    env.filters["json"] = _json
    env.filters["q"] = lambda value: quote(str(value), safe="")
    return env


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def render(
    request: Request, template: str, context: dict[str, Any] | None = None, *, status: int = 200
) -> HTMLResponse:
    """A page of the console, with the signed-in user (if any) for its header."""
    user: ConsoleUser | None = getattr(request.state, "console_user", None)
    values = {"user": user, "path": request.url.path, "htmx": is_htmx(request),
              "now": datetime.now(UTC), **(context or {})}
    return HTMLResponse(templates().get_template(template).render(values), status)


# -- The signed-in user ----------------------------------------------------------------------


@dataclass(frozen=True)
class ConsoleUser:
    """A signed-in console user: the key's principal (tenant, id, live scopes) and the
    session's CSRF token."""

    principal: Principal
    csrf: str

    @property
    def tenant(self) -> str:
        return self.principal.tenant

    def can(self, scope: str) -> bool:
        return scope in self.principal.scopes


class SignInRequired(Exception):
    """No valid session: the browser is sent to sign in (``reason`` says why)."""

    def __init__(self, reason: str | None = None) -> None:
        super().__init__(reason or "sign in")
        self.reason = reason


class ConsoleError(Exception):
    """An error the console answers with a designed page."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


def cookie_key(request: Request) -> bytes:
    return sessions.session_key(request.app.state.cursor_key)


def secure(request: Request) -> bool:
    return sessions.is_https(request, request.app.state.settings.behind_proxy)


async def signed_in(request: Request) -> ConsoleUser:
    """The signed-in user, or :class:`SignInRequired`. The key is looked up on every
    request, so a revoked key (or one that lost the read scope) ends the session."""
    value = request.cookies.get(sessions.COOKIE)
    session = sessions.unseal(cookie_key(request), value) if value else None
    if session is None:
        raise SignInRequired("expired" if value else None)
    async with request.app.state.pool.connection() as conn:
        principal = await live_key(conn, session.tenant, session.key_id)
    if principal is None or "read" not in principal.scopes:
        raise SignInRequired("revoked")
    user = ConsoleUser(principal, session.csrf)
    request.state.console_user = user
    return user


def needs(user: ConsoleUser, scope: str) -> None:
    """A designed 403 unless ``user``'s key has ``scope``."""
    if not user.can(scope):
        raise ConsoleError(403, "Not allowed",
                           f"This page needs a key with the {scope!r} scope; yours has "
                           f"{', '.join(sorted(user.principal.scopes))}.")


async def _csrf_ok(request: Request) -> bool:
    try:
        form = await sessions.read_form(request)
    except ValueError:
        return False
    supplied = request.headers.get(sessions.CSRF_HEADER) or form.get(sessions.CSRF_FIELD)
    key = cookie_key(request)
    value = request.cookies.get(sessions.COOKIE)
    session = sessions.unseal(key, value) if value else None
    if session is not None and sessions.same(supplied, session.csrf):
        return True
    nonce = request.cookies.get(sessions.SIGN_IN_COOKIE)
    return (request.url.path == "/ui/sign-in" and nonce is not None
            and sessions.same(supplied, sessions.sign_in_token(key, nonce)))


def _sign_in_redirect(request: Request, reason: str | None) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    query = {"next": target} if request.method == "GET" else {}
    if reason:
        query["ended"] = reason
    location = "/ui/sign-in" + (f"?{urlencode(query)}" if query else "")
    if is_htmx(request):
        response: Response = Response(status_code=200, headers={"HX-Redirect": location})
    elif (request.method == "GET" and request.cookies.get(sessions.HINT_COOKIE)
          and request.headers.get("sec-fetch-site") == "cross-site"):
        # A link followed from another site: SameSite=Strict held the session cookie
        # back. A navigation this page starts itself is same-site and carries it.
        response = render(request, "resume.html", status=200)
    else:
        response = RedirectResponse(location, 303)
    if reason:
        sessions.clear_cookie(response, sessions.COOKIE, secure=secure(request))
    return response


def _error_page(request: Request, status: int, title: str, detail: str) -> Response:
    return render(request, "error.html", {"status": status, "title": title, "detail": detail},
                  status=status)


class ConsoleRoute(APIRoute):
    """A console route: CSRF check on POST, designed error pages, security headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def console_handler(request: Request) -> Response:
            try:
                if request.method == "POST" and not await _csrf_ok(request):
                    response = _error_page(request, 403, "Form expired",
                                           "This form's security token is missing or no "
                                           "longer valid. Reload the page and try again.")
                else:
                    response = await handler(request)
            except SignInRequired as exc:
                response = _sign_in_redirect(request, exc.reason)
            except ConsoleError as exc:
                response = _error_page(request, exc.status, exc.title, exc.detail)
            except Problem as exc:
                response = _error_page(request, exc.status, exc.title, exc.detail or "")
            except (InvalidInput, RequestValidationError) as exc:
                response = _error_page(request, 422, "Invalid request", str(exc))
            except NotFound as exc:
                response = _error_page(request, 404, "Not found", str(exc))
            except Exception:
                log.exception("console: %s %s failed", request.method, request.url.path)
                response = _error_page(request, 500, "Something went wrong",
                                       "The server could not answer this page. The error "
                                       "is in the service's log; try again in a moment.")
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            response.headers.setdefault("Cache-Control", "no-store")
            return response

        return console_handler


# -- The search form -------------------------------------------------------------------------

PRESETS: dict[str, tuple[str, timedelta]] = {
    "1h": ("Last hour", timedelta(hours=1)),
    "24h": ("Last 24 hours", timedelta(hours=24)),
    "7d": ("Last 7 days", timedelta(days=7)),
    "30d": ("Last 30 days", timedelta(days=30)),
    "90d": ("Last 90 days", timedelta(days=90)),
}
FILTER_FIELDS = (
    "q", "actor_id", "actor_type", "target_type", "target_id", "action", "outcome", "ip",
    "range", "since", "until", "correlation_id", "request_id", "service", "include_meta",
)
ADVANCED = ("actor_type", "correlation_id", "request_id", "service", "include_meta")
_LIMITS = {"actor_id": 256, "target_type": 64, "target_id": 256, "ip": 64, "q": 256,
           "correlation_id": 256, "request_id": 256, "service": 256, "action": 4000,
           "since": 64, "until": 64}
_CHOICES = {"actor_type": ("user", "service", "api_key", "system"),
            "outcome": ("success", "failure"), "range": ("custom", *PRESETS),
            "include_meta": ("true",)}
_LOCAL_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?$")


def as_rfc3339(text: str) -> str:
    """A time from the form: a ``datetime-local`` value (no offset) is read as UTC."""
    text = text.strip()
    if _LOCAL_TIME.match(text):
        return text + ("Z" if text.count(":") == 2 else ":00Z")
    return text


def local_input(text: str) -> str:
    """The value a ``datetime-local`` input shows for a time from the URL (UTC)."""
    try:
        parsed = datetime.fromisoformat(as_rfc3339(text).replace("Z", "+00:00"))
    except ValueError:
        return ""
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S").removesuffix(":00")


@dataclass
class SearchForm:
    """The search form as the URL gives it: its values, the filter they make, and a
    message per field that is wrong."""

    values: dict[str, str]
    flt: EventFilter | None = None
    errors: dict[str, str] = field(default_factory=dict)

    def query(self, **extra: str) -> str:
        """The URL query of these filters (empty ones left out), plus ``extra``."""
        return urlencode({**self.values, **{k: v for k, v in extra.items() if v}})

    @property
    def active(self) -> bool:
        return bool(self.values)

    def advanced(self) -> bool:
        """Whether a filter of the form's "more filters" part is set."""
        return any(k in self.values for k in ADVANCED)


async def search_form(params: Mapping[str, str], now: datetime | None = None) -> SearchForm:
    """Read the filters from ``params`` (the URL query) as ``GET /v1/events`` does."""
    values = {k: params[k].strip() for k in FILTER_FIELDS if params.get(k, "").strip()}
    form = SearchForm(values)
    for name, text in values.items():
        if name in _LIMITS and len(text) > _LIMITS[name]:
            form.errors[name] = f"at most {_LIMITS[name]} characters"
        elif name in _CHOICES and text not in _CHOICES[name]:
            form.errors[name] = f"one of {', '.join(_CHOICES[name])}"
    if form.errors:
        return form
    preset = PRESETS.get(values.get("range", ""))
    since, until = values.get("since"), values.get("until")
    if preset is not None:
        since = ((now or datetime.now(UTC)) - preset[1]).isoformat()
        until = None
    try:
        # The limits and choices above were checked already: no validation again.
        form.flt = filter_of(FilterParams.model_construct(
            actor_id=values.get("actor_id"), actor_type=values.get("actor_type"),
            target_type=values.get("target_type"), target_id=values.get("target_id"),
            action=[values["action"]] if "action" in values else None,
            outcome=values.get("outcome"),
            ip=values.get("ip"),
            since=as_rfc3339(since) if since else None,
            until=as_rfc3339(until) if until else None,
            correlation_id=values.get("correlation_id"), request_id=values.get("request_id"),
            service=values.get("service"), q=values.get("q"),
            include_meta=values.get("include_meta") == "true",
        ))
    except Problem as exc:
        for problem in exc.errors:
            form.errors[problem.path.removeprefix("query.")] = problem.message
        if not exc.errors:
            form.errors["form"] = exc.detail or exc.title
    return form


# -- Event presentation ----------------------------------------------------------------------


@dataclass(frozen=True)
class DiffRow:
    """One field of an event's ``changes``, for the side-by-side view."""

    field: str
    kind: str  # added, removed, changed, unchanged
    before: str | None
    after: str | None


def _shown(change: Mapping[str, Any], side: str) -> str | None:
    value = change.get(side)
    return None if value is None else json.dumps(value, ensure_ascii=False, indent=2,
                                                 sort_keys=True)


def diff_rows(changes: Mapping[str, Any]) -> list[DiffRow]:
    """``changes`` ({field: {before, after}}) as rows: a field with no ``before`` was
    added, one with no ``after`` removed (as state replay reads a null ``after``)."""
    rows = []
    for name in sorted(changes):
        change = changes[name] if isinstance(changes[name], Mapping) else {}
        before, after = _shown(change, "before"), _shown(change, "after")
        if before is None and after is not None:
            kind = "added"
        elif after is None and before is not None:
            kind = "removed"
        elif before != after:
            kind = "changed"
        else:
            kind = "unchanged"
        rows.append(DiffRow(name, kind, before, after))
    return rows
