"""A small FastAPI app that audits every change it makes with trailseal.

Users live in memory. Every state-changing endpoint records one audit event, and the
ASGI middleware gives each event its request context: the client's address, user agent,
request id (echoed in the ``X-Request-ID`` response header) and actor. Authentication is
reduced to an ``X-User-Id`` header so that the auditing stays in view.

Run it against a trailseal service with ``uvicorn --factory app:app_from_env``; see
README.md.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import itertools
import os
import secrets
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel
from starlette.datastructures import Headers

from trailseal.client import AuditClient, current
from trailseal.client.middleware.asgi import AuditContextMiddleware

Role = Literal["viewer", "editor", "admin"]


@dataclasses.dataclass
class User:
    id: str
    name: str
    role: Role
    password_hash: str  # redacted from audit events by the SDK's default redaction names


class NewUser(BaseModel):
    name: str
    password: str
    role: Role = "viewer"


class RoleChange(BaseModel):
    role: Role


class Credentials(BaseModel):
    user_id: str
    password: str


class UserOut(BaseModel):
    id: str
    name: str
    role: Role


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1)
    return f"{salt.hex()}:{digest.hex()}"


def password_matches(password: str, stored: str) -> bool:
    salt, digest = (bytes.fromhex(part) for part in stored.split(":"))
    candidate = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1)
    return hmac.compare_digest(candidate, digest)


def actor_from_header(scope: Mapping[str, Any]) -> dict[str, str] | None:
    """The middleware's actor resolver: a real app would read its session or token."""
    user_id = Headers(scope=scope).get("x-user-id")
    return None if user_id is None else {"type": "user", "id": user_id}


def signed_in() -> None:
    """Refuse anonymous callers of the endpoints that change users."""
    request = current()
    if request is None or request.actor is None:
        raise HTTPException(401, "send X-User-Id")


def create_app(audit: AuditClient) -> FastAPI:
    """The app, recording its audit events with ``audit``; it closes ``audit`` when the
    server shuts down, so what was recorded is delivered, or stays spooled for next time."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await asyncio.to_thread(audit.close)

    app = FastAPI(title="trailseal example", lifespan=lifespan)
    app.add_middleware(AuditContextMiddleware, actor_resolver=actor_from_header)
    users: dict[str, User] = {}
    ids = itertools.count(1)

    def find(user_id: str) -> User:
        if user_id not in users:
            raise HTTPException(404, "no such user")
        return users[user_id]

    def out(user: User) -> UserOut:
        return UserOut(id=user.id, name=user.name, role=user.role)

    @app.get("/users/{user_id}")
    def read_user(user_id: str) -> UserOut:
        return out(find(user_id))

    @app.post("/users", status_code=201, dependencies=[Depends(signed_in)])
    def create_user(body: NewUser) -> UserOut:
        user = User(f"u_{next(ids)}", body.name, body.role, hash_password(body.password))
        users[user.id] = user
        # The actor comes from the request context; before=None makes every field "added".
        audit.record("user.created", target=("user", user.id, user.name), after=user)
        return out(user)

    @app.put("/users/{user_id}/role", dependencies=[Depends(signed_in)])
    def change_role(user_id: str, body: RoleChange) -> UserOut:
        user = find(user_id)
        before = dataclasses.replace(user)
        user.role = body.role
        # Only the fields that differ end up in the event's changes.
        audit.record("user.role.updated", target=("user", user.id, user.name),
                     before=before, after=user)
        return out(user)

    @app.delete("/users/{user_id}", status_code=204, dependencies=[Depends(signed_in)])
    def delete_user(user_id: str) -> None:
        user = find(user_id)
        del users[user_id]
        audit.record("user.deleted", target=("user", user.id, user.name), before=user)

    @app.post("/login")
    def login(body: Credentials) -> dict[str, str]:
        # The one who tries to log in is the actor, whoever the header says is calling.
        claimed = ("user", body.user_id)
        user = users.get(body.user_id)
        if user is None or not password_matches(body.password, user.password_hash):
            error = "unknown_user" if user is None else "bad_password"
            audit.record("user.login.failed", actor=claimed, target=claimed,
                         outcome={"status": "failure", "error_code": error})
            raise HTTPException(401, "wrong user id or password")
        audit.record("user.login.succeeded", actor=claimed, target=claimed)
        return {"user_id": user.id}

    return app


def app_from_env() -> FastAPI:
    """The app with a client configured from the environment (``uvicorn --factory``)."""
    audit = AuditClient(
        os.environ["TRAILSEAL_URL"],
        os.environ["TRAILSEAL_TOKEN"],
        os.environ.get("TRAILSEAL_SPOOL", ".trailseal-spool"),
        service="example-app",
    )
    return create_app(audit)
