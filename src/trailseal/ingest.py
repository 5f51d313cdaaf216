"""Ingest: parse, validate, canonicalise, dedupe and write events to the inbox.

The whole request is checked before anything is written, and written in one statement:
a batch is accepted whole or not at all. Each event's canonical bytes (RFC 8785) and
leaf hash are computed here, in the API process, so the sequencer only orders and chains.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from psycopg import AsyncConnection
from pydantic import ValidationError

from trailseal.errors import BadJSON, FieldProblem, InvalidInput
from trailseal.ids import uuid7
from trailseal.integrity import CanonicalizationError, canonicalize, leaf_hash
from trailseal.integrity.canonical import canonicalize_quickly
from trailseal.model import (
    FUTURE_TOLERANCE,
    MAX_CANONICAL_BYTES,
    META_PREFIX,
    EventV1,
    QuickEvent,
    quick_event,
    stored_document,
)
from trailseal.store import Role, scoped
from trailseal.store.arrays import ByteaArray, TextArray, bytea_array, text_array

_whole: Callable[[bytes, object, int], bool] | None
try:
    from trailseal.integrity._jcs import whole as _whole
except ImportError:  # built without a C compiler: every body takes the strict parser
    _whole = None

MAX_BATCH_EVENTS = 1000
MAX_BODY_BYTES = 5 * 1024 * 1024
MAX_DEPTH = 32
MAX_SAFE_INTEGER = 2**53 - 1


class TooLarge(InvalidInput):
    """A request past the batch limits (answered with 413)."""


@dataclass(frozen=True)
class Prepared:
    """One valid event, ready for the inbox."""

    id: uuid.UUID
    document: dict[str, Any]
    canonical: bytes
    leaf_hash: bytes


@dataclass(frozen=True)
class IngestResult:
    """Ids written now, and ids this tenant already had (in request order)."""

    accepted: list[uuid.UUID]
    duplicates: list[uuid.UUID]


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate object key {key!r}")
            seen.add(key)
    return result


def _loads(raw: bytes) -> Any:
    """Strict JSON. A plain body (no float, no repeated key, not nested past MAX_DEPTH)
    is read by orjson; anything else, and anything orjson refuses, by the standard
    library's parser with strict hooks, whose value and messages are the rule: orjson
    keeps the last of a repeated key, reads integers past 64 bits as floats, and refuses
    what the rule takes (a lone surrogate's escape, 1e400) or names it otherwise."""
    if _whole is not None:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
        else:
            if _whole(raw, body, MAX_DEPTH):
                return body
    try:
        text = raw.decode("utf-8")
        return json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)
    except UnicodeDecodeError as exc:
        raise BadJSON(f"the body is not UTF-8: {exc.reason} at byte {exc.start}") from None
    except RecursionError:
        raise BadJSON("the body nests too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and int() of thousands of digits
        raise BadJSON(f"the body is not valid JSON: {exc}") from None


def parse_body(raw: bytes) -> list[Any]:
    """The events of a request body: one event object, or ``{"events": [...]}``.

    Raises ``BadJSON`` for anything that is not strict JSON (bad UTF-8, syntax, NaN,
    duplicate keys, absurd nesting) and ``TooLarge`` past the batch limit.
    """
    body = _loads(raw)
    if isinstance(body, dict) and "events" in body:
        if set(body) != {"events"} or not isinstance(body["events"], list):
            raise InvalidInput(
                'a batch is {"events": [...]} with no other members',
                [FieldProblem(None, "events", "must be the only member, an array")],
            )
        events: list[Any] = body["events"]
    else:
        events = [body]
    if not events:
        raise InvalidInput(
            "a batch needs at least one event", [FieldProblem(None, "events", "empty")]
        )
    if len(events) > MAX_BATCH_EVENTS:
        raise TooLarge(f"a batch holds at most {MAX_BATCH_EVENTS} events; got {len(events)}")
    return events


def _join(path: str, part: str | int) -> str:
    if isinstance(part, int):
        return f"{path}[{part}]"
    # A key holding a lone surrogate is named as its JSON escape (\ud800): the path
    # itself must be valid UTF-8 to be answered at all.
    part = part.encode("utf-8", "backslashreplace").decode("utf-8")
    return f"{path}.{part}" if path else part


def json_problems(value: Any, path: str = "", depth: int = 0) -> list[tuple[str, str]]:
    """Why ``value`` cannot be stored and hashed exactly, as ``(path, message)`` pairs:
    NUL characters, lone surrogates, integers past ±(2**53-1), non-finite numbers,
    nesting past MAX_DEPTH."""
    if (depth == 0 and _fits_quickly(value)) or _fits(value, depth):
        return []
    found: list[tuple[str, str]] = []
    stack: list[tuple[Any, str, int]] = [(value, path, depth)]
    while stack:
        item, where, level = stack.pop()
        if level > MAX_DEPTH:
            found.append((where, f"nests deeper than {MAX_DEPTH} levels"))
        elif isinstance(item, str):
            found.extend((where, msg) for msg in _string_problems(item))
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if abs(item) > MAX_SAFE_INTEGER:
                found.append((where, "integer outside ±(2**53-1) cannot be kept exactly"))
        elif isinstance(item, float):
            if item != item or item in (float("inf"), float("-inf")):
                found.append((where, "number out of range"))
        elif isinstance(item, dict):
            for key, child in item.items():
                child_path = _join(where, key)
                found.extend((child_path, f"key {msg}") for msg in _string_problems(key))
                stack.append((child, child_path, level + 1))
        elif isinstance(item, list):
            stack.extend((child, _join(where, i), level + 1) for i, child in enumerate(item))
    return found


def _fits_quickly(value: Any) -> bool:
    """True only when ``_fits(value, 0)`` is (False says nothing): the C writer of
    canonical JSON takes it whole — exact JSON types, no float, no lone surrogate,
    integers in range, containers nested at most MAX_DEPTH deep, so every item at a level
    of at most MAX_DEPTH — and no string of it holds NUL. One pass in C instead of a
    call per item."""
    written = canonicalize_quickly(value, MAX_DEPTH)
    return written is not None and b"\\u0000" not in written


def _fits(item: Any, level: int) -> bool:
    """True when ``json_problems`` would find nothing; quick, because it builds no paths
    (almost every event takes only this path)."""
    if level > MAX_DEPTH:
        return False
    kind = type(item)
    if kind is str:
        return "\x00" not in item and (item.isascii() or not _string_problems(item))
    if kind is dict:
        return all(_fits(k, level) and _fits(v, level + 1) for k, v in item.items())
    if kind is list:
        return all(_fits(v, level + 1) for v in item)
    if kind is int:
        return bool(-MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER)
    if kind is float:
        return bool(item - item == 0.0)  # false for NaN and the infinities
    return item is None or kind is bool


def _string_problems(text: str) -> list[str]:
    problems = []
    if "\x00" in text:
        problems.append("contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        problems.append("contains a lone surrogate (invalid Unicode)")
    return problems


def _loc(loc: tuple[str | int, ...]) -> str:
    path = ""
    for part in loc:
        path = _join(path, part)
    return path


def prepare(
    raw_events: list[Any], tenant: str, received_at: datetime, *, meta: bool = False
) -> list[Prepared]:
    """Validate every event and compute its stored form; raise ``InvalidInput`` naming
    every bad field of every bad event, so nothing of the batch is written.

    Actions under ``META_PREFIX`` are refused, so no producer can forge a meta-audit
    event or hide one of its own among them; only trailseal's meta-audit passes
    ``meta=True``, and it never takes events from a request body.
    """
    problems: list[FieldProblem] = []
    prepared: list[Prepared] = []
    for index, raw in enumerate(raw_events):
        if not isinstance(raw, dict):
            problems.append(FieldProblem(index, "", "an event must be a JSON object"))
            continue
        # Plain events take the quick path (model.quick_event); the rest, and every
        # invalid one, EventV1, whose messages are the answer.
        fits = _fits_quickly(raw)
        event: EventV1 | QuickEvent | None = quick_event(raw) if fits else None
        if event is None:
            unfit = [] if fits else json_problems(raw)
            if unfit:
                problems.extend(FieldProblem(index, where, message) for where, message in unfit)
                continue
            try:
                event = EventV1.model_validate(raw)
            except ValidationError as exc:
                problems.extend(
                    FieldProblem(index, _loc(err["loc"]), err["msg"]) for err in exc.errors()
                )
                continue
        if event.action.startswith(META_PREFIX) and not meta:
            problems.append(
                FieldProblem(index, "action", f"the {META_PREFIX}* namespace is reserved for "
                             "trailseal's meta-audit of reads")
            )
            continue
        if event.occurred_at and event.occurred_at > received_at + FUTURE_TOLERANCE:
            problems.append(
                FieldProblem(index, "occurred_at", "is more than a day in the future")
            )
            continue
        event_id = event.id or uuid7()
        if isinstance(event, QuickEvent):
            document = event.document(tenant=tenant, event_id=event_id, received_at=received_at)
        else:
            document = stored_document(event, tenant=tenant, event_id=event_id,
                                       received_at=received_at)
        try:
            canonical = canonicalize(document)
        except CanonicalizationError as exc:
            problems.append(FieldProblem(index, _loc(exc.path), str(exc)))
            continue
        if len(canonical) > MAX_CANONICAL_BYTES:
            problems.append(
                FieldProblem(
                    index,
                    "",
                    f"the event is {len(canonical)} bytes in canonical form; "
                    f"the limit is {MAX_CANONICAL_BYTES}",
                )
            )
            continue
        prepared.append(Prepared(event_id, document, canonical, leaf_hash(canonical)))
    if problems:
        bad = len({p.index for p in problems})
        raise InvalidInput(f"{bad} of {len(raw_events)} event(s) are invalid", problems)
    return prepared


# Each column arrives as one array (built by trailseal.store.arrays): the typed ones as
# text, parsed here by PostgreSQL's own input functions.
_INSERT = """
WITH input AS (
    SELECT * FROM unnest(
        %(id)b::uuid[], %(occurred_at)b::timestamptz[], %(actor_type)b, %(actor_id)b,
        %(actor_name)b, %(action)b, %(target_type)b, %(target_id)b, %(target_name)b,
        %(outcome)b, %(ip)b::inet[], %(request_id)b, %(correlation_id)b, %(service)b,
        %(source)b, %(source_seq)b::bigint[], %(canonical)b, %(leaf_hash)b
    ) WITH ORDINALITY AS t(id, occurred_at, actor_type, actor_id, actor_name, action,
                           target_type, target_id, target_name, outcome, ip, request_id,
                           correlation_id, service, source, source_seq, canonical,
                           leaf_hash, ord)
), fresh AS (
    INSERT INTO trailseal.event_ids (tenant, id, received_at)
    SELECT %(tenant)s, id, %(received_at)s FROM input
    ON CONFLICT DO NOTHING
    RETURNING id
), queued AS (
    INSERT INTO trailseal.inbox (
        tenant, id, occurred_at, received_at, actor_type, actor_id, actor_name, action,
        target_type, target_id, target_name, outcome, ip, request_id, correlation_id,
        service, source, source_seq, canonical, leaf_hash)
    SELECT %(tenant)s, i.id, i.occurred_at, %(received_at)s, i.actor_type, i.actor_id,
           i.actor_name, i.action, i.target_type, i.target_id, i.target_name, i.outcome, i.ip,
           i.request_id, i.correlation_id, i.service, i.source, i.source_seq, i.canonical,
           i.leaf_hash
    FROM input i JOIN fresh f USING (id)
    ORDER BY i.ord
)
SELECT id FROM fresh
"""


def _columns(events: list[Prepared]) -> dict[str, TextArray | ByteaArray]:
    """The inbox write's parameters: each column of ``events`` as one array."""
    docs = [event.document for event in events]
    actors = [doc["actor"] for doc in docs]
    targets = [doc["target"] for doc in docs]
    contexts = [doc["context"] for doc in docs]
    sequence = [c.get("source_seq") for c in contexts]
    return {
        "id": text_array([doc["id"] for doc in docs]),
        "occurred_at": text_array([doc["occurred_at"] for doc in docs]),
        "actor_type": text_array([a["type"] for a in actors]),
        "actor_id": text_array([a["id"] for a in actors]),
        "actor_name": text_array([a.get("name") for a in actors]),
        "action": text_array([doc["action"] for doc in docs]),
        "target_type": text_array([t["type"] for t in targets]),
        "target_id": text_array([t["id"] for t in targets]),
        "target_name": text_array([t.get("name") for t in targets]),
        "outcome": text_array([doc["outcome"]["status"] for doc in docs]),
        "ip": text_array([c.get("ip") for c in contexts]),
        "request_id": text_array([c.get("request_id") for c in contexts]),
        "correlation_id": text_array([c.get("correlation_id") for c in contexts]),
        "service": text_array([c.get("service") for c in contexts]),
        "source": text_array([c.get("source") for c in contexts]),
        "source_seq": text_array([None if n is None else str(n) for n in sequence]),
        "canonical": bytea_array([event.canonical for event in events]),
        "leaf_hash": bytea_array([event.leaf_hash for event in events]),
    }


async def write_inbox(
    conn: AsyncConnection, tenant: str, events: list[Prepared], received_at: datetime
) -> IngestResult:
    """Write ``events`` to the inbox in one transaction. An id this tenant has sent
    before (or earlier in the same batch) is a duplicate and writes nothing."""
    unique: dict[uuid.UUID, Prepared] = {}
    for event in events:
        unique.setdefault(event.id, event)
    async with scoped(conn, Role.INGEST, tenant):
        cur = await conn.execute(
            _INSERT,
            {"tenant": tenant, "received_at": received_at, **_columns(list(unique.values()))},
        )
        written = {row[0] for row in await cur.fetchall()}
    accepted = [e.id for e in unique.values() if e.id in written]
    seen: set[uuid.UUID] = set()
    duplicates = []
    for event in events:
        if event.id not in written or event.id in seen:
            duplicates.append(event.id)
        seen.add(event.id)
    return IngestResult(accepted, duplicates)


def now() -> datetime:
    """The server's receive time, at the millisecond precision stored."""
    value = datetime.now(UTC)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)
