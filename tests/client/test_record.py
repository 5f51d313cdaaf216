"""record(): what it builds, and that it never raises into the caller."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from trailseal.client import AuditClient, InvalidEvent, request_context
from trailseal.client.core import observers


@pytest.fixture
def captured(tmp_path):
    events: list[dict] = []
    observers.append(events.append)
    client = AuditClient("http://127.0.0.1:9", "tsk_x", tmp_path / "spool", max_delay=60)
    client.sender.stop(0.1)  # nothing leaves the machine in these tests
    yield client, events
    observers.remove(events.append)
    client.close(0.1)


def test_event_shape(captured):
    client, events = captured
    event_id = client.record("job.run.finished", actor=("system", "cron"), target=("job", 0),
                             metadata={"when": datetime(2026, 1, 2, tzinfo=UTC),
                                       "api_key": "sk-123"},
                             changes={"user.password": {"before": "a", "after": "b"}})
    assert uuid.UUID(event_id).version == 7
    [event] = events
    assert event["id"] == event_id and event["target"] == {"type": "job", "id": "0"}
    assert event["metadata"] == {"when": datetime(2026, 1, 2, tzinfo=UTC), "api_key": "[REDACTED]"}
    assert event["changes"] == {"user.password": {"before": "[REDACTED]", "after": "[REDACTED]"}}
    assert event["occurred_at"].endswith("Z") and len(event["occurred_at"]) == 24
    assert event["context"]["source"] == client.source and event["context"]["source_seq"] == 0
    assert client.stats.spooled == 1


def test_context_and_actor_come_from_the_request(captured):
    client, events = captured
    with request_context(ip="203.0.113.9", request_id="req-1",
                         actor={"type": "user", "id": "7"}):
        client.record("user.login.succeeded", target=("user", "7"))
    assert events[0]["actor"] == {"type": "user", "id": "7"}
    assert events[0]["context"]["ip"] == "203.0.113.9"
    assert events[0]["context"]["request_id"] == "req-1"


@pytest.mark.parametrize("kwargs", [
    {"action": "Not An Action", "actor": ("user", "1"), "target": ("x", "1")},
    {"action": "user.deleted", "actor": None, "target": ("x", "1")},
    {"action": "user.deleted", "actor": ("robot", "1"), "target": ("x", "1")},
    {"action": "user.deleted", "actor": ("user", "1"), "target": "x"},
    {"action": "user.deleted", "actor": ("user", "1"), "target": ("x", "1"), "outcome": "maybe"},
    {"action": "user.deleted", "actor": ("user", "1"), "target": ("x", "1"),
     "metadata": {"thing": object()}},
    {"action": "user.deleted", "actor": ("user", "1"), "target": ("x", "1"),
     "occurred_at": datetime(2026, 1, 1)},
])
def test_bad_calls_are_counted_never_raised(captured, kwargs, caplog):
    client, events = captured
    event_id = client.record(**kwargs)
    assert uuid.UUID(event_id) and not events
    assert client.stats.invalid == 1 and client.stats.spooled == 0
    assert "dropped" in caplog.text
    client.strict = True
    with pytest.raises(InvalidEvent):
        client.record(**kwargs)
