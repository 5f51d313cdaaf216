"""Meta-audit of reads: every read of a tenant's log is itself an event in that log.

A read handler (query, timeline, state, export, proof, tile, stream ...) calls
:func:`note_read` once, with the meta action and the filters it was asked for, and keeps
the returned note's ``count`` up to date as it produces results (a streamed response
keeps counting while it streams). :class:`MetaAuditMiddleware` records the note after
the handler, and only for a 2xx answer:

- per request: just before the last body message is passed to the server, so a client
  holding a complete answer knows its read is in the inbox. A client that goes away
  mid-stream still gets a record, with ``completed: false`` and the count so far. If the
  write fails, the answer is still delivered (its status left long ago, and refusing
  reads whenever the inbox cannot be written would make the audit log unreadable in the
  incident it is needed for); the failure is logged and counted in ``failures``.
- in aggregate (checkpoint, key and tile reads by log clients, which poll): one event
  per (tenant, key, minute) with counts per kind, written once the minute is over and
  at shutdown. Counts not yet written when the process dies are lost: they are a log of
  reads already answered, not writes anyone was promised.

Meta events go through ingest's normal path (validated, canonicalised, deduped, written
to the inbox, then sequenced) but are written from here, never through the HTTP API, so
recording one is not itself a read and never records another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from ipaddress import ip_address
from typing import Any

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from psycopg_pool import AsyncConnectionPool
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trailseal import ingest
from trailseal.errors import InvalidInput
from trailseal.ids import uuid7
from trailseal.model import META_PREFIX, Target, format_time
from trailseal.tenants import Principal

log = logging.getLogger(__name__)

EVENT_READ = "audit.events.read"
RECEIPT_READ = "audit.events.receipt_read"
PROOF_READ = "audit.log.proof_read"
TILES_READ = "audit.log.tiles_read"
LOG_READ_KINDS = ("checkpoint", "key", "tiles", "entries")
MINUTE = timedelta(minutes=1)

Clock = Callable[[], datetime]


@dataclass
class ReadNote:
    """One read, as the meta-audit records it."""

    principal: Principal
    action: str
    filters: dict[str, Any] = field(default_factory=dict)
    count: int = 0
    completed: bool = True
    target: tuple[str, str] | None = None  # (type, id); None: the filters' target or the log
    tally: str | None = None  # one of LOG_READ_KINDS: counted per minute, not recorded alone


def note_read(
    request: Request,
    principal: Principal,
    action: str,
    filters: dict[str, Any] | None = None,
    *,
    target: tuple[str, str] | None = None,
) -> ReadNote:
    """Note that this request is a read of ``principal``'s log, to be meta-audited as
    ``action``; the caller sets ``count`` on the returned note."""
    if not action.startswith(META_PREFIX):
        raise ValueError(f"meta-audit actions live under {META_PREFIX!r}: {action!r}")
    note = ReadNote(principal, action, dict(filters or {}), target=target)
    request.state.meta_read = note
    return note


def note_log_read(request: Request, principal: Principal, kind: str) -> ReadNote:
    """Note a log client's read of a checkpoint, key, tile or entry bundle: counted in
    its key's per-minute ``audit.log.tiles_read`` event."""
    if kind not in LOG_READ_KINDS:
        raise ValueError(f"a log read is one of {LOG_READ_KINDS}: {kind!r}")
    note = note_read(request, principal, TILES_READ)
    note.tally = kind
    note.count = 1
    return note


def pending_read(request: Request) -> ReadNote | None:
    """The note a handler left on this request, if any."""
    note: ReadNote | None = getattr(request.state, "meta_read", None)
    return note


@dataclass
class _Tally:
    principal: Principal
    minute: datetime
    last: datetime
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LOG_READ_KINDS, 0))
    id: uuid.UUID = field(default_factory=uuid7)  # the same on every retry, so it dedupes


class MetaAudit:
    """Writes notes as events into their tenant's log; keeps the per-minute tallies.

    ``clock`` says which minute a log read falls in (injectable, so tests need not wait
    a minute); ``tick`` is how often :meth:`run` looks for minutes that are over.
    """

    def __init__(self, clock: Clock = ingest.now, tick: float = 1.0) -> None:
        self.clock = clock
        self.tick = tick
        self.failures = 0
        self._pool: AsyncConnectionPool | None = None
        self._tallies: dict[tuple[str, uuid.UUID, datetime], _Tally] = {}

    def open(self, pool: AsyncConnectionPool) -> None:
        """Write through ``pool``. The sequencer is not woken for these events: nothing
        waits for a read's record to be sequenced, so its next sweep takes them, many
        reads to one batch and one checkpoint."""
        self._pool = pool

    async def record(self, note: ReadNote, context: dict[str, Any], completed: bool) -> None:
        """Record one finished read (or count it, for tallied kinds). Never raises."""
        if note.tally is not None:
            self._count(note.principal, note.tally)
            return
        try:
            asked = {k: v for k, v in note.filters.items() if v is not None}
            metadata = {
                "filters": jsonable_encoder(asked),
                "count": note.count,
                "completed": completed and note.completed,
            }
            event = _event(note.principal, note.action, _target(note), context, metadata)
            try:
                await self._write(note.principal.tenant, [event], ingest.now())
            except InvalidInput as exc:
                # Filters that cannot be stored as given (a NUL character, a number
                # JSON cannot keep exactly ...): record the read without them, and say
                # which.
                metadata["filters"] = {"unrecordable": sorted({p.path for p in exc.problems})}
                plain = _event(note.principal, note.action, _log(note.principal), {}, metadata)
                await self._write(note.principal.tenant, [plain], ingest.now())
        except Exception:
            self.failures += 1
            log.exception("meta-audit: could not record %s for tenant %r",
                          note.action, note.principal.tenant)

    def _count(self, principal: Principal, kind: str) -> None:
        at = self.clock()
        minute = at.replace(second=0, microsecond=0)
        key = (principal.tenant, principal.key_id, minute)
        tally = self._tallies.get(key)
        if tally is None:
            tally = self._tallies[key] = _Tally(principal, minute, at)
        tally.counts[kind] += 1
        tally.last = max(tally.last, at)

    async def flush(self, *, final: bool = False) -> None:
        """Write the tallies of every minute that is over (``final``: of every minute).
        A tally that cannot be written is kept for the next flush, except the final."""
        now = self.clock()
        due = [k for k, t in self._tallies.items() if final or t.minute + MINUTE <= now]
        taken = [self._tallies.pop(k) for k in due]
        tenants = {t.principal.tenant for t in taken}
        for tenant in sorted(tenants):
            mine = [t for t in taken if t.principal.tenant == tenant]
            try:
                await self._write(tenant, [_tally_event(t) for t in mine], ingest.now())
            except Exception:
                self.failures += 1
                log.exception("meta-audit: could not write %d log-read tallies for tenant %r",
                              len(mine), tenant)
                if not final:
                    for t in mine:
                        self._keep(t)

    def _keep(self, tally: _Tally) -> None:
        key = (tally.principal.tenant, tally.principal.key_id, tally.minute)
        newer = self._tallies.get(key)
        if newer is not None:  # the clock went back into that minute
            for kind, n in newer.counts.items():
                tally.counts[kind] += n
            tally.last = max(tally.last, newer.last)
        self._tallies[key] = tally

    async def run(self, stop: asyncio.Event) -> None:
        """Flush minutes as they end until ``stop`` is set, then flush what is left."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.tick)
            if not stop.is_set():
                await self.flush()
        await self.flush(final=True)

    async def _write(self, tenant: str, raw: list[dict[str, Any]], received_at: datetime) -> None:
        if self._pool is None:
            raise RuntimeError("the meta-audit has no database pool (the app is not started)")
        prepared = ingest.prepare(raw, tenant, received_at, meta=True)
        async with self._pool.connection() as conn:
            await ingest.write_inbox(conn, tenant, prepared, received_at)


def _log(principal: Principal) -> dict[str, str]:
    return {"type": "log", "id": principal.tenant}


def _target(note: ReadNote) -> dict[str, str]:
    """What was read: the note's target, the one target its filters name, or the log."""
    if note.target is not None:
        return {"type": note.target[0], "id": note.target[1]}
    kind, ident = note.filters.get("target_type"), note.filters.get("target_id")
    if isinstance(kind, str) and isinstance(ident, str):
        try:  # a target the schema would refuse stays in the filters only
            Target(type=kind, id=ident)
        except ValidationError:
            return _log(note.principal)
        return {"type": kind, "id": ident}
    return _log(note.principal)


def _event(
    principal: Principal,
    action: str,
    target: dict[str, str],
    context: dict[str, Any],
    metadata: dict[str, Any],
) -> dict[str, Any]:
    return {
        "id": str(uuid7()),
        "actor": {"type": "api_key", "id": str(principal.key_id)},
        "action": action,
        "target": target,
        "context": {**context, "service": "trailseal"},
        "outcome": {"status": "success"},
        "metadata": metadata,
    }


def _tally_event(tally: _Tally) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "minute": format_time(tally.minute),
        **tally.counts,
        "count": sum(tally.counts.values()),
    }
    event = _event(tally.principal, TILES_READ, _log(tally.principal), {}, metadata)
    return {**event, "id": str(tally.id), "occurred_at": format_time(tally.last)}


def request_context(scope: Scope) -> dict[str, Any]:
    """``context`` fields of a meta event taken from the request: the client's address,
    user agent and ``X-Request-ID``, each only when it is a valid value."""
    context: dict[str, Any] = {}
    client = scope.get("client")
    if client:
        with contextlib.suppress(ValueError):
            context["ip"] = str(ip_address(client[0]))
    headers = dict(scope.get("headers") or [])
    agent = headers.get(b"user-agent", b"").decode("latin-1")[:2048]
    if agent and "\x00" not in agent:
        context["user_agent"] = agent
    request_id = headers.get(b"x-request-id", b"").decode("latin-1")
    if 0 < len(request_id) <= 256 and "\x00" not in request_id:
        context["request_id"] = request_id
    return context


class MetaAuditMiddleware:
    """Records the read note a handler left, once its 2xx answer is (nearly) sent."""

    def __init__(self, app: ASGIApp, recorder: MetaAudit) -> None:
        self.app = app
        self.recorder = recorder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        status = 0
        recording: asyncio.Future[None] | None = None

        def start(completed: bool) -> asyncio.Future[None] | None:
            note: ReadNote | None = state.get("meta_read")
            if note is None or not 200 <= status < 300:
                return None
            return asyncio.ensure_future(
                self.recorder.record(note, request_context(scope), completed)
            )

        async def watching_send(message: Message) -> None:
            nonlocal status, recording
            if message["type"] == "http.response.start":
                status = message["status"]
            elif recording is None and (
                message["type"] == "http.response.pathsend"
                or (message["type"] == "http.response.body" and not message.get("more_body"))
            ):
                recording = start(completed=True)
                if recording is not None:
                    # Shielded: a disconnect that cancels the response must not cut the
                    # write short; the finally below waits for it instead.
                    await asyncio.shield(recording)
            await send(message)

        try:
            await self.app(scope, receive, watching_send)
        finally:
            if recording is None:  # started but never finished: the client went away
                recording = start(completed=False)
            if recording is not None:
                await recording
