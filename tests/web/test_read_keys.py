"""A read's key is looked up in the transaction it reads in, and for a key this process
admitted before, the lookup travels with the read's first statements
(``trailseal.web.auth.Reading``). Whatever travelled with it, a key that no longer stands
is answered 401 on every reading route, before any other answer (a bad cursor, a missing
tile, a proof out of range), and nothing read for it is returned."""

from __future__ import annotations

import uuid

import pytest
from psycopg import AsyncConnection

from tests.support import an_event, run
from tests.web.test_ingest import problem
from trailseal.tenants import create_key, revoke_key

ROUTES = [
    ("/v1/events", 200),
    ("/v1/events?cursor=not-a-cursor", 422),
    ("/v1/events?limit=0", 422),
    ("/v1/log/checkpoint", 200),
    ("/v1/log/key", 200),
    ("/v1/log/tile/0/000.p/2", 200),
    ("/v1/log/tile/0/999", 404),
    ("/v1/log/tile/nonsense", 404),
    ("/v1/log/proof/inclusion?index=0&size=2", 200),
    ("/v1/log/proof/inclusion?index=5&size=2", 400),
    ("/v1/log/proof/consistency?from=1&to=2", 200),
]


def _key(database_url: str, tenant: str) -> tuple[str, uuid.UUID]:
    async def go() -> tuple[str, uuid.UUID]:
        async with await AsyncConnection.connect(database_url, autocommit=True) as conn:
            key = await create_key(conn, tenant, ("read",), name="reader")
        return key.token, key.key_id

    return run(go())


def _revoke(database_url: str, tenant: str, key_id: uuid.UUID) -> None:
    async def go() -> None:
        async with await AsyncConnection.connect(database_url, autocommit=True) as conn:
            await revoke_key(conn, tenant, key_id)

    run(go())


@pytest.mark.parametrize(("path", "status"), ROUTES)
def test_a_key_revoked_after_it_read_is_refused_first(client, tenant, database_url, path,
                                                      status):
    events = [an_event(), an_event()]
    r = client.post("/v1/events?wait=sequenced", json={"events": events},
                    headers=tenant.auth())
    assert r.status_code == 201, r.text
    token, key_id = _key(database_url, tenant.name)
    headers = {"Authorization": f"Bearer {token}"}
    first = client.get(path, headers=headers)  # looked up, then read: the key is admitted
    again = client.get(path, headers=headers)  # read with the key's lookup
    assert (first.status_code, again.status_code) == (status, status), again.text
    if "checkpoint" not in path:  # (the meta-audit's events make new checkpoints)
        assert first.content == again.content
    _revoke(database_url, tenant.name, key_id)
    for _ in range(2):  # refused, and refused again once the process has forgotten it
        refused = problem(client.get(path, headers=headers), 401, "unauthorized")
        assert refused["detail"] == "unknown or revoked token"


def test_a_read_with_the_lookup_finds_what_a_first_read_finds(client, tenant):
    events = [an_event(action=f"job.step.n{i}") for i in range(5)]
    r = client.post("/v1/events?wait=sequenced", json={"events": events},
                    headers=tenant.auth())
    assert r.status_code == 201, r.text
    headers = tenant.auth("read")
    pages = [client.get("/v1/events", params={"action": "job.step.*", "limit": 2},
                        headers=headers).json() for _ in range(3)]
    assert [[e["id"] for e in p["events"]] for p in pages] == [
        [events[4]["id"], events[3]["id"]]] * 3
    later = client.get("/v1/events", params={"action": "job.step.*", "limit": 2,
                                             "cursor": pages[2]["next_cursor"]},
                       headers=headers).json()
    assert [e["id"] for e in later["events"]] == [events[2]["id"], events[1]["id"]]


def test_a_key_without_the_read_scope_is_403_every_time(client, tenant):
    for _ in range(3):
        problem(client.get("/v1/events", headers=tenant.auth("ingest")), 403, "forbidden")
