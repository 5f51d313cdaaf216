"""Audit coverage tests for the example app, written with trailseal's pytest plugin.

The plugin comes with the SDK and needs no setup: ``audit_client`` is a client that never
leaves the machine, to hand to the app; ``audit_log`` captures what any client records
during the test. The last test is the one to copy first: every state-changing endpoint
must produce an audit entry.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from app import create_app
from fastapi import FastAPI
from starlette.routing import Route

from trailseal.client import AuditClient
from trailseal.client.pytest_plugin import AuditLog, assert_audited

pytestmark = pytest.mark.anyio

ADMIN = {"X-User-Id": "u_admin"}
PASSWORD = "correct horse battery staple"  # noqa: S105 (made up for the tests)
CLIENT_IP = "203.0.113.7"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def app(audit_client: AuditClient) -> FastAPI:
    return create_app(audit_client)


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Calls the app in-process, as a client at CLIENT_IP would."""
    transport = httpx.ASGITransport(app=app, client=(CLIENT_IP, 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as http:
        yield http


async def create_user(http: httpx.AsyncClient, name: str = "Ann") -> str:
    body = {"name": name, "password": PASSWORD}
    response = await http.post("/users", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@pytest.fixture
async def user_id(http: httpx.AsyncClient, audit_log: AuditLog) -> str:
    """An existing user; the events of making it are forgotten."""
    made = await create_user(http)
    audit_log.clear()
    return made


async def test_creating_a_user(http, audit_log):
    response = await http.post("/users", json={"name": "Ann", "password": PASSWORD}, headers=ADMIN)
    assert response.status_code == 201
    user_id = response.json()["id"]

    event = audit_log.assert_audited(
        action="user.created",
        actor=("user", "u_admin"),
        target=("user", user_id, "Ann"),
        outcome="success",
        changes={"name": {"before": None, "after": "Ann"}, "role": {"after": "viewer"}},
        count=1,
    )
    # The request id the caller saw is the one in the event, with the caller's address.
    assert event["context"]["request_id"] == response.headers["X-Request-ID"]
    assert event["context"]["ip"] == CLIENT_IP
    # The password hash is redacted by the SDK; the password itself appears nowhere.
    assert event["changes"]["password_hash"] == {"before": "[REDACTED]", "after": "[REDACTED]"}
    assert PASSWORD not in json.dumps(audit_log.events)


async def test_changing_a_role(http, audit_log, user_id):
    response = await http.put(f"/users/{user_id}/role", json={"role": "admin"},
                              headers={**ADMIN, "X-Request-ID": "req-role-1"})
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "req-role-1"

    event = assert_audited(
        action="user.role.updated",
        target=("user", user_id),
        changes={"role": {"before": "viewer", "after": "admin"}},
    )
    assert list(event["changes"]) == ["role"]  # nothing else changed
    assert event["context"]["request_id"] == "req-role-1"


async def test_deleting_a_user(http, audit_log, user_id):
    response = await http.delete(f"/users/{user_id}", headers=ADMIN)
    assert response.status_code == 204

    event = audit_log.assert_audited(
        action="user.deleted",
        actor=("user", "u_admin"),
        target=("user", user_id),
        changes={"name": {"before": "Ann", "after": None}, "role": {"before": "viewer"}},
    )
    assert event["context"]["request_id"] == response.headers["X-Request-ID"]


async def test_logging_in(http, audit_log, user_id):
    response = await http.post("/login", json={"user_id": user_id, "password": PASSWORD})
    assert response.status_code == 200

    event = audit_log.assert_audited(
        action="user.login.succeeded", actor=("user", user_id), target=("user", user_id),
        outcome="success",
    )
    assert event["context"]["request_id"] == response.headers["X-Request-ID"]
    audit_log.assert_not_audited(outcome="failure")


@pytest.mark.parametrize(
    ("who", "error_code"), [("known", "bad_password"), ("unknown", "unknown_user")]
)
async def test_a_failed_login(http, audit_log, user_id, who, error_code):
    claimed = user_id if who == "known" else "u_nobody"
    response = await http.post("/login", json={"user_id": claimed, "password": "guess"})
    assert response.status_code == 401

    event = audit_log.assert_audited(
        action="user.login.failed",
        actor=("user", claimed),
        target=("user", claimed),
        outcome={"status": "failure", "error_code": error_code},
        count=1,
    )
    assert event["context"]["request_id"] == response.headers["X-Request-ID"]
    audit_log.assert_not_audited(action="user.login.succeeded")


async def test_refused_requests_change_nothing_and_record_nothing(http, audit_log, user_id):
    anonymous = await http.post("/users", json={"name": "Eve", "password": "x"})
    assert anonymous.status_code == 401
    assert (await http.delete("/users/u_nobody", headers=ADMIN)).status_code == 404
    assert (await http.get(f"/users/{user_id}")).status_code == 200
    audit_log.assert_not_audited()


# Every state-changing endpoint produces an audit entry -------------------------------

# One valid call for each state-changing route, given an existing user. A route added to
# the app fails the test below until it has a call here and records an audit event.
Call = Callable[[httpx.AsyncClient, str], Awaitable[httpx.Response]]
CALLS: dict[tuple[str, str], Call] = {
    ("POST", "/users"): lambda http, _: http.post(
        "/users", json={"name": "Bob", "password": PASSWORD}, headers=ADMIN
    ),
    ("PUT", "/users/{user_id}/role"): lambda http, user_id: http.put(
        f"/users/{user_id}/role", json={"role": "editor"}, headers=ADMIN
    ),
    ("DELETE", "/users/{user_id}"): lambda http, user_id: http.delete(
        f"/users/{user_id}", headers=ADMIN
    ),
    ("POST", "/login"): lambda http, user_id: http.post(
        "/login", json={"user_id": user_id, "password": PASSWORD}
    ),
}


def state_changing_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every route that answers something other than GET or HEAD."""
    return sorted(
        (method, route.path)
        for route in app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method not in ("GET", "HEAD")
    )


async def test_every_state_changing_route_is_audited(app, http, audit_log):
    routes = state_changing_routes(app)
    assert routes, "found no state-changing routes"
    for method, path in routes:
        assert (method, path) in CALLS, f"add a call for {method} {path} to CALLS"
        user_id = await create_user(http)
        audit_log.clear()

        response = await CALLS[method, path](http, user_id)

        assert response.is_success, f"{method} {path}: {response.status_code} {response.text}"
        assert audit_log.events, f"{method} {path} recorded no audit event"
