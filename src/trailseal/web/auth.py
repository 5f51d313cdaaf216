"""Bearer-token authentication and scopes. The tenant always comes from the key."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request

from trailseal.tenants import Principal, authenticate
from trailseal.web.problems import Problem

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="trailseal"'}


async def principal(request: Request) -> Principal:
    """The principal of the request's ``Authorization: Bearer`` token, or 401."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(401, "unauthorized", "Unauthorized", "send Authorization: Bearer <token>",
                      headers=_CHALLENGE)
    async with request.app.state.pool.connection() as conn:
        found = await authenticate(conn, token.strip())
    if found is None:
        raise Problem(401, "unauthorized", "Unauthorized", "unknown or revoked token",
                      headers=_CHALLENGE)
    return found


def require(scope: str) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency that authenticates and demands ``scope`` (403 without it)."""

    async def dependency(request: Request) -> Principal:
        found = await principal(request)
        if scope not in found.scopes:
            raise Problem(403, "forbidden", "Forbidden", f"this key lacks the {scope!r} scope")
        return found

    return dependency
