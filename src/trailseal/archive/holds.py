"""Legal holds: a hold on a whole tenant, or on one target, stops every deletion it
covers until it is released: the drop of a partition of the log (the database checks)
and the deletion of segments from the store (an S3 legal hold, or the local store's
mark, on every segment it covers; the store refuses on its own).

Holds and releases are rows that are never changed, and each is also an audit event in
the tenant's own log (``audit.hold.added``, ``audit.hold.released``), written through
ingest's reserved ``audit.`` namespace.
"""

from __future__ import annotations

import asyncio
import getpass
import io
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq
from psycopg import AsyncConnection

from trailseal import ingest
from trailseal.archive.segments import manifest_key
from trailseal.archive.worm import WormError, WormStore
from trailseal.errors import InvalidInput, NotFound
from trailseal.ids import uuid7
from trailseal.store import Role, scoped

ADDED = "audit.hold.added"
RELEASED = "audit.hold.released"


@dataclass(frozen=True)
class Hold:
    """An active or released legal hold."""

    id: uuid.UUID
    target: tuple[str, str] | None  # None: the whole tenant
    reason: str
    created_at: datetime
    released_at: datetime | None = None


def parse_target(text: str | None) -> tuple[str, str] | None:
    """``"type:id"`` → ``("type", "id")``; None stays None."""
    if text is None:
        return None
    kind, sep, ident = text.partition(":")
    if not sep or not kind or not ident:
        raise InvalidInput(f"--target must be type:id, such as document:d_42; got {text!r}")
    return kind, ident


async def active_holds(conn: AsyncConnection, tenant: str) -> list[Hold]:
    """The holds of ``tenant`` not released (in a transaction scoped to it)."""
    return [h for h in await _holds(conn, tenant) if h.released_at is None]


async def _holds(conn: AsyncConnection, tenant: str) -> list[Hold]:
    cur = await conn.execute(
        "SELECT h.id, h.target_type, h.target_id, h.reason, h.created_at, r.released_at"
        " FROM trailseal.legal_holds h LEFT JOIN trailseal.legal_hold_releases r"
        "   ON r.tenant = h.tenant AND r.hold_id = h.id"
        " WHERE h.tenant = %s ORDER BY h.created_at, h.id", (tenant,))
    return [Hold(row[0], (row[1], row[2]) if row[1] is not None else None, row[3], row[4],
                 row[5]) for row in await cur.fetchall()]


async def list_holds(conn: AsyncConnection, tenant: str) -> list[Hold]:
    """Every hold of ``tenant``, released ones too."""
    async with scoped(conn, Role.OWNER, tenant):
        return await _holds(conn, tenant)


def _event(action: str, hold_id: uuid.UUID, reason: str,
           target: tuple[str, str] | None) -> dict[str, Any]:
    covers = "tenant" if target is None else f"{target[0]}:{target[1]}"
    return {
        "id": str(uuid7()),
        # The operator at the command line, named by their login on the machine.
        "actor": {"type": "user", "id": getpass.getuser() or "operator"},
        "action": action,
        "target": {"type": "legal_hold", "id": str(hold_id)},
        "context": {"service": "trailseal"},
        "outcome": {"status": "success"},
        "metadata": {"reason": reason, "covers": covers},
    }


async def _audit(conn: AsyncConnection, tenant: str, event: dict[str, Any],
                 now: datetime) -> None:
    prepared = ingest.prepare([event], tenant, now, meta=True)
    await ingest.write_inbox(conn, tenant, prepared, now)


async def add_hold(conn: AsyncConnection, store: WormStore, tenant: str,
                   target: tuple[str, str] | None, reason: str, now: datetime) -> Hold:
    """Place a hold, record it as an audit event, and mark every segment it covers."""
    if not reason.strip():
        raise InvalidInput("a hold needs a reason")
    hold = Hold(uuid7(), target, reason, now)
    async with scoped(conn, Role.OWNER, tenant):
        await conn.execute(
            "INSERT INTO trailseal.legal_holds (tenant, id, target_type, target_id, reason,"
            " created_at) VALUES (%s, %s, %s, %s, %s, %s)",
            (tenant, hold.id, *(target or (None, None)), reason, now))
    await _audit(conn, tenant, _event(ADDED, hold.id, reason, target), now)
    await apply_holds(conn, store, tenant)
    return hold


async def release_hold(conn: AsyncConnection, store: WormStore, tenant: str,
                       hold_id: uuid.UUID, reason: str, now: datetime) -> Hold:
    """Release a hold, record it as an audit event, and unmark the segments no other
    hold covers."""
    if not reason.strip():
        raise InvalidInput("a release needs a reason")
    async with scoped(conn, Role.OWNER, tenant):
        found = {h.id: h for h in await _holds(conn, tenant)}
        hold = found.get(hold_id)
        if hold is None:
            raise NotFound(f"tenant {tenant} has no hold {hold_id}")
        if hold.released_at is not None:
            raise InvalidInput(f"hold {hold_id} was released at {hold.released_at}")
        await conn.execute(
            "INSERT INTO trailseal.legal_hold_releases (tenant, hold_id, reason, released_at)"
            " VALUES (%s, %s, %s, %s)", (tenant, hold_id, reason, now))
    await _audit(conn, tenant, _event(RELEASED, hold_id, reason, hold.target), now)
    await apply_holds(conn, store, tenant)
    return Hold(hold.id, hold.target, hold.reason, hold.created_at, now)


async def apply_holds(conn: AsyncConnection, store: WormStore, tenant: str) -> int:
    """Set the store's legal hold on exactly the segments of ``tenant`` that an active
    hold covers; returns how many are held. A segment that cannot be read (in a cold
    tier that needs a restore) is held whenever any target hold is active."""
    async with scoped(conn, Role.OWNER, tenant):
        holds = await active_holds(conn, tenant)
        cur = await conn.execute(
            "SELECT s.first_seq, s.object_key FROM trailseal.segments s WHERE s.tenant = %s"
            " AND NOT EXISTS (SELECT 1 FROM trailseal.segment_events v WHERE"
            " v.tenant = s.tenant AND v.first_seq = s.first_seq AND v.kind = 'expired')"
            " ORDER BY s.first_seq", (tenant,))
        segments = await cur.fetchall()
    targets = {h.target for h in holds if h.target is not None}
    whole = any(h.target is None for h in holds)
    return await asyncio.to_thread(_mark, store, [row[1] for row in segments], targets, whole)


def _mark(store: WormStore, keys: list[str], targets: set[tuple[str, str]],
          whole: bool) -> int:
    held = 0
    for key in keys:
        on = whole or (bool(targets) and _covers(store, key, targets))
        for name in (key, manifest_key(key)):
            store.set_legal_hold(name, on)
        held += on
    return held


def _covers(store: WormStore, key: str, targets: set[tuple[str, str]]) -> bool:
    try:
        table = pq.read_table(io.BytesIO(store.get(key)), columns=["target_type", "target_id"])
    except WormError:
        return True  # unreadable without a restore: hold it rather than guess
    types, ids = table.column("target_type"), table.column("target_id")
    for kind, ident in targets:
        mask = pc.and_(pc.equal(types, kind), pc.equal(ids, ident))
        if pc.any(mask).as_py():
            return True
    return False
