"""The example FastAPI app (examples/fastapi_app) end to end: its events travel through a
real AuditClient and spool to the running service, and come back from ``GET /v1/events``
with the request context the middleware gave them."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
from fastapi import FastAPI

from tests.support import Tenant
from trailseal.client import AuditClient

EXAMPLE = Path(__file__).parents[1] / "examples" / "fastapi_app" / "app.py"
CLIENT_IP = "203.0.113.7"
ADMIN = {"X-User-Id": "u_admin", "User-Agent": "example-e2e"}
PASSWORD = "correct horse battery staple"  # made up for the test


def _load_example() -> ModuleType:
    # The example is a folder to copy, not a package: load its module by path.
    spec = importlib.util.spec_from_file_location("trailseal_example_fastapi_app", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pydantic resolve annotations here
    spec.loader.exec_module(module)
    return module


example = _load_example()


async def _drive(app: FastAPI) -> dict[str, httpx.Response]:
    """Every state-changing endpoint once, as a client at CLIENT_IP; responses by action."""
    transport = httpx.ASGITransport(app=app, client=(CLIENT_IP, 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as http:
        created = await http.post("/users", json={"name": "Ann", "password": PASSWORD},
                                  headers={**ADMIN, "X-Request-ID": "e2e-create"})
        assert created.status_code == 201, created.text
        user_id = created.json()["id"]
        responses = {
            "user.created": created,
            "user.role.updated": await http.put(f"/users/{user_id}/role",
                                                json={"role": "admin"}, headers=ADMIN),
            "user.login.failed": await http.post("/login", json={"user_id": user_id,
                                                                 "password": "guess"}),
            "user.login.succeeded": await http.post("/login", json={"user_id": user_id,
                                                                    "password": PASSWORD}),
            "user.deleted": await http.delete(f"/users/{user_id}", headers=ADMIN),
        }
    assert [r.status_code for r in responses.values()] == [201, 200, 401, 200, 204]
    return responses


def _stored(client: httpx.Client, tenant: Tenant, count: int) -> dict[str, dict[str, Any]]:
    """The tenant's events by action, once ``count`` of them are sequenced and readable."""
    deadline = time.monotonic() + 10
    while True:
        r = client.get("/v1/events", headers=tenant.auth("read"))
        assert r.status_code == 200, r.text
        events = r.json()["events"]
        if len(events) >= count or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(events) == count, events
    return {event["action"]: event for event in events}


def test_events_reach_the_service_with_their_request_context(
    service_url, client, tenant, tmp_path
):
    audit = AuditClient(service_url, tenant.tokens["ingest"], tmp_path / "spool",
                        service="example-app")
    try:
        responses = asyncio.run(_drive(example.create_app(audit)))
        assert audit.flush(timeout=10)
    finally:
        audit.close(timeout=10)
    assert (audit.stats.sent, audit.stats.invalid, audit.stats.dropped) == (5, 0, 0)

    stored = _stored(client, tenant, 5)
    assert set(stored) == set(responses)
    user_id = responses["user.created"].json()["id"]
    for action, event in stored.items():
        response = responses[action]
        assert event["context"]["request_id"] == response.headers["X-Request-ID"], action
        assert event["context"]["ip"] == CLIENT_IP
        assert event["context"]["service"] == "example-app"
        assert event["target"]["id"] == user_id
    assert stored["user.created"]["context"]["request_id"] == "e2e-create"
    assert stored["user.created"]["context"]["user_agent"] == "example-e2e"

    for action in ("user.created", "user.role.updated", "user.deleted"):
        assert stored[action]["actor"] == {"type": "user", "id": "u_admin"}
    for action in ("user.login.failed", "user.login.succeeded"):
        assert stored[action]["actor"] == {"type": "user", "id": user_id}
    assert stored["user.role.updated"]["changes"] == {
        "role": {"before": "viewer", "after": "admin"}
    }
    assert stored["user.created"]["changes"]["password_hash"] == {
        "before": "[REDACTED]", "after": "[REDACTED]"
    }
    assert stored["user.login.failed"]["outcome"] == {
        "status": "failure", "error_code": "bad_password"
    }
    assert stored["user.login.succeeded"]["outcome"] == {"status": "success"}


def test_the_app_configured_from_the_environment_delivers_its_events(
    service_url, client, tenant, tmp_path, monkeypatch
):
    monkeypatch.setenv("TRAILSEAL_URL", service_url)
    monkeypatch.setenv("TRAILSEAL_TOKEN", tenant.tokens["ingest"])
    monkeypatch.setenv("TRAILSEAL_SPOOL", str(tmp_path / "spool"))
    app = example.app_from_env()

    async def serve_one_request() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=(CLIENT_IP, 50000))
        async with (
            app.router.lifespan_context(app),  # its shutdown closes the client
            httpx.AsyncClient(transport=transport, base_url="http://app.test") as http,
        ):
            return await http.post("/users", json={"name": "Bo", "password": PASSWORD},
                                   headers=ADMIN)

    response = asyncio.run(serve_one_request())
    assert response.status_code == 201

    (event,) = _stored(client, tenant, 1).values()
    assert event["action"] == "user.created"
    assert event["context"]["request_id"] == response.headers["X-Request-ID"]
    assert event["context"]["service"] == "example-app"
