"""The event model: UUIDv7, time normalisation, the stored document."""

import uuid
from datetime import UTC, datetime, timedelta, timezone

from trailseal.ids import uuid7
from trailseal.model import EventV1, format_time, stored_document


def test_uuid7_layout():
    value = uuid7(unix_ms=0x0123_4567_89AB)
    assert value.version == 7 and value.variant == uuid.RFC_4122
    assert value.int >> 80 == 0x0123_4567_89AB
    assert len({uuid7() for _ in range(1000)}) == 1000


def test_times_are_utc_milliseconds_with_four_digit_years():
    plus_two = timezone(timedelta(hours=2))
    assert format_time(datetime(2026, 3, 12, 9, 2, 0, 999_999, tzinfo=plus_two)) == (
        "2026-03-12T07:02:00.999Z"
    )
    assert format_time(datetime(1, 1, 1, tzinfo=UTC)) == "0001-01-01T00:00:00.000Z"


def test_stored_document_has_every_top_level_field_and_only_set_subfields():
    event = EventV1.model_validate({
        "actor": {"type": "user", "id": "u1"},
        "action": "user.login.succeeded",
        "target": {"type": "user", "id": "u1"},
        "occurred_at": "2026-03-12T11:02:00.123456+02:00",
        "changes": {"role": {"before": None, "after": "admin"}},
    })
    received = datetime(2026, 3, 12, 9, 3, tzinfo=UTC)
    event_id = uuid7()
    doc = stored_document(event, tenant="acme", event_id=event_id, received_at=received)
    assert doc == {
        "id": str(event_id),
        "tenant": "acme",
        "occurred_at": "2026-03-12T09:02:00.123Z",
        "received_at": "2026-03-12T09:03:00.000Z",
        "actor": {"type": "user", "id": "u1"},
        "action": "user.login.succeeded",
        "target": {"type": "user", "id": "u1"},
        "changes": {"role": {"before": None, "after": "admin"}},
        "context": {},
        "outcome": {"status": "success"},
        "metadata": {},
    }
