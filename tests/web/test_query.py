"""GET /v1/events: every filter (several actions, prefixes, actor type, service, IPv4 and
IPv6 networks, text), both orders paged to the end, cursors bound to filters and order,
the meta-audit's own events, and a precise 4xx for every malformed parameter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.support import Tenant, an_event
from trailseal.model import META_PREFIX
from trailseal.reading.query import MAX_LIMIT
from trailseal.web.filters import FilterParams, PagingParams

BASE = datetime(2026, 3, 12, 9, 0, tzinfo=UTC)


def _at(minutes: int) -> str:
    return (BASE + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def _e(minute: int, action: str, actor: tuple[str, str, str | None],
       target: tuple[str, str, str | None], ip: str | None = None,
       service: str | None = None, failed: bool = False, **extra: object) -> dict:
    def ref(kind: str, value: str, name: str | None) -> dict:
        return {"type": kind, "id": value, **({"name": name} if name else {})}

    context = {k: v for k, v in (("ip", ip), ("service", service)) if v}
    return an_event(occurred_at=_at(minute), action=action, actor=ref(*actor),
                    target=ref(*target), context=context,
                    outcome={"status": "failure" if failed else "success"}, **extra)


ALICE = ("user", "alice", "Alice Liddell")
BOB = ("user", "bob", None)


def _seed(client, tenant: Tenant) -> list[dict]:
    events = [
        _e(0, "auth.login.succeeded", ALICE, ("user", "alice", None), "203.0.113.5", "web"),
        _e(1, "auth.login.failed", BOB, ("user", "bob", None), "203.0.113.77", "web",
           failed=True),
        _e(2, "auth.login.failed", BOB, ("user", "bob", None), "2001:db8:1::5", "api",
           failed=True),
        _e(3, "data.export.created", ("service", "cron", "Nightly Cron"),
           ("export", "x1", "Q3 report"), "2001:db8:2::9", "batch"),
        _e(4, "user.role.updated", ALICE, ("user", "bob", "Bob Builder"), "198.51.100.1",
           changes={"role": {"before": "viewer", "after": "admin"}}),
        _e(5, "setting.updated", ("api_key", "k_1", None), ("setting", "billing.plan", None)),
        _e(6, "auth.logout", ("system", "sys", None), ("user", "carol", "Carol"), "10.1.2.3"),
        _e(6, "auth.login.succeeded", ("user", "carol", None), ("user", "carol", None),
           "10.200.0.1"),
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


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"actor_type": "service"}, [3]),
        ({"actor_type": "api_key"}, [5]),
        ({"actor_type": "user", "target_id": "bob"}, [4, 2, 1]),
        ({"service": "web"}, [1, 0]),
        ({"action": ["auth.login.failed", "user.role.updated"]}, [4, 2, 1]),
        ({"action": "auth.login.failed,user.role.updated"}, [4, 2, 1]),
        ({"action": ["auth.login.failed, user.role.updated", "auth.login.failed"]}, [4, 2, 1]),
        ({"action": "auth.login.*,setting.updated"}, [7, 5, 2, 1, 0]),
        ({"action": ["auth.*", "data.export.*"]}, [7, 6, 3, 2, 1, 0]),
        ({"action": "auth.login.*", "outcome": "failure", "ip": "203.0.113.0/24"}, [1]),
        ({"ip": "203.0.113.5"}, [0]),
        ({"ip": "203.0.113.0/24"}, [1, 0]),
        ({"ip": "10.0.0.0/8"}, [7, 6]),
        ({"ip": "10.1.2.3/8"}, [7, 6]),  # host bits are ignored, as PostgreSQL does
        ({"ip": "0.0.0.0/0"}, [7, 6, 4, 1, 0]),  # every IPv4 address, no IPv6 one
        ({"ip": "2001:db8::/32"}, [3, 2]),
        ({"ip": "2001:DB8:1::/48"}, [2]),
        ({"ip": "2001:db8:1::5"}, [2]),
        ({"ip": "::/0"}, [3, 2]),
        ({"ip": "192.0.2.0/24"}, []),
        ({"q": "alice"}, [4, 0]),  # actor alice (named Alice Liddell); target alice
        ({"q": "LIDDELL"}, [4, 0]),
        ({"q": "builder"}, [4]),
        ({"q": "q3 rep"}, [3]),
        ({"q": "billing.p"}, [5]),  # ids too
        ({"q": "%%%"}, []),  # LIKE wildcards are taken literally
        ({"q": "___"}, []),
        ({"q": "carol", "actor_type": "system"}, [6]),
        ({"since": _at(2), "until": _at(6), "service": "api"}, [2]),
        ({"actor_id": "", "q": "", "action": ""}, [7, 6, 5, 4, 3, 2, 1, 0]),  # empty: unset
    ],
)
def test_filters(client, seeded, params, expected):
    tenant, events = seeded
    got = _ids(client.get("/v1/events", params=params, headers=tenant.auth("read")))
    assert got == [events[i]["id"] for i in expected]


def _pages(client, tenant: Tenant, **params) -> tuple[list[str], int]:
    seen: list[str] = []
    cursor, pages = None, 0
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        r = client.get("/v1/events", params=query, headers=tenant.auth("read"))
        assert r.status_code == 200, r.text
        seen += [e["id"] for e in r.json()["events"]]
        pages += 1
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return seen, pages


def test_both_orders_page_through_everything_once(client, tenant):
    # Ties on occurred_at are broken by seq, in the same direction.
    events = [an_event(occurred_at=_at(i // 3), action="job.run.done") for i in range(23)]
    r = client.post("/v1/events?wait=sequenced", json={"events": events}, headers=tenant.auth())
    assert r.status_code == 201
    oldest_first, pages = _pages(client, tenant, order="asc", limit=4)
    assert pages == 6
    assert oldest_first == [e["id"] for e in events]
    newest_first, _ = _pages(client, tenant, order="desc", limit=5, action="job.*")
    assert newest_first == [e["id"] for e in reversed(events)]
    single, _ = _pages(client, tenant, order="asc", limit=1, since=_at(2), until=_at(4))
    assert single == [e["id"] for e in events[6:12]]


def _cursor(client, tenant: Tenant, **params) -> str:
    r = client.get("/v1/events", params={"limit": 1, **params}, headers=tenant.auth("read"))
    cursor = r.json()["next_cursor"]
    assert cursor
    return cursor


@pytest.mark.parametrize(
    ("issued", "reused"),
    [
        ({"order": "asc"}, {}),  # another order
        ({}, {"order": "asc"}),
        ({"action": "auth.*"}, {"action": "auth.login.*"}),  # other filters
        ({"action": "auth.*"}, {"action": "auth.*", "ip": "10.0.0.0/8"}),
        ({"ip": "10.0.0.0/8"}, {"ip": "10.0.0.0/16"}),
        ({"q": "alice"}, {"q": "alicE"}),
        ({}, {"include_meta": "true"}),
        ({"actor_type": "user"}, {"actor_type": "service"}),
    ],
)
def test_a_cursor_is_bound_to_its_filters_and_order(client, seeded, issued, reused):
    tenant, _ = seeded
    cursor = _cursor(client, tenant, **issued)
    ok = client.get("/v1/events", params={**issued, "cursor": cursor}, headers=tenant.auth())
    assert ok.status_code == 200
    r = client.get("/v1/events", params={**reused, "cursor": cursor}, headers=tenant.auth())
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert "cursor" in r.json()["detail"]


def test_the_same_filters_written_differently_share_cursors(client, seeded):
    tenant, _ = seeded
    cursor = _cursor(client, tenant, action="auth.logout,auth.login.failed")
    again = client.get("/v1/events", params={"action": ["auth.login.failed", "auth.logout"],
                                             "cursor": cursor}, headers=tenant.auth())
    assert again.status_code == 200, again.text


def test_the_meta_audit_is_left_out_unless_asked_for(client, seeded):
    tenant, _ = seeded
    read = client.get("/v1/events", params={"service": "web", "ip": "203.0.113.0/25"},
                      headers=tenant.auth("read"))
    assert len(read.json()["events"]) == 2
    # The read's record went to the inbox before its answer; this event, sequenced after
    # it, shows that the record is in the log too.
    later = an_event(occurred_at=_at(30))
    r = client.post("/v1/events?wait=sequenced", json=later, headers=tenant.auth("ingest"))
    assert r.status_code == 201
    everything = client.get("/v1/events", headers=tenant.auth("read")).json()["events"]
    assert [e["id"] for e in everything][:1] == [later["id"]]
    assert not [e for e in everything if e["action"].startswith(META_PREFIX)]
    with_meta = client.get("/v1/events", params={"include_meta": "true"},
                           headers=tenant.auth("read")).json()["events"]
    queried = [e for e in with_meta if e["action"] == "audit.events.queried"]
    assert queried, with_meta
    record = queried[-1]  # the oldest, the first read of this test
    assert record["metadata"]["count"] == 2
    assert record["metadata"]["filters"] == {"service": "web", "ip": "203.0.113.0/25"}
    # Asking for an audit action by name finds it without include_meta.
    for action in ("audit.events.queried", "audit.*", "audit.events.*,auth.logout"):
        named = _ids(client.get("/v1/events", params={"action": action},
                                headers=tenant.auth("read")))
        assert record["id"] in named


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"order": "sideways"}, "order"),
        ({"include_meta": "perhaps"}, "include_meta"),
        ({"ip": "10.0.0.0/33"}, "ip"),
        ({"ip": "2001:db8::/129"}, "ip"),
        ({"ip": "example.com"}, "ip"),
        ({"ip": "fe80::1%eth0"}, "ip"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-03-12T09:00:00"}, "since"),  # no offset
        ({"until": "2026-03-12 09:00:00Z"}, "until"),
        ({"until": "2026-02-30T09:00:00Z"}, "until"),  # no such day
        ({"since": "2026-03-12T09:00:00 01:00"}, "since"),  # a + sent unencoded
        ({"action": "Auth.Login"}, "action"),
        ({"action": "user.**"}, "action"),
        ({"action": "*"}, "action"),
        ({"action": "auth.login.failed,nope"}, "action"),
        ({"action": ",".join(f"a.b{i}" for i in range(51))}, "action"),
        ({"q": "ab"}, "q"),
        ({"q": "x" * 257}, "q"),
        ({"outcome": "maybe"}, "outcome"),
        ({"actor_type": "robot"}, "actor_type"),
        ({"actor_id": "x" * 257}, "actor_id"),
        ({"cursor": "not a cursor"}, "cursor"),
    ],
)
def test_bad_parameters_are_precise_422_problems(client, tenant, params, names):
    r = client.get("/v1/events", params=params, headers=tenant.auth("read"))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    said = body.get("detail", "") + " ".join(e["path"] for e in body.get("errors", []))
    assert names in said, body


def test_every_bad_parameter_is_named_at_once(client, tenant):
    r = client.get("/v1/events", params={"actor_type": "robot", "limit": 0, "order": "up"},
                   headers=tenant.auth("read"))
    assert r.status_code == 422, r.text
    assert {e["path"] for e in r.json()["errors"]} == {
        "query.actor_type", "query.limit", "query.order"}


def test_a_repeated_parameter_takes_its_last_value_unless_it_is_a_list(client, seeded):
    tenant, events = seeded
    r = client.get("/v1/events", headers=tenant.auth("read"), params=[
        ("actor_id", "alice"), ("actor_id", "bob"), ("action", "auth.login.failed"),
        ("action", "user.role.updated"), ("limit", "1"), ("limit", "5"), ("unknown", "x")])
    assert _ids(r) == [events[i]["id"] for i in (2, 1)]  # bob's, of both actions


def test_a_plus_sent_unencoded_is_explained(client, tenant):
    r = client.get("/v1/events?since=2026-03-12T09:00:00+01:00", headers=tenant.auth("read"))
    assert r.status_code == 422
    assert "%2B" in r.json()["detail"]
    assert r.json()["errors"][0]["path"] == "query.since"


def test_times_with_offsets_and_fractions_are_taken(client, seeded):
    tenant, events = seeded
    r = client.get("/v1/events", headers=tenant.auth("read"), params={
        "since": "2026-03-12T10:02:00.000000001+01:00", "until": "2026-03-12t09:04:00z"})
    assert _ids(r) == [events[3]["id"]]  # since 09:02:00.000000001 leaves out minute 2


def test_the_openapi_documents_the_parameter_models(client):
    parameters = client.get("/openapi.json").json()["paths"]["/v1/events"]["get"]["parameters"]
    assert [p["name"] for p in parameters] == [*FilterParams.model_fields,
                                               *PagingParams.model_fields]
    assert all(p["in"] == "query" and not p["required"] for p in parameters)
    schema = {p["name"]: p["schema"] for p in parameters}
    assert (schema["limit"]["minimum"], schema["limit"]["maximum"]) == (1, MAX_LIMIT)
    assert schema["actor_type"]["anyOf"][0]["enum"] == ["user", "service", "api_key", "system"]
    assert schema["action"]["anyOf"][0]["type"] == "array"


@pytest.mark.parametrize(
    ("path", "statuses"),
    [
        ("/v1/events", {"200", "401", "403", "422"}),
        ("/v1/targets/{target_type}/{target_id}/timeline", {"200", "401", "403", "404", "422"}),
        ("/v1/targets/{target_type}/{target_id}/state", {"200", "401", "403", "404", "422"}),
    ],
)
def test_the_openapi_describes_every_parameter_and_error(client, path, statuses):
    operation = client.get("/openapi.json").json()["paths"][path]["get"]
    undescribed = [p["name"] for p in operation["parameters"] if not p.get("description")]
    assert undescribed == []
    assert set(operation["responses"]) == statuses
    for status in statuses - {"200"}:
        assert "application/problem+json" in operation["responses"][status]["content"]
