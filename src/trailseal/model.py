"""The event schema, version 1: the one source of ``schema/event-v1.schema.json``.

``EventV1`` is what a producer sends. ``stored_document`` turns a valid event into the
document trailseal stores and hashes: the producer's fields, normalised (UTC times at
millisecond precision, absent optional fields left out), plus ``tenant`` and
``received_at``, which only the server sets.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from ipaddress import IPv6Address, ip_address
from socket import AF_INET, inet_ntop, inet_pton
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    Strict,
    StringConstraints,
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

    id: Annotated[uuid.UUID, AfterValidator(_require_v7)] | None = Field(
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


_PARTS = {"actor", "target", "changes", "context", "outcome"}


def _set(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def stored_document(
    event: EventV1, *, tenant: str, event_id: uuid.UUID, received_at: datetime
) -> dict[str, Any]:
    """The document stored and hashed for ``event``: every top-level key always present,
    optional sub-fields only when set, times normalised."""
    occurred_at = event.occurred_at or _to_utc_ms(received_at)
    # One dump of the parts (each comes out as its own model_dump would), not one each.
    parts = event.model_dump(mode="json", include=_PARTS)
    return {
        "id": str(event_id),
        "tenant": tenant,
        "occurred_at": format_time(occurred_at),
        "received_at": format_time(received_at),
        "actor": _set(parts["actor"]),
        "action": event.action,
        "target": _set(parts["target"]),
        "changes": parts["changes"],
        "context": _set(parts["context"]),
        "outcome": _set(parts["outcome"]),
        "metadata": event.metadata,
    }


def event_json_schema() -> dict[str, Any]:
    """The published JSON Schema of ``EventV1``."""
    schema = EventV1.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
