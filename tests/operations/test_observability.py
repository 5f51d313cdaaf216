"""/metrics, the alerts on /readyz, request ids and JSON logs; and PCI DSS 10.7 end to
end: with no sequencer running, an accepted event that is not logged shows as an alert."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from tests.support import an_event, free_port, make_tenant
from trailseal.runtime import build_sequencer
from trailseal.settings import Settings
from trailseal.store import create_pool
from trailseal.web.app import create_app
from trailseal.web.logs import JsonFormatter, request_id


def _serve(settings: Settings, url: str) -> Iterator[str]:
    app = create_app(settings, url, cursor_key=secrets.token_bytes(32))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "service did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def unsequenced(own_database, tmp_path) -> Iterator[tuple[str, Settings]]:
    """The API alone over a database of its own, every alert threshold at zero."""
    settings = Settings(
        database_url=own_database, data_dir=tmp_path, log_origin="ops.test",
        run_sequencer=False, run_archiver=False, alert_inbox_age_seconds=0,
        alert_checkpoint_age_seconds=0, metrics_cache_seconds=0,
    )
    for base in _serve(settings, own_database):
        yield base, settings


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in /metrics")


def test_metrics_names_no_tenant_by_default(client, tenant):
    assert client.post("/v1/events?wait=sequenced", json=an_event(),
                       headers=tenant.auth()).status_code == 201
    deadline = time.monotonic() + 30  # the session service reuses a reading for 5 s
    while True:
        response = client.get("/metrics")
        assert response.status_code == 200
        if _metric(response.text, "trailseal_log_events") >= 1:
            break
        assert time.monotonic() < deadline, response.text
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert _metric(text, "trailseal_events_ingested_total") >= 1
    _metric(text, "trailseal_events_sequenced_total")
    for name in ("trailseal_inbox_events", "trailseal_inbox_age_seconds",
                 "trailseal_sequencer_lag_seconds", "trailseal_checkpoint_age_seconds",
                 "trailseal_archive_backlog_events", "trailseal_witness_failures_total",
                 "trailseal_meta_audit_failures_total", "trailseal_tenants"):
        _metric(text, name)
    assert 'trailseal_alert{condition="sequencer_stalled"}' in text
    assert tenant.name not in text


def test_request_id_is_kept_or_made(client):
    given = client.get("/healthz", headers={"X-Request-ID": "req-123"})
    assert given.headers["x-request-id"] == "req-123"
    made = client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert made.headers["x-request-id"] not in ("", "bad id\twith spaces")
    assert len(made.headers["x-request-id"]) == 36


def test_json_log_lines_carry_the_request_id():
    record = logging.LogRecord("trailseal.x", logging.WARNING, __file__, 1, "hello %s",
                               ("there",), None)
    token = request_id.set("req-9")
    try:
        line = JsonFormatter().format(record)
    finally:
        request_id.reset(token)
    entry = json.loads(line)
    assert entry["message"] == "hello there" and entry["request_id"] == "req-9"
    assert entry["level"] == "warning" and entry["time"].endswith("Z")


def test_a_stopped_sequencer_is_detected_then_cleared(unsequenced, own_database):
    """PCI DSS 10.7: the logging failing (no sequencer) is an alert on /readyz and in
    /metrics, and it clears once events are logged again."""
    base, settings = unsequenced
    tenant = make_tenant(own_database, "ops")
    with httpx.Client(base_url=base, timeout=30) as http:
        assert http.get("/readyz").json()["status"] == "ready"
        assert http.post("/v1/events", json=an_event(),
                         headers=tenant.auth()).status_code == 202
        deadline = time.monotonic() + 30
        while True:
            ready = http.get("/readyz")
            if ready.json()["alerts"].get("sequencer_stalled"):
                break
            assert time.monotonic() < deadline, ready.json()
        body = ready.json()
        assert ready.status_code == 200 and body["status"] == "degraded"
        assert body["alerts"]["sequencer_stalled"] == 1
        assert body["alerts"]["checkpoint_stale"] == 1
        assert tenant.name not in ready.text
        assert http.get("/readyz?strict=true").status_code == 503
        text = http.get("/metrics").text
        assert _metric(text, 'trailseal_alert{condition="sequencer_stalled"}') == 1
        assert _metric(text, "trailseal_inbox_events") == 1

        asyncio.run(_sequence_once(own_database, settings))
        cleared = http.get("/readyz?strict=true")
        assert cleared.status_code == 200, cleared.json()
        assert cleared.json()["status"] == "ready"
        text = http.get("/metrics").text
        assert _metric(text, 'trailseal_alert{condition="sequencer_stalled"}') == 0


async def _sequence_once(url: str, settings: Settings) -> None:
    pool = create_pool(url, min_size=1, max_size=2)
    await pool.open(wait=True)
    try:
        assert await build_sequencer(pool, settings).run_once() == 1
    finally:
        await pool.close()


def test_metrics_per_tenant_with_the_setting(own_database, tmp_path):
    tenant = make_tenant(own_database, "lbl")
    settings = Settings(database_url=own_database, data_dir=tmp_path, run_sequencer=False,
                        run_archiver=False, metrics_tenant_labels=True)
    for labelled in _serve(settings, own_database):
        text = httpx.get(f"{labelled}/metrics", timeout=30).text
        assert f'trailseal_inbox_events{{tenant="{tenant.name}"}} 0.0' in text
