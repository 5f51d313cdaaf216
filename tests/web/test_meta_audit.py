"""The meta-audit: every read of a tenant's log is an event in that log (actor = the key,
the filters asked, the result count), written through the normal sequenced path; log
clients' checkpoint, key and tile reads counted per key and minute; meta events hidden
from queries unless asked for; the ``audit.`` namespace closed to producers."""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from tests.support import Tenant, an_event, free_port, run
from trailseal import ingest
from trailseal.ids import uuid7
from trailseal.store import create_pool
from trailseal.tenants import Principal
from trailseal.web.app import create_app
from trailseal.web.meta import MetaAudit, MetaAuditMiddleware, ReadNote, note_read

META = "audit.%"


def _key_id(database_url: str, tenant: Tenant, name: str) -> str:
    """The id of the tenant's key called ``name`` (``default`` holds every scope)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("SELECT id FROM trailseal.api_keys WHERE tenant = %s AND name = %s",
                           (tenant.name, name)).fetchone()
    assert row is not None
    return str(row[0])


def _meta_events(database_url: str, tenant: Tenant, at_least: int) -> list[dict[str, Any]]:
    """The tenant's meta events, read straight from the database (reading them through
    the API would record more), once its inbox is empty and at least ``at_least`` are in
    the log. Per-request records reach the inbox before the answer's last byte, so an
    empty inbox means every read answered so far is counted."""
    deadline = time.monotonic() + 15
    with psycopg.connect(database_url, autocommit=True) as conn:
        while True:
            pending = conn.execute("SELECT count(*) FROM trailseal.inbox WHERE tenant = %s",
                                   (tenant.name,)).fetchone()
            rows = conn.execute(
                "SELECT canonical FROM trailseal.events WHERE tenant = %s AND action LIKE %s"
                " ORDER BY seq", (tenant.name, META)).fetchall()
            if pending == (0,) and len(rows) >= at_least:
                return [json.loads(bytes(row[0])) for row in rows]
            assert time.monotonic() < deadline, f"{len(rows)} meta events, {pending} pending"
            time.sleep(0.02)


def _seed(client: httpx.Client, tenant: Tenant, n: int = 3) -> list[dict[str, Any]]:
    events = [an_event(actor={"type": "user", "id": "alice"},
                       target={"type": "user", "id": f"u_{i}"},
                       changes={"role": {"before": None, "after": "viewer"}}) for i in range(n)]
    r = client.post("/v1/events?wait=sequenced", json={"events": events},
                    headers=tenant.auth("ingest"))
    assert r.status_code == 201, r.text
    return events


READS = {
    "query": ("/v1/events", {"actor_id": "alice", "limit": 2}, "audit.events.queried",
              {"actor_id": "alice"}, 2),
    "event": ("/v1/events/{id}", {}, "audit.events.read", {"id": "{id}"}, 1),
    "receipt": ("/v1/events/{id}/receipt", {}, "audit.events.receipt_read", {"id": "{id}"}, 1),
    "inclusion": ("/v1/log/proof/inclusion", {"index": 1, "size": 3}, "audit.log.proof_read",
                  {"proof": "inclusion", "index": 1, "size": 3}, 1),
    "consistency": ("/v1/log/proof/consistency", {"from": 1, "to": 3}, "audit.log.proof_read",
                    {"proof": "consistency", "from": 1, "to": 3}, 1),
    "stream": ("/v1/stream", {"limit": 10}, "audit.events.streamed",
               {"format": "ocsf", "limit": 10, "from_seq": 0}, 3),
    "timeline": ("/v1/targets/user/u_1/timeline", {}, "audit.target.timeline_read",
                 {"target_type": "user", "target_id": "u_1"}, 1),
    "state": ("/v1/targets/user/u_1/state", {}, "audit.target.state_read",
              {"target_type": "user", "target_id": "u_1"}, 1),
}


@pytest.mark.parametrize("kind", list(READS))
def test_each_read_is_one_meta_event_in_the_tenants_own_log(
    client, database_url, tenant, kind
):
    path, params, action, filters, count = READS[kind]
    seeded = _seed(client, tenant)
    event_id = seeded[0]["id"]
    headers = {**tenant.auth("read"), "X-Request-ID": "req-meta-1", "User-Agent": "meta-test"}
    r = client.get(path.format(id=event_id), params=params, headers=headers)
    assert r.status_code == 200, r.text

    [meta] = _meta_events(database_url, tenant, 1)
    assert meta["action"] == action
    assert meta["tenant"] == tenant.name
    assert meta["actor"] == {"type": "api_key", "id": _key_id(database_url, tenant, "read")}
    assert meta["outcome"] == {"status": "success"}
    asked = {k: v.format(id=event_id) if isinstance(v, str) else v for k, v in filters.items()}
    assert {k: meta["metadata"]["filters"].get(k) for k in asked} == asked
    assert meta["metadata"]["count"] == count
    assert meta["metadata"]["completed"] is True
    assert meta["context"]["service"] == "trailseal"
    assert meta["context"]["request_id"] == "req-meta-1"
    assert meta["context"]["user_agent"] == "meta-test"
    assert meta["context"]["ip"] == "127.0.0.1"
    if kind in ("event", "receipt"):
        assert meta["target"] == {"type": "event", "id": event_id}
    elif kind in ("timeline", "state"):
        assert meta["target"] == {"type": "user", "id": "u_1"}
    else:
        assert meta["target"] == {"type": "log", "id": tenant.name}


def test_a_query_naming_one_target_records_that_target(client, database_url, tenant):
    _seed(client, tenant)
    r = client.get("/v1/events", params={"target_type": "user", "target_id": "u_1"},
                   headers=tenant.auth("read"))
    assert r.status_code == 200 and len(r.json()["events"]) == 1
    [meta] = _meta_events(database_url, tenant, 1)
    assert meta["target"] == {"type": "user", "id": "u_1"}
    assert meta["metadata"]["count"] == 1


def test_failed_reads_are_not_recorded(client, database_url, tenant):
    seeded = _seed(client, tenant)
    missing = str(uuid7())
    assert client.get(f"/v1/events/{missing}", headers=tenant.auth("read")).status_code == 404
    assert client.get("/v1/events", headers=tenant.auth("ingest")).status_code == 403
    assert client.get("/v1/events", params={"limit": 0},
                      headers=tenant.auth("read")).status_code == 422
    assert client.get("/v1/log/proof/inclusion", params={"index": 9, "size": 3},
                      headers=tenant.auth("read")).status_code == 400
    # One successful read afterwards: the only meta event there is.
    assert client.get(f"/v1/events/{seeded[0]['id']}",
                      headers=tenant.auth("read")).status_code == 200
    [meta] = _meta_events(database_url, tenant, 1)
    assert meta["action"] == "audit.events.read"


def test_meta_events_are_hidden_unless_include_meta(client, database_url, tenant):
    seeded = _seed(client, tenant, 2)
    client.get(f"/v1/events/{seeded[0]['id']}/receipt", headers=tenant.auth("read"))
    _meta_events(database_url, tenant, 1)

    plain = client.get("/v1/events", headers=tenant.auth("read")).json()["events"]
    assert sorted(e["id"] for e in plain) == sorted(e["id"] for e in seeded)
    _meta_events(database_url, tenant, 2)
    every = client.get("/v1/events", params={"include_meta": "true"},
                       headers=tenant.auth("read")).json()["events"]
    # Newest first: the plain query, the receipt read, then the producer's events.
    assert [e["action"] for e in every[:2]] == ["audit.events.queried",
                                                "audit.events.receipt_read"]
    assert [e["id"] for e in every[2:]] == [e["id"] for e in reversed(seeded)]


def test_reading_meta_events_records_one_query_per_read_and_nothing_more(
    client, database_url, tenant
):
    _seed(client, tenant)
    client.get("/v1/log/proof/inclusion", params={"index": 0, "size": 3},
               headers=tenant.auth("read"))
    _meta_events(database_url, tenant, 1)
    reads = 6
    for _ in range(reads):
        r = client.get("/v1/events", params={"include_meta": "true", "action": "audit.*"},
                       headers=tenant.auth("read"))
        assert r.status_code == 200
    found = _meta_events(database_url, tenant, 1 + reads)
    expected = ["audit.log.proof_read"] + ["audit.events.queried"] * reads
    assert [e["action"] for e in found] == expected
    assert all(e["metadata"]["filters"]["include_meta"] is True for e in found[1:])


def test_producers_cannot_write_into_the_meta_namespace(client, database_url, tenant):
    for action in ("audit.x", "audit.events.queried"):
        r = client.post("/v1/events", json=an_event(action=action), headers=tenant.auth())
        assert r.status_code == 422, r.text
        doc = r.json()
        assert doc["errors"][0]["path"] == "action"
        assert "reserved" in doc["errors"][0]["message"]
    # A batch with one such event is refused whole.
    batch = {"events": [an_event(), an_event(action="audit.log.tiles_read")]}
    r = client.post("/v1/events", json=batch, headers=tenant.auth())
    assert r.status_code == 422
    assert [(e["index"], e["path"]) for e in r.json()["errors"]] == [(1, "action")]
    # Actions that merely start with the same letters are ordinary.
    ok = client.post("/v1/events?wait=sequenced", json=an_event(action="auditor.assigned"),
                     headers=tenant.auth())
    assert ok.status_code == 201, ok.text


def test_another_tenant_never_sees_them(client, database_url, tenant, other_tenant):
    seeded = _seed(client, tenant)
    client.get(f"/v1/events/{seeded[0]['id']}", headers=tenant.auth("read"))
    ours = _meta_events(database_url, tenant, 1)
    theirs = client.get("/v1/events", params={"include_meta": "true"},
                        headers=other_tenant.auth("read")).json()["events"]
    assert theirs == []
    # Their query is recorded in their own log, not ours.
    [their_meta] = _meta_events(database_url, other_tenant, 1)
    assert their_meta["actor"]["id"] == _key_id(database_url, other_tenant, "read")
    assert their_meta["tenant"] == other_tenant.name
    assert _meta_events(database_url, tenant, 1) == ours


def test_a_streamed_export_is_recorded_with_its_full_count(client, database_url, tenant):
    events = [an_event() for _ in range(1200)]
    for start in range(0, len(events), 600):
        r = client.post("/v1/events?wait=sequenced", json={"events": events[start:start + 600]},
                        headers=tenant.auth("ingest"))
        assert r.status_code == 201, r.text
    lines = 0
    with client.stream("GET", "/v1/export", params={"format": "ndjson", "action": "user.*"},
                       headers=tenant.auth("export")) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            lines += bool(line)
    assert lines == len(events)
    [meta] = _meta_events(database_url, tenant, 1)
    assert meta["action"] == "audit.events.exported"
    assert meta["actor"]["id"] == _key_id(database_url, tenant, "export")
    assert meta["metadata"]["count"] == len(events)
    assert meta["metadata"]["completed"] is True
    assert meta["metadata"]["filters"]["format"] == "ndjson"
    assert meta["metadata"]["filters"]["action"] == ["user.*"]


# -- log clients: checkpoint, key and tile reads counted per key and minute ----------------


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@contextmanager
def _serve(app: FastAPI) -> Iterator[str]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(),
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "service did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        assert not thread.is_alive()


def _log_reads(http: httpx.Client, tenant: Tenant, scope: str | None, times: int) -> None:
    for _ in range(times):
        for path in ("checkpoint", "key", "tile/0/000.p/3", "tile/0/000.p/3",
                     "tile/entries/000.p/3"):
            r = http.get(f"/v1/log/{path}", headers=tenant.auth(scope))
            assert r.status_code == 200, (path, r.text)


def test_log_reads_are_one_event_per_key_and_minute(client, database_url, settings, tenant):
    _seed(client, tenant)
    # The session's service sequences; this app only answers reads, on a clock of its own.
    clock = Clock(ingest.now().replace(second=5, microsecond=0))
    minute = clock.at.replace(second=0)
    app = create_app(settings.model_copy(update={"run_sequencer": False}), database_url,
                     secrets.token_bytes(32), clock=clock)
    with _serve(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        _log_reads(http, tenant, "read", 4)
        clock.at += timedelta(seconds=40)
        _log_reads(http, tenant, None, 1)
        # A 404 (no such tile yet) is not a read of anything.
        assert http.get("/v1/log/tile/0/001", headers=tenant.auth()).status_code == 404
        assert app.state.meta_audit.failures == 0

        clock.at = minute + timedelta(minutes=1, seconds=1)  # that minute is over
        found = _meta_events(database_url, tenant, 2)
        assert len(found) == 2
        by_key = {e["actor"]["id"]: e for e in found}
        read, default = (_key_id(database_url, tenant, n) for n in ("read", "default"))
        assert set(by_key) == {read, default}
        stamp = minute.strftime("%Y-%m-%dT%H:%M:00.000Z")
        assert by_key[read]["metadata"] == {
            "minute": stamp, "checkpoint": 4, "key": 4, "tiles": 8, "entries": 4, "count": 20}
        assert by_key[default]["metadata"] == {
            "minute": stamp, "checkpoint": 1, "key": 1, "tiles": 2, "entries": 1, "count": 5}
        assert all(e["action"] == "audit.log.tiles_read" for e in found)
        assert all(e["target"] == {"type": "log", "id": tenant.name} for e in found)
        assert by_key[default]["occurred_at"] == (minute + timedelta(seconds=45)).strftime(
            "%Y-%m-%dT%H:%M:%S.000Z")

        # Reads in the next minute wait for it to end, or for the service to stop.
        _log_reads(http, tenant, "read", 2)
        assert _meta_events(database_url, tenant, 2) == found
    later = _meta_events(database_url, tenant, 3)
    assert len(later) == 3
    assert later[2]["metadata"]["minute"] == (minute + timedelta(minutes=1)).strftime(
        "%Y-%m-%dT%H:%M:00.000Z")
    assert later[2]["metadata"]["count"] == 10


# -- the middleware itself: streamed answers, disconnects, failures -----------------------

PRINCIPAL = Principal("t-meta", uuid.UUID(int=7), frozenset({"read"}))


class Recorder(MetaAudit):
    """Keeps what would be recorded, and how many messages had gone out by then."""

    def __init__(self, sent: list[dict[str, Any]]) -> None:
        super().__init__()
        self.sent = sent
        self.kept: list[tuple[str, int, bool, int]] = []

    async def record(self, note: ReadNote, context: dict[str, Any], completed: bool) -> None:
        self.kept.append((note.action, note.count, completed, len(self.sent)))


def _streaming_app(rows: int | None) -> FastAPI:
    """``GET /rows``: ``rows`` lines, or lines forever (None), counted on the note."""
    app = FastAPI()

    @app.get("/rows")
    async def stream(request: Request) -> StreamingResponse:
        note = note_read(request, PRINCIPAL, "audit.events.exported", {"format": "ndjson"})

        async def lines():  # type: ignore[no-untyped-def]
            n = 0
            while rows is None or n < rows:
                n += 1
                note.count = n
                await asyncio.sleep(0)
                yield b"{}\n"

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    return app


async def _call(
    app: Any, disconnect_after: int | None = None, into: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """The messages of one GET /rows through ``app`` (appended to ``into``); the client
    goes away after ``disconnect_after`` body chunks (None: it reads to the end)."""
    sent: list[dict[str, Any]] = [] if into is None else into
    gone = asyncio.Event()
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        chunks = [m for m in sent if m["type"] == "http.response.body" and m.get("body")]
        if disconnect_after is not None and len(chunks) >= disconnect_after:
            gone.set()

    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
             "http_version": "1.1", "method": "GET", "scheme": "http", "path": "/rows",
             "raw_path": b"/rows", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"test")], "client": ("127.0.0.1", 5000),
             "server": ("test", 80)}
    await app(scope, receive, send)
    return sent


def test_a_streamed_read_is_recorded_with_its_full_count_before_the_last_byte():
    sent: list[dict[str, Any]] = []
    recorder = Recorder(sent)
    app = MetaAuditMiddleware(_streaming_app(250), recorder)
    run(_call(app, into=sent))
    assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
    [(action, count, completed, before)] = recorder.kept
    assert (action, count, completed) == ("audit.events.exported", 250, True)
    assert before == len(sent) - 1  # written before the last message went out


def test_a_client_that_leaves_mid_stream_still_gets_a_record():
    recorder = Recorder([])
    app = MetaAuditMiddleware(_streaming_app(None), recorder)
    sent = run(_call(app, disconnect_after=5))
    chunks = [m for m in sent if m["type"] == "http.response.body" and m.get("body")]
    assert not any(m["type"] == "http.response.body" and not m.get("more_body") for m in sent)
    [(action, count, completed, _)] = recorder.kept
    assert (action, completed) == ("audit.events.exported", False)
    assert len(chunks) <= count <= len(chunks) + 1  # the chunk in flight, at most


def test_a_failed_record_is_counted_and_the_answer_still_delivered(caplog):
    recorder = MetaAudit()  # never opened: it has no database to write to
    app = MetaAuditMiddleware(_streaming_app(3), recorder)
    sent = run(_call(app))
    assert sent[0]["status"] == 200
    assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
    assert recorder.failures == 1
    assert "could not record audit.events.exported" in caplog.text


def test_filters_that_cannot_be_stored_are_named_not_dropped(client, database_url, tenant):
    key = uuid.UUID(_key_id(database_url, tenant, "read"))
    principal = Principal(tenant.name, key, frozenset({"read"}))
    notes = [
        # A NUL cannot be stored anywhere: the read is recorded, naming the filter.
        ReadNote(principal, "audit.events.queried", {"actor_id": "a\x00b"}, count=0),
        # A target the schema would refuse is kept in the filters, not made the target.
        ReadNote(principal, "audit.events.queried",
                 {"target_type": "user", "target_id": "x" * 300}, count=0),
    ]

    async def go() -> None:
        pool = create_pool(database_url, min_size=1, max_size=2)
        await pool.open(wait=True)
        try:
            recorder = MetaAudit()
            recorder.open(pool)
            for note in notes:
                await recorder.record(note, {}, completed=True)
            assert recorder.failures == 0
        finally:
            await pool.close()

    run(go())
    nul, long = _meta_events(database_url, tenant, 2)
    assert nul["metadata"]["filters"] == {"unrecordable": ["metadata.filters.actor_id"]}
    assert long["metadata"]["filters"] == {"target_type": "user", "target_id": "x" * 300}
    assert nul["target"] == long["target"] == {"type": "log", "id": tenant.name}
