"""Fixtures for the database-level tests: a superuser connection and two tenants whose
events are already sequenced."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import psycopg
import pytest

from tests.support import Tenant, an_event, make_tenant


@dataclass(frozen=True)
class TwoLogs:
    """Tenants ``a`` (three events) and ``b`` (two), both fully sequenced; each tenant's
    events are numbered by one source."""

    a: Tenant
    b: Tenant
    a_ids: list[str]
    b_ids: list[str]


@pytest.fixture(scope="session")
def logs(database_url: str, service_url: str) -> TwoLogs:
    a, b = make_tenant(database_url, "a"), make_tenant(database_url, "b")
    ids = {}
    with httpx.Client(base_url=service_url, timeout=30) as http:
        for who, count in ((a, 3), (b, 2)):
            events = [
                an_event(context={"source": "store-tests", "source_seq": n})
                for n in range(count)
            ]
            r = http.post("/v1/events?wait=sequenced", json={"events": events}, headers=who.auth())
            assert r.status_code == 201, r.text
            ids[who.name] = [str(e["id"]) for e in events]
    return TwoLogs(a, b, ids[a.name], ids[b.name])


@pytest.fixture
def su(database_url: str) -> Iterator[psycopg.Connection]:
    """A superuser connection: row-level security does not apply to it; triggers do."""
    with psycopg.connect(database_url) as conn:
        yield conn
