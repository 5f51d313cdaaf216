"""Bearer-token authentication and scopes. The tenant always comes from the key."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import psycopg
from fastapi import Request
from psycopg import AsyncConnection

from trailseal.tenants import (
    Principal,
    authenticate,
    authenticated,
    authenticating,
    token_hash,
    well_formed,
)
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


class KnownKeys:
    """The principal of each token recently admitted for a read, by the token's hash: a
    guess of the tenant that lets a read's statements travel with its key's lookup. It
    grants nothing. Every read still looks its key up, in the transaction it reads in,
    under row-level security set by that lookup, and is refused when the key no longer
    stands; a good guess only saves the read one round trip to PostgreSQL."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._known: dict[bytes, Principal] = {}

    def get(self, token: str) -> Principal | None:
        return self._known.get(token_hash(token))

    def remember(self, token: str, principal: Principal) -> None:
        key = token_hash(token)
        if key not in self._known and len(self._known) >= self.size:
            del self._known[next(iter(self._known))]  # the oldest: dicts keep their order
        self._known[key] = principal

    def forget(self, token: str) -> None:
        self._known.pop(token_hash(token), None)


class Reading:
    """A read's transaction on ``conn`` (trailseal_reader), for its bearer token's key.

    ``tenant`` is the key's tenant. When the key was admitted before in this process, its
    lookup is still on its way when the handler starts: statements sent now travel with
    it, in one round trip, and see the key's tenant's rows, or none if the key no longer
    stands. ``await checked()`` gives the principal or raises the 401/403 problem: call it
    before answering with anything read (there is no other way to the principal)."""

    def __init__(self, conn: AsyncConnection, tenant: str,
                 check: Callable[[], Awaitable[Principal]]) -> None:
        self.conn = conn
        self.tenant = tenant
        self._check = check

    async def checked(self) -> Principal:
        return await self._check()


def reading(scope: str = "read") -> Callable[[Request], AsyncIterator[Reading]]:
    """A dependency that authenticates and demands ``scope`` like ``require``, in a
    reader transaction it keeps open for the handler: one pool connection and one
    transaction per read, and for a key seen before, one round trip for the lookup and
    the handler's first statements (see :class:`Reading`). Whatever the handler raises,
    a key that does not stand is answered 401 (or 403) first."""

    async def dependency(request: Request) -> AsyncIterator[Reading]:
        token = _token(request)
        known: KnownKeys = request.app.state.known_keys
        guess = known.get(token) if well_formed(token) else None
        async with request.app.state.pool.connection() as conn:
            if guess is None:
                async with authenticated(conn, token) as found:
                    who = _admitted(found, scope)
                    known.remember(token, who)

                    async def admitted() -> Principal:
                        return who

                    yield Reading(conn, who.tenant, admitted)
                return
            async with authenticating(conn, token) as principal:

                async def check() -> Principal:
                    found = await principal()
                    if found != guess:
                        known.forget(token)
                    if found is not None and found.tenant != guess.tenant:
                        # A key's tenant never changes (token hashes are unique): what
                        # was read here for the guessed tenant cannot be answered.
                        raise RuntimeError("a key's tenant changed under a read")
                    return _admitted(found, scope)

                read = Reading(conn, guess.tenant, check)
                try:
                    yield read
                except Exception:
                    with contextlib.suppress(psycopg.Error):
                        await read.checked()  # 401/403 rather than the handler's error
                    raise

    return dependency
