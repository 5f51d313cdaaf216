"""``AuditClient``: record an event in microseconds, deliver it later, never lose it.

``record()`` builds the event on the caller's thread (id, time, context, changes,
redaction), appends it to the durable spool and returns its id; a background thread ships
the spool. Nothing in ``record()`` touches the network, and nothing it does raises into
the caller: failures are logged and counted in ``stats``. If the spool cannot be written
(disk full, read-only), events are kept in memory for the sender instead, bounded, and
every such event is counted.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import enum
import logging
import os
import re
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import orjson

from trailseal.client import context
from trailseal.client.diff import DEFAULT_REDACT, compute_changes, redact
from trailseal.client.sender import Sender, Stats
from trailseal.client.spool import SpoolWriter, claim_slot, read_ack, segments
from trailseal.client.spool import pending as spool_pending
from trailseal.ids import uuid7_text

log = logging.getLogger("trailseal.client")

ACTION = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
ACTOR_TYPES = frozenset({"user", "service", "api_key", "system"})
MEMORY_LIMIT = 10_000

Ref = Mapping[str, Any] | tuple[str, ...] | list[str]

# Observers of every recorded event (the pytest plugin registers one).
observers: list[Callable[[dict[str, Any]], None]] = []


class InvalidEvent(ValueError):
    """An event ``record()`` cannot send; raised only by strict clients."""


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _ref(value: Ref | None, what: str) -> dict[str, str]:
    if type(value) is tuple and 2 <= len(value) <= 3 and type(value[0]) is str:  # usual
        ref = {"type": value[0], "id": str(value[1])}
        if len(value) == 3 and value[2] is not None:
            ref["name"] = str(value[2])
        if ref["type"] and ref["id"] and value[1] is not None:
            return ref
        raise InvalidEvent(f"{what} needs a type and an id")
    if isinstance(value, Mapping):
        ref = {k: str(v) for k, v in value.items() if v is not None}
    elif isinstance(value, tuple | list) and 2 <= len(value) <= 3:
        ref = dict(zip(("type", "id", "name"), (str(v) for v in value), strict=False))
    else:
        raise InvalidEvent(f"{what} must be a mapping with type and id, or (type, id[, name])")
    if not ref.get("type") or not ref.get("id"):
        raise InvalidEvent(f"{what} needs a type and an id")
    return ref


_second: list[Any] = [None, ""]  # the last second formatted, and its text


def _time(occurred_at: datetime | None, now_ms: int) -> str:
    if occurred_at is None:
        seconds, ms = divmod(now_ms, 1000)
        cached = _second
        if cached[0] != seconds:
            cached[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
            cached[0] = seconds
        return f"{cached[1]}.{ms:03d}Z"
    if occurred_at.tzinfo is None:
        raise InvalidEvent("occurred_at must be timezone-aware")
    text = occurred_at.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.removesuffix("+00:00") + "Z"


def encode_event(event: Mapping[str, Any]) -> bytes:
    """The JSON of an event built by ``build_event``; raises TypeError for a value with no
    JSON form (orjson refuses lone surrogates too)."""
    # orjson: a few times faster than json here.
    return orjson.dumps(event, default=_json_default)


def build_event(
    event_id: str,
    now_ms: int,
    action: str,
    actor: Ref | None,
    target: Ref | None,
    before: object,
    after: object,
    changes: Mapping[str, Any] | None,
    outcome: str | Mapping[str, Any],
    metadata: Mapping[str, Any] | None,
    occurred_at: datetime | None,
    *,
    redact_fields: frozenset[str],
    defaults: Mapping[str, str],
) -> dict[str, Any]:
    """The event ``record()`` sends, built from its arguments and the request context
    (which supplies the actor when none is given, and ``context``); ``redact_fields`` are
    masked in changes and metadata, ``defaults`` (service, region) start the context.
    Raises ``InvalidEvent`` (or whatever reading an argument raises) for a bad one."""
    if not isinstance(action, str) or not ACTION.match(action):
        raise InvalidEvent(f"action {action!r} is not like user.role.updated")
    request = context.current()
    if actor is None and request is not None and request.actor:
        actor = request.actor
    actor_ref = _ref(actor, "actor")
    if actor_ref["type"] not in ACTOR_TYPES:
        raise InvalidEvent(f"actor type must be one of {sorted(ACTOR_TYPES)}")
    event: dict[str, Any] = {
        "id": event_id,
        "occurred_at": _time(occurred_at, now_ms),
        "actor": actor_ref,
        "action": action,
        "target": _ref(target, "target"),
    }
    if before is not None or after is not None:
        event["changes"] = compute_changes(before, after, redact=redact_fields)
    elif changes:
        event["changes"] = redact(changes, redact_fields)
    ctx = dict(defaults)
    if request is not None:
        ctx.update(request.as_event_context())
    event["context"] = ctx
    if isinstance(outcome, str):
        event["outcome"] = {"status": outcome}
    else:
        event["outcome"] = dict(outcome)
    if event["outcome"].get("status") not in ("success", "failure"):
        raise InvalidEvent("outcome must be success or failure")
    if metadata:
        event["metadata"] = redact(metadata, redact_fields)
    return event


class AuditClient:
    """Records audit events durably and delivers them to a trailseal service.

    ``spool_path`` is a directory; several processes may share one (each writes its own
    slot, and ships what dead ones left). ``strict=True`` raises ``InvalidEvent`` for
    malformed arguments instead of logging them (for tests).
    """

    def __init__(
        self,
        url: str,
        token: str,
        spool_path: str | os.PathLike[str] = ".trailseal-spool",
        *,
        redact_fields: Iterable[str] = DEFAULT_REDACT,
        service: str | None = None,
        region: str | None = None,
        max_batch: int = 500,
        max_delay: float = 0.2,
        timeout: float = 10.0,
        strict: bool = False,
        http: httpx.Client | None = None,
    ) -> None:
        self.stats = Stats()
        self.strict = strict
        self.redact_fields = frozenset(redact_fields)
        self.defaults = {k: v for k, v in (("service", service), ("region", region)) if v}
        self.spool = Path(spool_path)
        self.memory: deque[bytes] = deque()
        self.writer: SpoolWriter | None = None
        self.memory_seq = 0
        try:
            slot = claim_slot(self.spool)
            if slot is not None:
                self.writer = SpoolWriter(slot)
        except OSError as exc:
            self._spool_failed(exc)
        self.source = (
            self.writer.slot.source if self.writer else f"memory.{uuid.uuid4().hex[:16]}"
        )
        self.sender = Sender(
            url=url, token=token, spool=self.spool, writer=self.writer, memory=self.memory,
            stats=self.stats, max_batch=max_batch, max_delay=max_delay, timeout=timeout,
            http=http,
        )
        self.sender.start()
        self._closed = False

    def pending(self) -> int:
        """Events this client recorded and has not delivered yet: its spool slot's
        undelivered records plus those held in memory (the spool depth of ``/metrics``)."""
        count = len(self.memory)
        writer = self.writer
        if writer is not None:
            with writer.lock:
                active, written = writer.path, writer.size
            with contextlib.suppress(OSError):
                count += sum(len(records) for _, records, _ in
                             spool_pending(writer.slot.folder, active, written))
        return count

    # -- recording ---------------------------------------------------------------------

    def record(
        self,
        action: str,
        actor: Ref | None = None,
        target: Ref | None = None,
        before: object = None,
        after: object = None,
        changes: Mapping[str, Any] | None = None,
        outcome: str | Mapping[str, Any] = "success",
        metadata: Mapping[str, Any] | None = None,
        occurred_at: datetime | None = None,
    ) -> str:
        """Record one event; returns its id (a UUIDv7) once it is spooled. Never raises
        (unless the client is strict); never waits on the network."""
        now_ms = time.time_ns() // 1_000_000
        event_id = uuid7_text(now_ms)
        try:
            event = build_event(event_id, now_ms, action, actor, target, before, after,
                                changes, outcome, metadata, occurred_at,
                                redact_fields=self.redact_fields, defaults=self.defaults)
        except Exception as exc:  # bad arguments, or an ORM object that cannot be read
            return self._invalid(event_id, action, exc)
        try:
            self._spool(event)
        except TypeError as exc:  # a value with no JSON form, found while encoding
            return self._invalid(event_id, action, exc)
        except Exception as exc:  # never into the caller's business path
            self.stats.dropped += 1
            log.exception("trailseal: audit event %s could not be kept: %s", event_id, exc)
            return event_id
        for observe in observers:
            try:
                observe(event)
            except Exception:
                log.exception("trailseal: an observer of recorded events failed")
        self.stats.recorded += 1
        return event_id

    def _invalid(self, event_id: str, action: str, exc: Exception) -> str:
        self.stats.invalid += 1
        log.error("trailseal: audit event %s (%s) dropped: %s", event_id, action, exc)
        if self.strict:
            raise InvalidEvent(str(exc)) from None
        return event_id

    def _spool(self, event: dict[str, Any]) -> None:
        writer = self.writer
        if writer is not None:
            with writer.lock:
                event["context"]["source"] = writer.slot.source
                event["context"]["source_seq"] = writer.next_seq
                payload = self._encode(event)
                try:
                    writer.append(payload)
                except (OSError, ValueError) as exc:
                    self._spool_failed(exc)
                else:
                    writer.next_seq += 1
                    self.stats.spooled += 1
                    if writer.next_seq % self.sender.max_batch == 0:
                        self.sender.wake.set()
                    return
        # No spool: keep it in memory for the sender (not durable, but not dropped).
        event["context"]["source"] = self.source
        event["context"]["source_seq"] = self.memory_seq
        self.memory_seq += 1
        if len(self.memory) >= MEMORY_LIMIT:
            self.stats.dropped += 1
            log.error("trailseal: spool unavailable and memory buffer full; event %s lost",
                      event["id"])
            return
        self.memory.append(self._encode(event))
        self.stats.in_memory += 1

    _encode = staticmethod(encode_event)

    def _spool_failed(self, exc: Exception) -> None:
        self.stats.spool_errors += 1
        self.stats.last_error = f"spool: {exc}"
        log.error("trailseal: cannot write the spool at %s (%s); keeping events in memory",
                  self.spool, exc)

    # -- delivery ----------------------------------------------------------------------

    def _delivered(self) -> Callable[[], bool]:
        """A test for "everything recorded so far has been delivered"."""
        writer, memory_mark = self.writer, self.stats.in_memory
        target = None
        if writer is not None:
            with writer.lock:
                target = (writer.path, writer.size)

        def done() -> bool:
            if self.stats.in_memory - len(self.memory) < memory_mark:
                return False
            if target is None:
                return True
            path, size = target
            older = [s for s in segments(path.parent) if s.stem < path.stem]
            if older:
                return False
            # A delivered segment that is no longer active has been deleted.
            return size == 0 or not path.exists() or read_ack(path) >= size

        return done

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every event recorded so far is delivered; False on timeout."""
        return self.sender.wait_for(self._delivered(), timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Flush (up to ``timeout``), then stop the sender; what is left stays spooled."""
        if self._closed:
            return
        self._closed = True
        self.flush(timeout)
        self.sender.stop(timeout)
        if self.writer is not None:
            self.writer.slot.save(max(self.writer.slot.saved_next_seq(), self.writer.next_seq))
            self.writer.close()
            self.writer.slot.release()

    def __enter__(self) -> AuditClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncAuditClient:
    """The same client for asyncio code: ``record()`` is the same non-blocking call;
    ``flush()`` and ``close()`` wait in a worker thread instead of the event loop."""

    def __init__(
        self,
        url: str,
        token: str,
        spool_path: str | os.PathLike[str] = ".trailseal-spool",
        **options: Any,
    ) -> None:
        self.client = AuditClient(url, token, spool_path, **options)
        self.record = self.client.record
        self.stats = self.client.stats
        self.pending = self.client.pending

    async def flush(self, timeout: float = 10.0) -> bool:
        return await asyncio.to_thread(self.client.flush, timeout)

    async def close(self, timeout: float = 10.0) -> None:
        await asyncio.to_thread(self.client.close, timeout)

    async def __aenter__(self) -> AsyncAuditClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
