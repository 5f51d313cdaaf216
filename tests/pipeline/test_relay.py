"""The relay against the real service: delivery, concurrency, late commits, refused
events, an outage; and ``HttpTransport``'s answers to each status."""

from __future__ import annotations

import json
import secrets
import threading
import time
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn

from tests.pipeline.support import outbox
from tests.support import free_port, new_id
from trailseal.client import request_context
from trailseal.client.outbox import record_in_transaction
from trailseal.pipeline.capture import install_capture
from trailseal.pipeline.relay import HttpTransport, Relay
from trailseal.pipeline.transport import Delivered, TransportError
from trailseal.web.app import create_app


def _held(database_url: str, tenant: str) -> set[str]:
    """Ids of every event the service holds for ``tenant``, sequenced or not (read as the
    superuser, past row-level security), leaving out the meta-audit's records of the
    test's own reads."""
    with psycopg.connect(database_url) as conn:
        return {r[0] for r in conn.execute(
            "SELECT i.id::text FROM trailseal.event_ids i WHERE i.tenant = %(t)s"
            " AND NOT EXISTS (SELECT FROM trailseal.events e WHERE e.tenant = %(t)s"
            "                 AND e.id = i.id AND e.action LIKE 'audit.%%')"
            " AND NOT EXISTS (SELECT FROM trailseal.inbox b WHERE b.tenant = %(t)s"
            "                 AND b.id = i.id AND b.action LIKE 'audit.%%')",
            {"t": tenant})}


def _search(client: httpx.Client, tenant, count: int, **params: str) -> list[dict[str, Any]]:
    """``GET /v1/events`` with ``params`` once ``count`` events are readable (sequenced)."""
    deadline = time.monotonic() + 30
    while True:
        answer = client.get("/v1/events", params=params, headers=tenant.auth("read"))
        assert answer.status_code == 200, answer.text
        events = answer.json()["events"]
        if len(events) >= count or time.monotonic() > deadline:
            return events
        time.sleep(0.05)


def _drain(relay: Relay) -> int:
    total = 0
    while taken := relay.run_once():
        total += taken
    return total


def _outbox_rows(url: str) -> list[tuple[int, int, str | None, bool]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT id, attempts, last_error, dead_at IS NOT NULL FROM trailseal_outbox"
            " ORDER BY id").fetchall()


def test_rows_are_delivered_deleted_and_read_back_together(
    app_url, service_url, tenant, client, database_url
):
    with psycopg.connect(app_url, autocommit=True) as conn:
        install_capture(conn, "public.users", ["password_hash"])
    flow = f"flow-{secrets.token_hex(4)}"
    with psycopg.connect(app_url) as conn, request_context(
        correlation_id=flow, request_id=f"req-{flow}", actor={"type": "user", "id": "7"}
    ), conn.transaction():
        intent = record_in_transaction(conn, "user.bulk_invite.requested",
                                       target=("org", "acme"), metadata={"count": 3})
        conn.execute("INSERT INTO users (id, email, password_hash) VALUES"
                     " (1, 'a@x', 'h'), (2, 'b@x', 'h'), (3, 'c@x', 'h')")
    relay = Relay(app_url, HttpTransport(service_url, tenant.tokens["ingest"]), batch_size=3)
    try:
        assert _drain(relay) == 4
    finally:
        relay.close()
    assert outbox(app_url) == [] and relay.stats.delivered == 4
    together = _search(client, tenant, 4, correlation_id=flow)
    assert sorted(e["action"] for e in together) == [
        "user.bulk_invite.requested", "users.created", "users.created", "users.created"]
    assert intent in {e["id"] for e in together}
    assert {e["actor"]["id"] for e in together} == {"7"}
    by_request = _search(client, tenant, 4, request_id=f"req-{flow}")
    assert {e["id"] for e in by_request} == {e["id"] for e in together}
    assert _search(client, tenant, 0, correlation_id="another-flow") == []
    assert len(_held(database_url, tenant.name)) == 4


class _Recording:
    """A transport that remembers every event id it sent."""

    def __init__(self, inner: HttpTransport, sent: list[str]) -> None:
        self.inner, self.sent = inner, sent

    def send(self, events: list[bytes]) -> Delivered:
        outcome = self.inner.send(events)
        self.sent.extend(json.loads(e)["id"] for e in events)
        return outcome

    def close(self) -> None:
        self.inner.close()


def test_two_relays_at_once_deliver_each_row_once(app_url, service_url, tenant, database_url):
    with psycopg.connect(app_url, autocommit=True) as conn:
        install_capture(conn, "public.users")
        conn.execute("INSERT INTO users (id, role) SELECT n, 'viewer'"
                     " FROM generate_series(1, 1200) n")
    expected = {e["id"] for e in outbox(app_url)}
    sent: list[list[str]] = [[], []]
    relays = [
        Relay(app_url, _Recording(HttpTransport(service_url, tenant.tokens["ingest"]), ids),
              batch_size=40, poll_interval=0.02)
        for ids in sent
    ]
    stop = threading.Event()
    threads = [threading.Thread(target=r.run, args=(stop,)) for r in relays]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while outbox(app_url) and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    for thread, relay in zip(threads, relays, strict=True):
        thread.join(10)
        relay.close()
    everything = sent[0] + sent[1]
    assert sent[0] and sent[1], "both relays should have shipped batches"
    assert len(everything) == len(set(everything)) == 1200
    assert set(everything) == expected == _held(database_url, tenant.name)


def test_a_row_committed_late_is_not_skipped(app_url, service_url, tenant, database_url):
    relay = Relay(app_url, HttpTransport(service_url, tenant.tokens["ingest"]))
    try:
        with psycopg.connect(app_url) as late, psycopg.connect(app_url) as early:
            first = record_in_transaction(late, "job.started", actor=("service", "a"),
                                          target=("job", "1"))  # takes id 1, stays open
            second = record_in_transaction(early, "job.started", actor=("service", "b"),
                                           target=("job", "2"))
            early.commit()  # id 2 commits first
            assert relay.run_once() == 1
            assert _held(database_url, tenant.name) == {second}
            late.commit()  # id 1 commits after id 2 was shipped
        assert [row[0] for row in _outbox_rows(app_url)] == [1]
        assert relay.run_once() == 1
    finally:
        relay.close()
    assert _held(database_url, tenant.name) == {first, second}
    assert outbox(app_url) == []


def test_a_refused_event_is_kept_as_dead_and_the_rest_delivered(
    app_url, service_url, tenant, database_url
):
    bad = {"id": new_id(), "actor": {"type": "user", "id": "1"}, "action": "Not An Action",
           "target": {"type": "user", "id": "1"}}
    with psycopg.connect(app_url) as conn:
        good = [record_in_transaction(conn, "user.viewed", actor=("user", "1"),
                                      target=("user", str(i))) for i in range(2)]
        conn.execute("INSERT INTO trailseal_outbox (event) VALUES (%s)", (json.dumps(bad),))
        good.append(record_in_transaction(conn, "user.viewed", actor=("user", "1"),
                                          target=("user", "3")))
        conn.commit()
    relay = Relay(app_url, HttpTransport(service_url, tenant.tokens["ingest"]))
    try:
        assert relay.run_once() == 4
        assert relay.run_once() == 0  # the dead row is out of the queue
    finally:
        relay.close()
    assert _held(database_url, tenant.name) == set(good)
    [(_, attempts, error, dead)] = _outbox_rows(app_url)
    assert dead and attempts == 1 and "action" in (error or "")
    assert outbox(app_url) == [bad]
    assert relay.stats.dead == 1 and relay.stats.delivered == 3


class _Service:
    """A second instance of the service on a chosen port, started when we say."""

    def __init__(self, settings, database_url: str, port: int) -> None:
        app = create_app(settings.model_copy(update={"run_sequencer": False}), database_url,
                         cursor_key=secrets.token_bytes(32))
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def test_while_the_service_is_down_rows_stay_then_go(app_url, settings, tenant, database_url):
    port = free_port()
    with psycopg.connect(app_url) as conn:
        ids = [record_in_transaction(conn, "outage.tested", actor=("service", "t"),
                                     target=("run", str(i))) for i in range(5)]
        conn.commit()
    relay = Relay(app_url, HttpTransport(f"http://127.0.0.1:{port}", tenant.tokens["ingest"],
                                         timeout=2), poll_interval=0.02)
    with pytest.raises(TransportError):
        relay.run_once()
    assert [(a, dead) for _, a, _, dead in _outbox_rows(app_url)] == [(1, False)] * 5
    stop = threading.Event()
    running = threading.Thread(target=relay.run, args=(stop,))
    running.start()
    service = _Service(settings, database_url, port)
    try:
        deadline = time.monotonic() + 20
        while relay.stats.failures < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert relay.stats.failures >= 3 and len(_outbox_rows(app_url)) == 5
        service.start()
        deadline = time.monotonic() + 60
        while _outbox_rows(app_url) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        running.join(10)
        relay.close()
        service.stop()
    assert _outbox_rows(app_url) == []
    assert _held(database_url, tenant.name) == set(ids)


# -- HttpTransport, answer by answer ----------------------------------------------------


def _transport(handler) -> tuple[HttpTransport, list[list[dict[str, Any]]]]:
    posted: list[list[dict[str, Any]]] = []

    def record(request: httpx.Request) -> httpx.Response:
        batch = json.loads(request.content)["events"]
        posted.append(batch)
        return handler(batch)

    http = httpx.Client(transport=httpx.MockTransport(record))
    return HttpTransport("http://audit.test/", "tsk_x", http=http), posted


def _events(*names: str) -> list[bytes]:
    return [json.dumps({"name": n}).encode() for n in names]


def test_a_2xx_takes_the_batch():
    transport, posted = _transport(lambda batch: httpx.Response(202, json={}))
    assert transport.send(_events("a", "b")) == Delivered({})
    assert [[e["name"] for e in b] for b in posted] == [["a", "b"]]


def test_a_422_names_the_refused_and_the_rest_is_sent_again():
    def handler(batch):
        bad = [i for i, e in enumerate(batch) if e["name"].startswith("bad")]
        if not bad:
            return httpx.Response(202, json={})
        return httpx.Response(422, json={"detail": "invalid", "errors": [
            {"index": i, "path": "action", "message": "no good"} for i in bad]})

    transport, posted = _transport(handler)
    outcome = transport.send(_events("a", "bad1", "b", "bad2"))
    assert outcome.rejected == {1: "action: no good", 3: "action: no good"}
    assert [e["name"] for e in posted[-1]] == ["a", "b"]


def test_a_413_halves_the_batch_down_to_the_event_that_is_too_large():
    def handler(batch):
        if len(batch) > 1 or batch[0]["name"] == "huge":
            return httpx.Response(413, json={"detail": "too large"})
        return httpx.Response(202, json={})

    transport, _ = _transport(handler)
    outcome = transport.send(_events("a", "huge", "b", "c"))
    assert list(outcome.rejected) == [1] and "413" in outcome.rejected[1]


def test_a_422_naming_no_event_is_halved_too():
    def handler(batch):
        if any(e["name"] == "bad" for e in batch):
            return httpx.Response(422, json={"detail": "invalid parameters"})
        return httpx.Response(202, json={})

    transport, _ = _transport(handler)
    assert list(transport.send(_events("a", "b", "bad", "c")).rejected) == [2]


@pytest.mark.parametrize(("status", "headers", "retry_after"), [
    (429, {"Retry-After": "7"}, 7.0),
    (503, {}, None),
    (500, {}, None),
    (401, {}, None),
])
def test_a_busy_or_failing_service_raises_to_retry(status, headers, retry_after):
    transport, _ = _transport(lambda batch: httpx.Response(status, headers=headers))
    with pytest.raises(TransportError) as caught:
        transport.send(_events("a"))
    assert caught.value.retry_after == retry_after


def test_network_errors_raise_to_retry():
    transport = HttpTransport(f"http://127.0.0.1:{free_port()}", "tsk_x", timeout=1)
    with pytest.raises(TransportError, match="ConnectError"):
        transport.send(_events("a"))


def test_batches_are_cut_to_what_one_request_may_carry():
    transport, posted = _transport(lambda batch: httpx.Response(202, json={}))
    transport.send(_events(*(str(i) for i in range(2500))))
    assert [len(b) for b in posted] == [1000, 1000, 500]
    big = [b"{\"pad\": \"" + b"x" * (1 << 20) + b"\"}"] * 9
    posted.clear()
    transport.send(big)
    assert [len(b) for b in posted] == [3, 3, 3]
