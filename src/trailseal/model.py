"""The event schema, version 1: the one source of ``schema/event-v1.schema.json``.

``EventV1`` is what a producer sends. ``stored_document`` turns a valid event into the
document trailseal stores and hashes: the producer's fields, normalised (UTC times at
millisecond precision, absent optional fields left out), plus ``tenant`` and
``received_at``, which only the server sets.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from ipaddress import IPv6Address, ip_address
from socket import AF_INET, inet_ntop, inet_pton
from typing import Annotated, Any, Literal

import msgspec
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    Strict,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)

SCHEMA_ID = "https://trailseal.dev/schema/event-v1.schema.json"
ACTION_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"
META_PREFIX = "audit."
"""Actions in this namespace are trailseal's own meta-audit events; producers may not use it."""
TYPE_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.:-]*$"
SOURCE_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
MAX_SOURCE_SEQ = 2**53 - 1  # the largest integer JSON keeps exactly
MAX_CANONICAL_BYTES = 65_535  # fits one C2SP tile entry (uint16 length prefix)
FUTURE_TOLERANCE = timedelta(days=1)
RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)


def _require_v7(value: uuid.UUID) -> uuid.UUID:
    if value.version != 7 or value.variant != uuid.RFC_4122:
        raise ValueError("must be a UUIDv7 (RFC 9562)")
    return value


def _require_rfc3339(value: Any) -> Any:
    # Lax parsing would also take Unix timestamps, as numbers or as digit strings.
    if not isinstance(value, str) or not RFC3339.match(value):
        raise ValueError("must be an RFC 3339 date-time with offset, e.g. 2026-03-12T09:02:00Z")
    return value


def _to_utc_ms(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("must carry a time zone offset (RFC 3339), e.g. Z")
    try:
        value = value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range once converted to UTC") from None
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _valid_ip(value: str) -> str:
    """The address in its normal text form. A dotted quad that is already normal (most
    are) passes through the C library's parser and printer; the rest through
    ``ipaddress``, whose messages and normal forms are the rule."""
    try:
        if inet_ntop(AF_INET, inet_pton(AF_INET, value)) == value:
            return value
    except (OSError, ValueError):
        pass
    address = ip_address(value)
    if isinstance(address, IPv6Address) and address.scope_id:
        raise ValueError("must not carry an IPv6 zone id (%...)")
    return str(address)


Text = Annotated[str, StringConstraints(min_length=1, max_length=256)]
LongText = Annotated[str, StringConstraints(min_length=1, max_length=2048)]
TypeName = Annotated[str, StringConstraints(max_length=64, pattern=TYPE_PATTERN)]
Timestamp = Annotated[datetime, BeforeValidator(_require_rfc3339), AfterValidator(_to_utc_ms)]
EventId = Annotated[uuid.UUID, AfterValidator(_require_v7)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False, frozen=True)


class Actor(_Strict):
    """Who did it."""

    type: Literal["user", "service", "api_key", "system"]
    id: Text
    name: Text | None = None


class Target(_Strict):
    """What it was done to."""

    type: TypeName
    id: Text
    name: Text | None = None


class Change(_Strict):
    """One field's value before and after; null stands for "absent"."""

    before: JsonValue = None
    after: JsonValue = None


class Context(_Strict):
    """Where it came from."""

    ip: Annotated[str, AfterValidator(_valid_ip)] | None = Field(
        default=None, description="IPv4 or IPv6 address of the client"
    )
    user_agent: LongText | None = None
    session_id: Text | None = None
    request_id: Text | None = None
    correlation_id: Text | None = None
    service: Text | None = None
    region: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    source: Annotated[str, StringConstraints(pattern=SOURCE_PATTERN)] | None = Field(
        default=None,
        description="Stable id of the producer that numbered this event (e.g. its spool's "
        "UUID); set together with source_seq",
    )
    source_seq: Annotated[int, Strict(), Field(ge=0, le=MAX_SOURCE_SEQ)] | None = Field(
        default=None,
        description="This event's number within its source: 0, 1, 2 ... with no gaps when "
        "nothing is lost; set together with source",
    )

    model_config = ConfigDict(
        json_schema_extra={
            "dependentRequired": {"source": ["source_seq"], "source_seq": ["source"]}
        }
    )

    @model_validator(mode="after")
    def _source_and_seq_together(self) -> Context:
        if (self.source is None) != (self.source_seq is None):
            raise ValueError("source and source_seq go together: set both or neither")
        return self


class Outcome(_Strict):
    """With what result."""

    status: Literal["success", "failure"] = "success"
    error_code: Text | None = None
    reason: LongText | None = None


class EventV1(_Strict):
    """An audit event as a producer sends it (schema version 1)."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        title="trailseal event v1",
        json_schema_extra={"$id": SCHEMA_ID},
    )

    id: EventId | None = Field(
        default=None,
        description="UUIDv7 chosen by the producer so retries dedupe; set by the server "
        "when absent",
    )
    occurred_at: Timestamp | None = Field(
        default=None,
        description="When it happened (RFC 3339, stored in UTC at millisecond precision); "
        "the server's receive time when absent",
    )
    actor: Actor
    action: Annotated[str, StringConstraints(max_length=128, pattern=ACTION_PATTERN)] = Field(
        description="Stable machine verb, e.g. user.role.updated"
    )
    target: Target
    changes: dict[Annotated[str, StringConstraints(min_length=1, max_length=256)], Change] = (
        Field(default_factory=dict, description="{field: {before, after}}")
    )
    context: Context = Field(default_factory=Context)
    outcome: Outcome = Field(default_factory=Outcome)
    metadata: dict[str, JsonValue] = Field(default_factory=dict)


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with milliseconds, the one time format of stored events."""
    text = value.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.removesuffix("+00:00") + "Z"


# A batch's events share their receive time: formatted once, not once or twice an event.
_received_text = lru_cache(maxsize=8)(format_time)


_PARTS = {"actor", "target", "changes", "context", "outcome"}


def _set(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def stored_document(
    event: EventV1, *, tenant: str, event_id: uuid.UUID, received_at: datetime
) -> dict[str, Any]:
    """The document stored and hashed for ``event``: every top-level key always present,
    optional sub-fields only when set, times normalised."""
    # One dump of the parts (each comes out as its own model_dump would), not one each.
    parts = event.model_dump(mode="json", include=_PARTS)
    return _document(tenant, event_id, event.occurred_at, received_at, event.action, {
        "actor": _set(parts["actor"]),
        "target": _set(parts["target"]),
        "changes": parts["changes"],
        "context": _set(parts["context"]),
        "outcome": _set(parts["outcome"]),
        "metadata": event.metadata,
    })


def _document(tenant: str, event_id: uuid.UUID, occurred_at: datetime | None,
              received_at: datetime, action: str, parts: dict[str, Any], *,
              id_text: str | None = None, occurred_text: str | None = None) -> dict[str, Any]:
    """The stored document; ``id_text`` and ``occurred_text``, when given, are the id's
    and the time's stored form already (as the producer sent them)."""
    received_text = _received_text(received_at)
    if occurred_text is None:
        occurred_text = received_text if occurred_at is None else format_time(occurred_at)
    return {
        "id": id_text or str(event_id),
        "tenant": tenant,
        "occurred_at": occurred_text,
        "received_at": received_text,
        "action": action,
        **parts,
    }


# -- The quick path ----------------------------------------------------------------------
# Most events are plain: exact JSON types, no float, every field well formed. For those,
# msgspec checks the same constraints as EventV1 several times faster, and the stored
# document is built from what it decoded. It accepts a subset of what EventV1 accepts,
# and gives the same document for it (a property test holds it to that): anything it
# refuses goes through EventV1, whose messages are the API's. The id and occurred_at are
# checked by the very validators of EventV1, and the address by the same function.


def _to_end(pattern: str) -> str:
    # Python's $ also matches before a final newline; EventV1's patterns (run by
    # pydantic's Rust regex) do not.
    return pattern.removesuffix("$") + r"\Z"


_QText = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
_QLongText = Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]


class _QActor(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    type: Literal["user", "service", "api_key", "system"]
    id: _QText
    name: _QText | None = None


class _QTarget(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    type: Annotated[str, msgspec.Meta(max_length=64, pattern=_to_end(TYPE_PATTERN))]
    id: _QText
    name: _QText | None = None


class _QChange(msgspec.Struct, forbid_unknown_fields=True):
    before: Any = None
    after: Any = None


class _QContext(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    ip: str | None = None
    user_agent: _QLongText | None = None
    session_id: _QText | None = None
    request_id: _QText | None = None
    correlation_id: _QText | None = None
    service: _QText | None = None
    region: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    source: Annotated[str, msgspec.Meta(pattern=_to_end(SOURCE_PATTERN))] | None = None
    source_seq: Annotated[int, msgspec.Meta(ge=0, le=MAX_SOURCE_SEQ)] | None = None


class _QOutcome(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    status: Literal["success", "failure"] = "success"
    error_code: _QText | None = None
    reason: _QLongText | None = None


class _QEvent(msgspec.Struct, forbid_unknown_fields=True):
    actor: _QActor
    action: Annotated[str, msgspec.Meta(max_length=128, pattern=_to_end(ACTION_PATTERN))]
    target: _QTarget
    id: str | None = None
    occurred_at: str | None = None
    changes: dict[_QText, _QChange] = {}
    context: _QContext = msgspec.field(default_factory=_QContext)
    outcome: _QOutcome = msgspec.field(default_factory=_QOutcome)
    metadata: dict[str, Any] = {}


_EVENT_ID: TypeAdapter[uuid.UUID | None] = TypeAdapter(EventId | None)
_OCCURRED_AT: TypeAdapter[datetime | None] = TypeAdapter(Timestamp | None)
# The spellings most producers send, which the standard library reads as pydantic does;
# any other goes to the adapters above, EventV1's own validators.
_PLAIN_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\Z")
# A time already in the stored form (format_time's): kept as sent.
_STORED_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")
_PLAIN_TIME = re.compile(
    r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,6})?"
    r"(Z|[+-]([01]\d|2[0-3]):[0-5]\d)\Z")


def _event_id(value: str | None) -> tuple[uuid.UUID | None, str | None]:
    """The id, and ``value`` itself when it is the id's stored form already."""
    if value is not None and _PLAIN_ID.match(value):
        return uuid.UUID(value), value
    return _EVENT_ID.validate_python(value), None


def _occurred_at(value: str | None) -> tuple[datetime | None, str | None]:
    """The time, and ``value`` itself when it is the time's stored form already."""
    if value is not None and _PLAIN_TIME.match(value):
        try:
            at = datetime.fromisoformat(value)
        except ValueError:  # a day or an hour out of range, say: the adapter decides
            pass
        else:
            if _STORED_TIME.match(value):  # in UTC, to the millisecond, already
                return at, value
            return _to_utc_ms(at), None
    return _OCCURRED_AT.validate_python(value), None


@dataclass(frozen=True)
class QuickEvent:
    """A plain event checked by the quick path: what ingest needs of it."""

    id: uuid.UUID | None
    occurred_at: datetime | None
    action: str
    parts: dict[str, Any]  # actor, target, changes, context, outcome, metadata as stored
    id_text: str | None = None  # the id as sent, when that is its stored form
    occurred_text: str | None = None  # likewise the time

    def document(self, *, tenant: str, event_id: uuid.UUID,
                 received_at: datetime) -> dict[str, Any]:
        """What ``stored_document`` gives for the same event."""
        return _document(tenant, event_id, self.occurred_at, received_at, self.action,
                         self.parts, occurred_text=self.occurred_text,
                         id_text=self.id_text if event_id == self.id else None)


def quick_event(raw: dict[str, Any]) -> QuickEvent | None:
    """``raw`` checked by the quick path; None when it is not for the quick path (invalid,
    or valid in a way only EventV1 decides). Precondition: ``raw`` holds exact JSON types
    and no float (``ingest`` checks that first)."""
    try:
        event = msgspec.convert(raw, _QEvent)
        event_id, id_text = _event_id(event.id)
        occurred_at, occurred_text = _occurred_at(event.occurred_at)
        ip = event.context.ip
        if ip is not None:
            ip = _valid_ip(ip)
    except (msgspec.ValidationError, ValidationError, ValueError):
        return None
    if (event.context.source is None) != (event.context.source_seq is None):
        return None
    # One pass in C to the stored parts: the sub-structs leave out their unset (None)
    # fields, as stored_document's dumps do; a change keeps both of its sides.
    parts = msgspec.to_builtins(event)
    del parts["id"], parts["occurred_at"], parts["action"]
    parts["outcome"].setdefault("status", "success")  # left out as its default
    if ip is not None:
        parts["context"]["ip"] = ip
    return QuickEvent(event_id, occurred_at, event.action, parts,
                      id_text=id_text, occurred_text=occurred_text)


def event_json_schema() -> dict[str, Any]:
    """The published JSON Schema of ``EventV1``."""
    schema = EventV1.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
