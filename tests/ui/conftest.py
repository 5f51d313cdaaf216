"""Fixtures of the console tests: tenants seeded with the demo's events, and (for the
browser tests) Debian's Chromium driven by Playwright, launched once per module.

Playwright's synchronous API keeps an event loop running on the main thread while it is
started, so anything that needs ``asyncio.run`` (making tenants, verifying) runs in a
thread of its own here (:func:`in_thread`); and the browser lives only as long as the
module that uses it, so later test modules get the main thread back.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from psycopg import AsyncConnection

from tests.support import Tenant, new_id, run
from trailseal import demo, ingest
from trailseal.tenants import SCOPES, create_key, create_tenant

CHROMIUM = Path("/usr/bin/chromium")
# Every run takes the screenshots (a page that cannot render fails); they replace the
# committed ones in docs/img/ only when asked (`make screenshots`), so that a test run
# leaves the working tree as it found it.
IMAGES = (
    Path(__file__).resolve().parents[2] / "docs" / "img"
    if os.environ.get("TRAILSEAL_SCREENSHOTS") == "docs"
    else Path(tempfile.gettempdir()) / "trailseal-screenshots"
)

T = TypeVar("T")


def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on a thread of its own (free of the browser's event loop)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args).result()


@dataclass(frozen=True)
class Seeded:
    """A tenant holding the demo's events, and their ids by (action, target id)."""

    tenant: Tenant
    ids: dict[tuple[str, str], list[str]]

    def first(self, action: str, target_id: str) -> str:
        return self.ids[(action, target_id)][0]


def seed(service_url: str, tenant: Tenant) -> Seeded:
    """Send the demo's events as ``tenant``'s and wait until they are in the log."""
    events = [{**event, "id": new_id()} for event in demo.events(ingest.now())]
    with httpx.Client(base_url=service_url, timeout=30) as client:
        r = client.post("/v1/events?wait=sequenced", json={"events": events},
                        headers=tenant.auth("ingest"))
        assert r.status_code == 201, r.text
    ids: dict[tuple[str, str], list[str]] = {}
    for event in events:
        ids.setdefault((event["action"], event["target"]["id"]), []).append(event["id"])
    return Seeded(tenant, ids)


def named_tenant(database_url: str, name: str) -> Tenant:
    """A new tenant called exactly ``name`` (so screenshots show a stable name; each
    test session has a database of its own), with a key per scope."""

    async def go() -> Tenant:
        async with await AsyncConnection.connect(database_url, autocommit=True) as conn:
            assert await create_tenant(conn, name), f"tenant {name} exists already"
            full = await create_key(conn, name, SCOPES)
            single = {s: (await create_key(conn, name, (s,), name=s)).token for s in SCOPES}
        return Tenant(name, full.token, single)

    return in_thread(run, go())


@pytest.fixture(scope="session")
def acme(database_url: str, service_url: str) -> Seeded:
    """A tenant with the demo's two weeks of events."""
    return seed(service_url, named_tenant(database_url, "acme"))


@pytest.fixture(scope="session")
def stranger(database_url: str, service_url: str) -> Tenant:
    """A second tenant, with events of its own that are none of acme's."""
    tenant = named_tenant(database_url, "globex")
    with httpx.Client(base_url=service_url, timeout=30) as client:
        r = client.post("/v1/events?wait=sequenced", headers=tenant.auth("ingest"), json={
            "actor": {"type": "user", "id": "o_1", "name": "Olga Other"},
            "action": "auth.login.succeeded", "target": {"type": "user", "id": "o_1"}})
        assert r.status_code == 201, r.text
    return tenant


def sign_in_cookies(service_url: str, token: str) -> httpx.Client:
    """An httpx client signed in to the console with ``token`` (the real form flow)."""
    client = httpx.Client(base_url=service_url, timeout=30)
    page = client.get("/ui/sign-in")
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, page.text
    r = client.post("/ui/sign-in", data={"token": token, "csrf_token": match[1],
                                         "next": "/ui/"})
    assert r.status_code == 303, r.text
    return client
