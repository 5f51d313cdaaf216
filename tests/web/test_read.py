"""GET /v1/events and /v1/events/{id}: filters, newest-first keyset pages, cursors bound
to tenant and query, and tenant isolation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.support import Tenant, an_event

BASE = datetime(2026, 3, 12, 9, 0, tzinfo=UTC)


def _at(minutes: int) -> str:
    return (BASE + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def _seed(client, tenant: Tenant) -> list[dict]:
    events = [
        an_event(occurred_at=_at(0), action="user.login.succeeded",
                 actor={"type": "user", "id": "alice"}, target={"type": "user", "id": "alice"}),
        an_event(occurred_at=_at(1), action="user.login.failed",
                 actor={"type": "user", "id": "bob"}, target={"type": "user", "id": "bob"},
                 outcome={"status": "failure", "error_code": "bad_password"}),
        an_event(occurred_at=_at(2), action="user.role.updated",
                 actor={"type": "user", "id": "alice"}, target={"type": "user", "id": "bob"},
                 changes={"role": {"before": "viewer", "after": "admin"}}),
        an_event(occurred_at=_at(3), action="settings.updated",
                 actor={"type": "user", "id": "alice"}, target={"type": "org", "id": "acme"}),
        an_event(occurred_at=_at(4), action="report.exported",
                 actor={"type": "user", "id": "bob"}, target={"type": "report", "id": "q3"}),
        an_event(occurred_at=_at(4), action="userx.thing.done",
                 actor={"type": "service", "id": "cron"}, target={"type": "job", "id": "j1"}),
    ]
    r = client.post("/v1/events?wait=sequenced", json={"events": events}, headers=tenant.auth())
    assert r.status_code == 201, r.text
    return events


@pytest.fixture
def seeded(client, tenant) -> tuple[Tenant, list[dict]]:
    return tenant, _seed(client, tenant)


def _ids(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [e["id"] for e in response.json()["events"]]


def test_newest_first_by_occurred_at_then_seq(client, seeded):
    tenant, events = seeded
    got = _ids(client.get("/v1/events", headers=tenant.auth("read")))
    # The last two share occurred_at: the later seq comes first.
    assert got == [e["id"] for e in reversed(events)]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"actor_id": "alice"}, [3, 2, 0]),
        ({"target_type": "user", "target_id": "bob"}, [2, 1]),
        ({"target_type": "user"}, [2, 1, 0]),
        ({"action": "user.login.failed"}, [1]),
        ({"action": "user.*"}, [2, 1, 0]),
        ({"action": "user.login.*"}, [1, 0]),
        ({"action": "us_r.*"}, []),  # '_' is not a wildcard
        ({"outcome": "failure"}, [1]),
        ({"outcome": "success", "actor_id": "bob"}, [4]),
        ({"since": _at(2), "until": _at(4)}, [3, 2]),  # since inclusive, until exclusive
        ({"since": _at(4)}, [5, 4]),
    ],
)
def test_filters(client, seeded, params, expected):
    tenant, events = seeded
    got = _ids(client.get("/v1/events", params=params, headers=tenant.auth("read")))
    assert got == [events[i]["id"] for i in expected]


def test_event_carries_its_proof_material(client, seeded):
    tenant, events = seeded
    r = client.get(f"/v1/events/{events[2]['id']}", headers=tenant.auth("read"))
    assert r.status_code == 200
    body = r.json()
    assert body["tenant"] == tenant.name
    assert body["changes"] == {"role": {"before": "viewer", "after": "admin"}}
    assert body["occurred_at"] == "2026-03-12T09:02:00.000Z"
    assert body["seq"] == 2
    assert len(bytes.fromhex(body["leaf_hash"])) == 32
    assert len(bytes.fromhex(body["chain_hash"])) == 32


def test_keyset_pages_cover_everything_once(client, tenant):
    events = [an_event(occurred_at=_at(i // 3)) for i in range(23)]  # ties on occurred_at
    r = client.post("/v1/events?wait=sequenced", json={"events": events}, headers=tenant.auth())
    assert r.status_code == 201
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 4, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/events", params=params, headers=tenant.auth("read")).json()
        seen += [e["id"] for e in page["events"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 6
    assert seen == [e["id"] for e in reversed(events)]


def _cursor(client, tenant, **params) -> str:
    page = client.get("/v1/events", params={"limit": 1, **params}, headers=tenant.auth()).json()
    assert page["next_cursor"]
    return page["next_cursor"]


def test_cursor_is_bound_to_query_and_tenant(client, seeded, other_tenant):
    tenant, _ = seeded
    _seed(client, other_tenant)
    cursor = _cursor(client, tenant, actor_id="alice")
    ok = client.get("/v1/events", params={"actor_id": "alice", "cursor": cursor},
                    headers=tenant.auth())
    assert ok.status_code == 200
    tampered = cursor[:-3] + ("AAA" if cursor[-3:] != "AAA" else "BBB")
    for params, headers in [
        ({"actor_id": "bob", "cursor": cursor}, tenant.auth()),  # another query
        ({"actor_id": "alice", "cursor": cursor}, other_tenant.auth()),  # another tenant
        ({"actor_id": "alice", "cursor": tampered}, tenant.auth()),
        ({"cursor": "not a cursor"}, tenant.auth()),
    ]:
        r = client.get("/v1/events", params=params, headers=headers)
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert "cursor" in r.json()["detail"]


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 1001}, {"since": "yesterday"}, {"since": "2026-03-12T09:00:00"},
     {"outcome": "maybe"}, {"action": "user.**"}, {"action": "*"}],
)
def test_bad_parameters_are_422_problems(client, tenant, params):
    r = client.get("/v1/events", params=params, headers=tenant.auth("read"))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"


def test_another_tenants_event_is_exactly_a_missing_one(client, seeded, other_tenant):
    _, events = seeded
    theirs = client.get(f"/v1/events/{events[0]['id']}", headers=other_tenant.auth())
    missing = client.get(f"/v1/events/{an_event()['id']}", headers=other_tenant.auth())
    malformed = client.get("/v1/events/not-a-uuid", headers=other_tenant.auth())
    for r in (theirs, missing, malformed):
        assert r.status_code == 404
        body = r.json()
        body.pop("instance")
        assert body == {"type": "https://trailseal.dev/problems/not-found",
                        "title": "Not found", "status": 404, "detail": "no such event"}


def test_isolation_lists_counts_and_ids(client, seeded, other_tenant):
    tenant, events = seeded
    theirs = _seed(client, other_tenant)
    for who, own in ((tenant, events), (other_tenant, theirs)):
        page = client.get("/v1/events", params={"limit": 1000}, headers=who.auth()).json()
        assert {e["tenant"] for e in page["events"]} == {who.name}
        assert sorted(e["id"] for e in page["events"]) == sorted(e["id"] for e in own)
    # Sending another tenant's id reveals nothing: it is simply a new event here.
    probe = dict(events[0], occurred_at=_at(9))
    r = client.post("/v1/events", json=probe, headers=other_tenant.auth())
    assert r.status_code == 202 and r.json() == {"accepted": [probe["id"]], "duplicates": []}
