"""The SDK's spool depth and counters, exported for the embedding application."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from tests.support import an_event
from trailseal.client import AuditClient
from trailseal.client.metrics import register


def _record(client: AuditClient, n: int) -> None:
    for _ in range(n):
        event = an_event()
        client.record(event["action"], actor=event["actor"], target=event["target"])


def _metrics(registry: CollectorRegistry) -> str:
    return generate_latest(registry).decode()


def test_undelivered_events_are_the_spool_depth(tmp_path):
    client = AuditClient("http://127.0.0.1:9", "tsk_x", tmp_path / "spool", max_delay=60)
    registry = CollectorRegistry()
    register(client, registry)
    try:
        _record(client, 5)
        assert client.pending() == 5
        text = _metrics(registry)
        assert "trailseal_sdk_spool_depth 5.0" in text
        assert "trailseal_sdk_recorded_total 5.0" in text
        assert "trailseal_sdk_sent_total 0.0" in text
    finally:
        client.close(timeout=0.1)


def test_delivered_events_leave_it(service_url, tenant, tmp_path):
    client = AuditClient(service_url, tenant.tokens["ingest"], tmp_path / "spool",
                         max_delay=0.01)
    registry = CollectorRegistry()
    register(client, registry)
    try:
        _record(client, 3)
        assert client.flush(timeout=30)
        assert client.pending() == 0
        assert "trailseal_sdk_spool_depth 0.0" in _metrics(registry)
        assert "trailseal_sdk_sent_total 3.0" in _metrics(registry)
    finally:
        client.close()
