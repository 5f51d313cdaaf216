"""Bearer-token authentication and scopes. The tenant always comes from the key."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request
from psycopg import AsyncConnection

from trailseal.tenants import Principal, authenticate, authenticated
from trailseal.web.problems import Problem

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="trailseal"'}


def _token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(401, "unauthorized", "Unauthorized", "send Authorization: Bearer <token>",
                      headers=_CHALLENGE)
    return token.strip()


def _admitted(found: Principal | None, scope: str) -> Principal:
    """``found``, when it holds ``scope``; else 401 (no such live key) or 403."""
    if found is None:
        raise Problem(401, "unauthorized", "Unauthorized", "unknown or revoked token",
                      headers=_CHALLENGE)
    if scope not in found.scopes:
        raise Problem(403, "forbidden", "Forbidden", f"this key lacks the {scope!r} scope")
    return found


def require(scope: str) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency that authenticates and demands ``scope`` (403 without it)."""

    async def dependency(request: Request) -> Principal:
        token = _token(request)
        async with request.app.state.pool.connection() as conn:
            found = await authenticate(conn, token)
        return _admitted(found, scope)

    return dependency


@dataclass(frozen=True)
class Reading:
    """An authenticated key and the reader transaction it was authenticated in, scoped
    to its tenant, which the handler goes on reading in."""

    who: Principal
    conn: AsyncConnection


def reading(scope: str = "read") -> Callable[[Request], AsyncIterator[Reading]]:
    """A dependency that authenticates and demands ``scope`` like ``require``, in a
    reader transaction it keeps open for the handler: one pool connection and one
    transaction per read instead of one for the key and another for the read."""

    async def dependency(request: Request) -> AsyncIterator[Reading]:
        token = _token(request)
        async with (request.app.state.pool.connection() as conn,
                    authenticated(conn, token) as found):
            yield Reading(_admitted(found, scope), conn)

    return dependency
