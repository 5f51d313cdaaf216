"""``POST /v1/events`` against the running service: acceptance, dedupe, atomicity, every
class of bad input, authentication and ``?wait=sequenced``.

Size and count limits live in ``test_ingest_limits.py``.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import AsyncConnection

from tests.support import an_event, run
from trailseal.tenants import create_key, revoke_key

PROBLEM = "https://trailseal.dev/problems/"
UTC_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def post(client: httpx.Client, tenant: Any, body: Any, query: str = "") -> httpx.Response:
    return client.post(f"/v1/events{query}", json=body, headers=tenant.auth())


def post_raw(
    client: httpx.Client, tenant: Any, body: bytes, content_type: str = "application/json"
) -> httpx.Response:
    headers = {**tenant.auth(), "Content-Type": content_type}
    return client.post("/v1/events", content=body, headers=headers)


def problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    """The response's RFC 9457 problem document, after checking its common members."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    doc: dict[str, Any] = response.json()
    assert doc["type"] == PROBLEM + slug
    assert doc["status"] == status
    assert isinstance(doc["title"], str) and doc["title"]
    assert isinstance(doc["detail"], str) and doc["detail"]
    assert doc["instance"] == response.request.url.path
    return doc


def error_paths(doc: dict[str, Any]) -> set[tuple[int | None, str]]:
    for error in doc["errors"]:
        assert isinstance(error["message"], str) and error["message"]
    return {(e["index"], e["path"]) for e in doc["errors"]}


def stored(database_url: str, ids: list[str], tenant: str | None = None) -> dict[str, int]:
    """Rows with these ids in each table, for one tenant or all, counted in one snapshot
    (the sequencer moves rows from the inbox to the log meanwhile). The test connection
    is a superuser, which row-level security does not apply to."""
    tables = ("event_ids", "inbox", "events")
    counts = ", ".join(
        f"(SELECT count(*) FROM trailseal.{table} WHERE id = ANY(%(ids)s::uuid[])"
        " AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s))"
        for table in tables
    )
    with psycopg.connect(database_url) as conn:
        row = conn.execute(f"SELECT {counts}", {"ids": ids, "tenant": tenant}).fetchone()
    assert row is not None
    return dict(zip(tables, row, strict=True))


# --- accepted ---------------------------------------------------------------------------


def test_single_event_is_accepted(client, tenant):
    event = an_event()
    r = post(client, tenant, event)
    assert r.status_code == 202, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"accepted": [event["id"]], "duplicates": []}


def test_batch_is_accepted_in_order(client, tenant, database_url):
    events = [an_event(action=f"doc.step_{i}.done") for i in range(5)]
    ids = [e["id"] for e in events]
    r = post(client, tenant, {"events": events})
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": ids, "duplicates": []}
    assert stored(database_url, ids, tenant.name)["event_ids"] == 5


def test_server_assigns_a_uuidv7_when_id_is_absent(client, tenant):
    event = an_event()
    del event["id"]
    before = datetime.now(UTC)
    r = post(client, tenant, event)
    assert r.status_code == 202, r.text
    (assigned,) = r.json()["accepted"]
    value = uuid.UUID(assigned)
    assert value.version == 7
    assert value.variant == uuid.RFC_4122
    unix_ms = value.int >> 80
    assert abs(unix_ms / 1000 - before.timestamp()) < 60


def test_occurred_at_with_offset_is_stored_as_utc_milliseconds(client, tenant):
    event = an_event(occurred_at="2025-03-01T12:34:56.789999+02:00")
    r = post(client, tenant, event, "?wait=sequenced")
    assert r.status_code == 201, r.text
    r = client.get(f"/v1/events/{event['id']}", headers=tenant.auth("read"))
    assert r.status_code == 200, r.text
    stored_event = r.json()
    assert stored_event["occurred_at"] == "2025-03-01T10:34:56.789Z"
    assert UTC_MS.match(stored_event["received_at"])
    assert stored_event["tenant"] == tenant.name
    assert stored_event["id"] == event["id"]


# --- dedupe -----------------------------------------------------------------------------


def test_resent_id_is_a_duplicate_and_stored_once(client, tenant, database_url):
    event = an_event()
    assert post(client, tenant, event).json() == {"accepted": [event["id"]], "duplicates": []}
    again = {**event, "action": "user.login.failed"}  # same id, other content
    r = post(client, tenant, again)
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": [], "duplicates": [event["id"]]}
    counts = stored(database_url, [event["id"]], tenant.name)
    assert counts["event_ids"] == 1
    assert counts["inbox"] + counts["events"] == 1
    # The first version is the one kept.
    r = post(client, tenant, again, "?wait=sequenced")
    assert r.status_code == 201, r.text
    assert r.json()["duplicates"] == [event["id"]]
    r = client.get(f"/v1/events/{event['id']}", headers=tenant.auth())
    assert r.json()["action"] == event["action"]


def test_id_resent_after_sequencing_is_still_a_duplicate(client, tenant, database_url):
    event = an_event()
    assert post(client, tenant, event, "?wait=sequenced").status_code == 201
    r = post(client, tenant, event)
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": [], "duplicates": [event["id"]]}
    assert stored(database_url, [event["id"]], tenant.name) == {
        "event_ids": 1, "inbox": 0, "events": 1,
    }


def test_same_id_twice_in_one_batch(client, tenant, database_url):
    first = an_event()
    second = {**first, "action": "user.logout.done"}
    other = an_event()
    r = post(client, tenant, {"events": [first, other, second]})
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": [first["id"], other["id"]], "duplicates": [first["id"]]}
    assert stored(database_url, [first["id"]], tenant.name)["event_ids"] == 1


def test_same_id_under_another_tenant_is_accepted(client, tenant, other_tenant, database_url):
    event = an_event()
    assert post(client, tenant, event, "?wait=sequenced").status_code == 201
    r = client.get(f"/v1/events/{event['id']}", headers=other_tenant.auth())
    problem(r, 404, "not-found")
    r = post(client, other_tenant, event, "?wait=sequenced")
    assert r.status_code == 201, r.text
    assert r.json()["accepted"] == [event["id"]]
    assert r.json()["duplicates"] == []
    for who in (tenant, other_tenant):
        r = client.get(f"/v1/events/{event['id']}", headers=who.auth())
        assert r.json()["tenant"] == who.name
        assert stored(database_url, [event["id"]], who.name)["events"] == 1


# --- atomicity --------------------------------------------------------------------------


def test_one_invalid_event_rejects_the_whole_batch(client, tenant, database_url):
    events = [an_event(), an_event(action="Not.valid"), an_event()]
    ids = [e["id"] for e in events]
    doc = problem(post(client, tenant, {"events": events}), 422, "invalid-input")
    assert error_paths(doc) == {(1, "action")}
    assert stored(database_url, ids) == {"event_ids": 0, "inbox": 0, "events": 0}
    # Nothing of the refused batch counts as sent: the good events are fresh afterwards.
    r = post(client, tenant, {"events": [events[0], events[2]]})
    assert r.json() == {"accepted": [ids[0], ids[2]], "duplicates": []}


def test_every_bad_field_of_every_bad_event_is_named(client, tenant):
    events = [
        an_event(actor={"type": "robot", "id": ""}, action="login"),
        an_event(),
        an_event(context={"ip": "10.0.0.256"}, outcome={"status": "maybe"}),
    ]
    doc = problem(post(client, tenant, {"events": events}), 422, "invalid-input")
    assert error_paths(doc) == {
        (0, "actor.type"),
        (0, "actor.id"),
        (0, "action"),
        (2, "context.ip"),
        (2, "outcome.status"),
    }


# --- bad input --------------------------------------------------------------------------


def _text(event: dict[str, Any]) -> str:
    return json.dumps(event)  # ensure_ascii: NUL and lone surrogates become \u escapes


def _metadata_literal(literal: str) -> bytes:
    """An event whose ``metadata.x`` is the raw JSON text ``literal``."""
    return _text(an_event(metadata={"x": "@"})).replace('"@"', literal).encode()


def _nested_objects(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def _body(value: Any) -> bytes:
    return _text(value).encode()


_FUTURE = (datetime.now(UTC) + timedelta(days=2)).isoformat()

# (case, body, expected status, problem slug, expected (index, path) errors or None)
BAD_INPUT: list[tuple[str, bytes, int, str, set[tuple[int | None, str]] | None]] = [
    ("not json", b"hello, world", 400, "bad-json", None),
    ("empty body", b"", 400, "bad-json", None),
    ("truncated", _body(an_event())[:-5], 400, "bad-json", None),
    ("invalid utf-8", b'{"action": "user.\xff\xfe"}', 400, "bad-json", None),
    ("NaN", _metadata_literal("NaN"), 400, "bad-json", None),
    ("Infinity", _metadata_literal("Infinity"), 400, "bad-json", None),
    ("-Infinity", _metadata_literal("-Infinity"), 400, "bad-json", None),
    (
        "duplicate top-level key",
        (_text(an_event())[:-1] + ', "action": "user.other.thing"}').encode(),
        400, "bad-json", None,
    ),
    ("duplicate nested key", _metadata_literal('{"k": 1, "k": 2}'), 400, "bad-json", None),
    (
        "100,000 nested arrays",
        _metadata_literal("[" * 100_000 + "]" * 100_000),
        400, "bad-json", None,
    ),
    ("5,000-digit integer", _metadata_literal("9" * 5000), 400, "bad-json", None),
    (
        "40 nested objects",
        _body(an_event(metadata=_nested_objects(40))),
        422, "invalid-input", {(0, "metadata" + ".a" * 32)},
    ),
    ("1e999", _metadata_literal("1e999"), 422, "invalid-input", {(0, "metadata.x")}),
    ("2**53", _metadata_literal(str(2**53)), 422, "invalid-input", {(0, "metadata.x")}),
    ("-(2**53)", _metadata_literal(str(-(2**53))), 422, "invalid-input", {(0, "metadata.x")}),
    (
        "NUL in a value",
        _body(an_event(target={"type": "doc", "id": "d\u0000"})),
        422, "invalid-input", {(0, "target.id")},
    ),
    (
        "NUL in a key",
        _body(an_event(metadata={"k\u0000": 1})),
        422, "invalid-input", {(0, "metadata.k\u0000")},
    ),
    (
        "lone surrogate in a value",
        _body(an_event(metadata={"k": ["ok", "\ud800"]})),
        422, "invalid-input", {(0, "metadata.k[1]")},
    ),
    (
        "lone surrogate in a key",
        _body(an_event(metadata={"k\ud800": 1})),
        422, "invalid-input", {(0, "metadata.k\\ud800")},
    ),
    (
        "key holding ': '",
        _body(an_event(metadata={"a: b": "\u0000"})),
        422, "invalid-input", {(0, "metadata.a: b")},
    ),
    ("bare string", b'"user.login"', 422, "invalid-input", {(0, "")}),
    ("bare array", b"[1]", 422, "invalid-input", {(0, "")}),
    ("null", b"null", 422, "invalid-input", {(0, "")}),
    (
        "events holding a non-object",
        _body({"events": [an_event(), 1, "x"]}),
        422, "invalid-input", {(1, ""), (2, "")},
    ),
    ("unknown top-level field", _body(an_event(colour="red")), 422, "invalid-input",
     {(0, "colour")}),
    ("tenant set by the producer", _body(an_event(tenant="someone-else")), 422,
     "invalid-input", {(0, "tenant")}),
    ("missing actor", _body({k: v for k, v in an_event().items() if k != "actor"}), 422,
     "invalid-input", {(0, "actor")}),
    ("wrong actor.type", _body(an_event(actor={"type": "robot", "id": "r1"})), 422,
     "invalid-input", {(0, "actor.type")}),
    ("action with capitals", _body(an_event(action="User.login")), 422, "invalid-input",
     {(0, "action")}),
    ("action with one part", _body(an_event(action="login")), 422, "invalid-input",
     {(0, "action")}),
    ("action with an empty part", _body(an_event(action="a..b")), 422, "invalid-input",
     {(0, "action")}),
    ("UUIDv4 id", _body(an_event(id=str(uuid.uuid4()))), 422, "invalid-input", {(0, "id")}),
    ("id not a UUID", _body(an_event(id="evt-1")), 422, "invalid-input", {(0, "id")}),
    ("invalid ip", _body(an_event(context={"ip": "300.1.2.3"})), 422, "invalid-input",
     {(0, "context.ip")}),
    ("occurred_at without offset", _body(an_event(occurred_at="2025-03-01T12:00:00")), 422,
     "invalid-input", {(0, "occurred_at")}),
    ("occurred_at as a number", _body(an_event(occurred_at=1_740_830_400)), 422,
     "invalid-input", {(0, "occurred_at")}),
    ("occurred_at in the future", _body(an_event(occurred_at=_FUTURE)), 422,
     "invalid-input", {(0, "occurred_at")}),
    ("occurred_at as a digit string", _body(an_event(occurred_at="1740830400")), 422,
     "invalid-input", {(0, "occurred_at")}),
    ("occurred_at overflowing UTC", _body(an_event(occurred_at="0001-01-01T00:00:00+01:00")),
     422, "invalid-input", {(0, "occurred_at")}),
    ("occurred_at overflowing UTC (late)",
     _body(an_event(occurred_at="9999-12-31T23:59:59-01:00")), 422, "invalid-input",
     {(0, "occurred_at")}),
    ("ipv6 with a zone id", _body(an_event(context={"ip": "fe80::1%eth0"})), 422,
     "invalid-input", {(0, "context.ip")}),
    ("change not before/after", _body(an_event(changes={"role": {"old": 1}})), 422,
     "invalid-input", {(0, "changes.role.old")}),
    ("empty batch", b'{"events": []}', 422, "invalid-input", {(None, "events")}),
    ("events not an array", b'{"events": {}}', 422, "invalid-input", {(None, "events")}),
    ("batch with another member", _body({"events": [an_event()], "other": 1}), 422,
     "invalid-input", {(None, "events")}),
    (
        "canonical form over 65,535 bytes",
        _body(an_event(metadata={"s": "x" * 70_000})),
        422, "invalid-input", {(0, "")},
    ),
]


@pytest.mark.parametrize(
    ("body", "status", "slug", "errors"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_INPUT],
)
def test_bad_input_is_refused_with_a_problem(client, tenant, body, status, slug, errors):
    doc = problem(post_raw(client, tenant, body), status, slug)
    if errors is None:
        assert "errors" not in doc
    else:
        assert error_paths(doc) == errors


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_wrong_content_type_is_415(client, tenant, content_type):
    r = post_raw(client, tenant, _body(an_event()), content_type)
    doc = problem(r, 415, "unsupported-media-type")
    assert "errors" not in doc


def test_json_media_type_with_charset_is_accepted(client, tenant):
    r = post_raw(client, tenant, _body(an_event()), "application/json; charset=utf-8")
    assert r.status_code == 202, r.text


# --- authentication and scopes ----------------------------------------------------------


def _revoked_token(database_url: str, tenant: str) -> str:
    async def go() -> str:
        async with await AsyncConnection.connect(database_url, autocommit=True) as conn:
            key = await create_key(conn, tenant, ("ingest",), name="doomed")
            await revoke_key(conn, tenant, key.key_id)
        return key.token

    return str(run(go()))


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "tsk_no_scheme_at_all",
        "Bearer tsk_" + "A" * 43,
        "Bearer not-even-a-token",
    ],
)
def test_missing_or_unknown_token_is_401(client, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    for r in (
        client.post("/v1/events", json=an_event(), headers=headers),
        client.get("/v1/events", headers=headers),
    ):
        problem(r, 401, "unauthorized")
        assert r.headers["www-authenticate"] == 'Bearer realm="trailseal"'


def test_revoked_token_is_401(client, tenant, database_url):
    token = _revoked_token(database_url, tenant.name)
    event = an_event()
    r = client.post("/v1/events", json=event, headers={"Authorization": f"Bearer {token}"})
    problem(r, 401, "unauthorized")
    assert r.headers["www-authenticate"] == 'Bearer realm="trailseal"'
    assert stored(database_url, [event["id"]])["event_ids"] == 0


def test_key_revoked_after_use_stops_working(client, tenant, database_url):
    async def make() -> Any:
        async with await AsyncConnection.connect(database_url, autocommit=True) as conn:
            return await create_key(conn, tenant.name, ("ingest",), name="short-lived")

    async def revoke(key_id: uuid.UUID) -> None:
        async with await AsyncConnection.connect(database_url, autocommit=True) as conn:
            await revoke_key(conn, tenant.name, key_id)

    key = run(make())
    headers = {"Authorization": f"Bearer {key.token}"}
    assert client.post("/v1/events", json=an_event(), headers=headers).status_code == 202
    run(revoke(key.key_id))
    problem(client.post("/v1/events", json=an_event(), headers=headers), 401, "unauthorized")


def test_read_only_key_cannot_post(client, tenant, database_url):
    event = an_event()
    r = client.post("/v1/events", json=event, headers=tenant.auth("read"))
    problem(r, 403, "forbidden")
    assert stored(database_url, [event["id"]])["event_ids"] == 0


def test_ingest_only_key_cannot_read(client, tenant):
    event = an_event()
    r = client.post("/v1/events?wait=sequenced", json=event, headers=tenant.auth("ingest"))
    assert r.status_code == 201, r.text
    problem(client.get("/v1/events", headers=tenant.auth("ingest")), 403, "forbidden")
    r = client.get(f"/v1/events/{event['id']}", headers=tenant.auth("ingest"))
    problem(r, 403, "forbidden")


def test_authentication_comes_before_the_body(client):
    r = client.post("/v1/events", content=b"not json", headers={"Content-Type": "text/plain"})
    problem(r, 401, "unauthorized")


# --- ?wait=sequenced --------------------------------------------------------------------


def test_wait_sequenced_reports_seq_for_duplicates_too(client, tenant):
    old = an_event()
    r = post(client, tenant, old, "?wait=sequenced")
    assert r.status_code == 201, r.text
    (first,) = r.json()["sequenced"]
    new = an_event()
    r = post(client, tenant, {"events": [old, new]}, "?wait=sequenced")
    assert r.status_code == 201, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["accepted"] == [new["id"]]
    assert body["duplicates"] == [old["id"]]
    by_id = {s["id"]: s for s in body["sequenced"]}
    assert list(by_id) == [old["id"], new["id"]]
    assert by_id[old["id"]] == first
    assert by_id[new["id"]]["seq"] > first["seq"]
    for entry in body["sequenced"]:
        assert re.fullmatch(r"[0-9a-f]{64}", entry["leaf_hash"])
        read = client.get(f"/v1/events/{entry['id']}", headers=tenant.auth()).json()
        assert (read["seq"], read["leaf_hash"]) == (entry["seq"], entry["leaf_hash"])


def test_wait_sequenced_with_only_duplicates(client, tenant):
    event = an_event()
    first = post(client, tenant, event, "?wait=sequenced").json()["sequenced"]
    r = post(client, tenant, {"events": [event, event]}, "?wait=sequenced")
    assert r.status_code == 201, r.text
    assert r.json() == {
        "accepted": [],
        "duplicates": [event["id"], event["id"]],
        "sequenced": first,
    }


def test_wait_with_unknown_value_is_422(client, tenant, database_url):
    event = an_event()
    doc = problem(post(client, tenant, event, "?wait=bogus"), 422, "invalid-input")
    assert error_paths(doc) == {(None, "query.wait")}
    assert stored(database_url, [event["id"]])["event_ids"] == 0
