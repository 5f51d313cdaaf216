"""The event model: UUIDv7, time normalisation, the stored document."""

import ipaddress
import uuid
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from trailseal import ingest
from trailseal.ids import uuid7, uuid7_text
from trailseal.model import EventV1, _valid_ip, format_time, quick_event, stored_document


def test_uuid7_layout():
    value = uuid7(unix_ms=0x0123_4567_89AB)
    assert value.version == 7 and value.variant == uuid.RFC_4122
    assert value.int >> 80 == 0x0123_4567_89AB
    assert len({uuid7() for _ in range(1000)}) == 1000


def test_uuid7_text_is_the_uuid_in_its_text_form():
    texts = [uuid7_text(0x0123_4567_89AB) for _ in range(1000)]
    assert len(set(texts)) == 1000
    for text in texts:
        value = uuid.UUID(text)
        assert str(value) == text
        assert value.version == 7 and value.variant == uuid.RFC_4122
        assert value.int >> 80 == 0x0123_4567_89AB
    assert uuid.UUID(uuid7_text()).version == 7


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


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                 max_size=3),
    max_leaves=8,
)
_text = st.text(min_size=1, max_size=12)


def _optional(**fields):
    """Dicts holding any subset of ``fields`` (each a strategy), nulls included."""
    return st.fixed_dictionaries({}, optional={k: st.none() | v for k, v in fields.items()})


_events = st.fixed_dictionaries(
    {
        "actor": st.fixed_dictionaries(
            {"type": st.sampled_from(["user", "service", "api_key", "system"]), "id": _text},
            optional={"name": st.none() | _text}),
        "action": st.sampled_from(["user.login", "setting.updated", "data.export.created"]),
        "target": st.fixed_dictionaries(
            {"type": st.from_regex(r"[a-z_][a-z0-9_.:-]{0,10}", fullmatch=True), "id": _text},
            optional={"name": st.none() | _text}),
    },
    optional={
        "changes": st.dictionaries(_text, _optional(before=_json, after=_json), max_size=3),
        "context": _optional(
            ip=st.sampled_from(["192.0.2.1", "2001:db8::1", "::ffff:1.2.3.4", "010.1.1.1"]),
            user_agent=_text, session_id=_text, request_id=_text, correlation_id=_text,
            service=_text, region=_text),
        "outcome": _optional(status=st.sampled_from(["success", "failure"]),
                             error_code=_text, reason=_text),
        "metadata": st.dictionaries(st.text(max_size=5), _json, max_size=3),
        "occurred_at": st.sampled_from(["2026-03-12T11:02:00.123456+02:00",
                                        "2026-03-12T09:02:00Z"]),
    },
)


def _stored_part_by_part(event, *, tenant, event_id, received_at):
    """stored_document as it was first written: one dump per part."""
    def present(model):
        return {k: v for k, v in model.model_dump(mode="json").items() if v is not None}

    occurred_at = event.occurred_at or received_at
    return {
        "id": str(event_id), "tenant": tenant, "occurred_at": format_time(occurred_at),
        "received_at": format_time(received_at), "actor": present(event.actor),
        "action": event.action, "target": present(event.target),
        "changes": {f: c.model_dump(mode="json") for f, c in event.changes.items()},
        "context": present(event.context), "outcome": present(event.outcome),
        "metadata": event.metadata,
    }


@given(_events)
def test_the_stored_document_is_the_same_as_dumped_part_by_part(raw):
    try:
        event = EventV1.model_validate(raw)
    except ValidationError:  # "010.1.1.1", for one, is no address
        return
    received, event_id = datetime(2026, 3, 12, 9, 3, tzinfo=UTC), uuid7()
    assert stored_document(event, tenant="t", event_id=event_id, received_at=received) == (
        _stored_part_by_part(event, tenant="t", event_id=event_id, received_at=received))


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


# -- the quick path ------------------------------------------------------------------------
# Values near every edge EventV1 draws: trailing newlines (Python's $ takes them, the
# model's patterns do not), lengths at and past the limits, other spellings of ids,
# times and addresses, wrong types.
_edgy_text = st.sampled_from(["a", "", " ", "x\n", "é" * 256, "é" * 257, "a" * 2048,
                              "a" * 2049, "\t"]) | st.integers(0, 3) | st.none() | st.text(
    max_size=6)
_quick_events = st.fixed_dictionaries(
    {
        "actor": st.fixed_dictionaries(
            {"type": st.sampled_from(["user", "service", "api_key", "system", "User", 1]),
             "id": _edgy_text},
            optional={"name": _edgy_text, "email": _text}),
        "action": st.sampled_from(["user.login", "user.login\n", "User.login", "user",
                                   "a." + "b" * 126, "a." + "b" * 127, "audit.x.y", 7]),
        "target": st.fixed_dictionaries(
            {"type": st.sampled_from(["doc", "a b", "x\n", ":x", "_x", "t" * 65, ""]),
             "id": _edgy_text},
            optional={"name": _edgy_text}),
    },
    optional={
        "id": st.sampled_from([
            None, str(uuid7()), str(uuid7()).upper(), str(uuid7()).replace("-", ""),
            "{" + str(uuid7()) + "}", str(uuid.uuid4()), str(uuid7()) + "\n", "nope", 5]),
        "occurred_at": st.sampled_from([
            None, "2026-03-12T09:02:00Z", "2026-03-12t09:02:00z", "2026-03-12T09:02:00.123Z",
            "2026-03-12T09:02:00.1234Z", "2026-03-12T09:02:00.120+00:00",
            "2026-03-12T09:02:00.123456789+02:00", "2026-03-12 09:02:00Z",
            "2026-03-12T09:02:00Z\n", "2026-13-12T09:02:00Z", "2026-03-12T09:02:00",
            "1700000000", 1700000000, "0001-01-01T00:00:00+01:00"]),
        "changes": st.dictionaries(_edgy_text.filter(lambda k: isinstance(k, str)),
                                   _optional(before=_json, after=_json) | st.just(1),
                                   max_size=2),
        "context": _optional(
            ip=st.sampled_from(["192.0.2.1", "010.1.1.1", "::1", "::ffff:1.2.3.4",
                                "fe80::1%eth0", "192.0.2.1\n", "2001:DB8::1", 3]),
            user_agent=_edgy_text, session_id=_edgy_text, request_id=_edgy_text,
            region=st.sampled_from(["eu", "", "r" * 64, "r" * 65]),
            source=st.sampled_from(["app-1", "app 1", "app\n", "s" * 128, "s" * 129]),
            source_seq=st.sampled_from([0, 1, -1, 2**53 - 1, 2**53, True]),
            extra=_text),
        "outcome": _optional(status=st.sampled_from(["success", "failure", "Success"]),
                             error_code=_edgy_text, reason=_edgy_text),
        "metadata": st.dictionaries(st.text(max_size=5), _json, max_size=3) | st.just([]),
        "unknown": _text,
    },
)


@given(st.one_of(_events, _quick_events))
def test_what_the_quick_path_takes_the_model_takes_with_the_same_document(raw):
    if not ingest._fits_quickly(raw):  # the quick path's precondition
        return
    quick = quick_event(raw)
    if quick is None:
        return  # left to EventV1
    event = EventV1.model_validate(raw)  # raises if the quick path took too much
    assert (quick.id, quick.occurred_at, quick.action) == (
        event.id, event.occurred_at, event.action)
    received = datetime(2026, 3, 12, 9, 3, tzinfo=UTC)
    # A fresh id (the event had none, or the batch named it twice), and its own id.
    for event_id in {uuid7(), quick.id or uuid7()}:
        assert quick.document(tenant="t", event_id=event_id, received_at=received) == (
            stored_document(event, tenant="t", event_id=event_id, received_at=received))


def test_plain_events_take_the_quick_path():
    raw = {"id": str(uuid7()), "occurred_at": "2026-03-12T09:02:00.123Z",
           "actor": {"type": "user", "id": "u_1", "name": "Ada"}, "action": "user.login",
           "target": {"type": "user", "id": "u_1"},
           "context": {"ip": "192.0.2.1", "source": "app-1", "source_seq": 4},
           "changes": {"role": {"before": None, "after": "admin"}},
           "metadata": {"n": 1, "tags": ["a", {"b": True}]}}
    assert ingest._fits_quickly(raw)
    quick = quick_event(raw)
    assert quick is not None
    received = datetime(2026, 3, 12, 9, 3, tzinfo=UTC)
    event = EventV1.model_validate(raw)
    assert quick.document(tenant="t", event_id=event.id, received_at=received) == (
        stored_document(event, tenant="t", event_id=event.id, received_at=received))
    assert quick_event({**raw, "action": "user.login\n"}) is None
    assert quick_event({**raw, "context": {"source": "app-1"}}) is None


_plain_times = st.builds(
    lambda y, mo, d, h, mi, se, frac, off: f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{se:02d}"
    f"{frac}{off}",
    st.integers(0, 9999), st.integers(0, 13), st.integers(0, 32), st.integers(0, 25),
    st.integers(0, 60), st.integers(0, 61),
    st.sampled_from(["", ".1", ".12", ".123", ".1234", ".12345", ".123456", ".999999"]),
    st.sampled_from(["Z", "+00:00", "-00:00", "+02:00", "-05:30", "+23:59", "+24:00",
                     "-12:61"]),
)


def _or_none(check, value):
    """``check(value)``, or None where it raises ValidationError."""
    try:
        return check(value)
    except ValidationError:
        return None


@given(_plain_times)
def test_the_quick_reading_of_times_and_ids_is_the_models(text):
    from trailseal import model

    expected = _or_none(model._OCCURRED_AT.validate_python, text)
    found, stored = _or_none(model._occurred_at, text) or (None, None)
    assert found == expected and (found is None or found.utcoffset() == expected.utcoffset())
    # The text is kept as the stored form only when it is exactly that form.
    assert stored is None or stored == text == format_time(expected)
    value = uuid7()
    for spelling in (str(value), str(value).upper(), str(uuid.uuid4())):
        found_id, stored_id = _or_none(model._event_id, spelling) or (None, None)
        assert found_id == _or_none(model._EVENT_ID.validate_python, spelling)
        assert stored_id is None or stored_id == spelling == str(found_id)
    assert model._event_id(str(value)) == (value, str(value))
