"""Request context for ASGI apps (Starlette, FastAPI, ...), as a plain ASGI middleware.

Not ``BaseHTTPMiddleware``: that runs the app in another task, so context variables set
around it do not reach the endpoint reliably. Here the app runs inside our own call, so the
context is bound for the whole request, streaming bodies and background tasks included.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any

from trailseal.client import context

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
AsgiActorResolver = Callable[
    [Scope], Mapping[str, str] | Awaitable[Mapping[str, str] | None] | None
]


class AuditContextMiddleware:
    """Bind a ``RequestContext`` for each HTTP request and echo its request id.

    ``actor_resolver`` gets the ASGI scope (wrap it in ``starlette.requests.Request`` if
    you like) and may be sync or async; it runs before routing, so it sees what outer
    middleware left in the scope (``scope["user"]`` from Starlette's
    ``AuthenticationMiddleware``, say). Endpoints that authenticate later call
    ``context.set_actor``. ``session_cookie`` names the cookie whose hash becomes the
    session id; None records no session.

    Install it once, outermost: a second copy further in would bind a context of its own
    with another generated request id. If the server already rewrites the client address
    from ``X-Forwarded-For`` (uvicorn's ``--proxy-headers``, on by default for
    127.0.0.1), the peer we see is the client and ``trusted_proxies`` can stay empty.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        trusted_proxies: Iterable[str] = (),
        request_id_header: str = "X-Request-ID",
        session_cookie: str | None = None,
        actor_resolver: AsgiActorResolver | None = None,
    ) -> None:
        self.app = app
        self.trusted_proxies = context.TrustedProxies(trusted_proxies)
        self.request_id_header = request_id_header
        self.session_cookie = session_cookie
        self.actor_resolver = actor_resolver
        self._response_header = request_id_header.lower().encode("latin-1")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        client = scope.get("client")
        ctx = context.build_request_context(
            lambda name: headers.get(name.lower()),
            peer=client[0] if client else None,
            session_token=_cookie(headers.get("cookie"), self.session_cookie),
            trusted_proxies=self.trusted_proxies,
            request_id_header=self.request_id_header,
        )
        request_id = (ctx.request_id or "").encode("latin-1")

        async def send_with_request_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Replace any value the app set: the id the caller sees must be the one
                # recorded in its audit events.
                kept = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.lower() != self._response_header
                ]
                message["headers"] = [*kept, (self._response_header, request_id)]
            await send(message)

        token = context.bind(ctx)
        try:
            await self._resolve_actor(scope)
            await self.app(scope, receive, send_with_request_id)
        finally:
            context.reset(token)

    async def _resolve_actor(self, scope: Scope) -> None:
        if self.actor_resolver is None:
            return
        try:
            actor = self.actor_resolver(scope)
            if inspect.isawaitable(actor):
                actor = await actor
            if actor is not None:
                context.set_actor(actor)
        except Exception:
            context.logger.exception(
                "trailseal actor resolver failed; the request continues without actor"
            )


def _headers(scope: Scope) -> dict[str, str]:
    # Repeated headers are joined with "," as HTTP allows (RFC 9110 §5.3); for the
    # single-valued ones (traceparent, X-Request-ID) that makes the value invalid, which
    # is the right answer for a request that sent two. HTTP/2 splits Cookie into one
    # header per cookie, joined back with "; " (RFC 9113 §8.2.3).
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", []):
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        separator = "; " if name == "cookie" else ","
        headers[name] = f"{headers[name]}{separator}{value}" if name in headers else value
    return headers


def _cookie(header: str | None, name: str | None) -> str | None:
    if not header or not name:
        return None
    for pair in header.split(";"):
        key, sep, value = pair.partition("=")
        if sep and key.strip() == name:
            return value.strip().strip('"') or None
    return None
