"""The event model: UUIDv7, time normalisation, the stored document."""

import ipaddress
import uuid
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from trailseal.ids import uuid7
from trailseal.model import EventV1, _valid_ip, format_time, stored_document


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


@given(st.integers(0, 2**32 - 1))
def test_every_ipv4_address_in_normal_form_is_kept_as_written(number):
    text = str(ipaddress.IPv4Address(number))
    assert _valid_ip(text) == text


def _by_ipaddress(text: str) -> str | None:
    """The model's rule without its quick path; None for a refused address."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        return None
    return str(address)


@given(st.one_of(
    st.text(alphabet="0123456789.:abcdefx% \x00", max_size=24),
    st.builds(lambda n, pad: ".".join(f"{int(p):0{pad}d}" for p in
                                      str(ipaddress.IPv4Address(n)).split(".")),
              st.integers(0, 2**32 - 1), st.integers(1, 3)),
))
def test_the_quick_path_for_addresses_agrees_with_ipaddress(text):
    try:
        found = _valid_ip(text)
    except ValueError:
        found = None
    assert found == _by_ipaddress(text)
