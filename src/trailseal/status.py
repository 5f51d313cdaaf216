"""The state of a tenant's log as an operator asks after it: the latest signed
checkpoint and when it was made, what was witnessed outside the database last, and the
outcome of the last ``trailseal verify``.

``trailseal verify`` records each tenant's outcome with :func:`record_run` (table
``verify_runs``, migration 0006: append-only, row-level security by tenant); the console
reads it back with :func:`last_run`. A recorded run says a check ran and what it
reported; it is not itself a proof (see the migration's note).
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from psycopg import AsyncConnection

from trailseal.ids import uuid7
from trailseal.store import Role, scoped
from trailseal.witness import WormFolder, checkpoint_name

if TYPE_CHECKING:
    from trailseal.verify import Report

MAX_DETAIL = 2000


@dataclass(frozen=True)
class CheckpointInfo:
    """The latest signed checkpoint of a tenant, with its creation time."""

    size: int
    root: bytes
    note: str
    created_at: datetime

    @property
    def root_b64(self) -> str:
        return base64.b64encode(self.root).decode()


@dataclass(frozen=True)
class VerifyRun:
    """One recorded ``trailseal verify`` of one tenant."""

    finished_at: datetime
    ok: bool
    events: int
    checkpoints: int
    witnessed: int
    from_seq: int
    finding_seq: int | None
    finding_kind: str | None
    detail: str | None
    notes: tuple[str, ...]


@dataclass(frozen=True)
class WitnessInfo:
    """The newest checkpoint of a tenant in the write-once folder, and whether the
    database holds the same checkpoint at that size (None: it holds none of that size)."""

    size: int
    matches_database: bool | None


async def record_run(conn: AsyncConnection, report: Report, *, from_seq: int = 0) -> None:
    """Record ``report`` (one tenant's outcome) as a verify run. Acts as the owner, as
    ``trailseal verify`` does."""
    finding = report.finding
    detail = finding.detail[:MAX_DETAIL] if finding else None
    async with scoped(conn, Role.OWNER, report.tenant):
        await conn.execute(
            "INSERT INTO trailseal.verify_runs (tenant, id, from_seq, events, checkpoints,"
            " witnessed, ok, finding_seq, finding_kind, detail, notes)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (report.tenant, uuid7(), from_seq, report.events, report.checkpoints,
             report.witnessed, report.ok, finding.seq if finding else None,
             str(finding.kind) if finding else None, detail, list(report.notes)),
        )


async def last_run(conn: AsyncConnection, tenant: str) -> VerifyRun | None:
    """The newest recorded verify run of ``tenant``; None if it was never verified here."""
    async with scoped(conn, Role.READER, tenant):
        cur = await conn.execute(
            "SELECT finished_at, ok, events, checkpoints, witnessed, from_seq, finding_seq,"
            " finding_kind, detail, notes FROM trailseal.verify_runs WHERE tenant = %s"
            " ORDER BY finished_at DESC, id DESC LIMIT 1",
            (tenant,),
        )
        row = await cur.fetchone()
    if row is None:
        return None
    return VerifyRun(
        finished_at=row[0], ok=row[1], events=row[2], checkpoints=row[3], witnessed=row[4],
        from_seq=row[5], finding_seq=row[6], finding_kind=row[7], detail=row[8],
        notes=tuple(row[9]),
    )


async def latest_checkpoint_info(conn: AsyncConnection, tenant: str) -> CheckpointInfo | None:
    """The newest signed checkpoint of ``tenant`` with the time it was made."""
    async with scoped(conn, Role.READER, tenant):
        cur = await conn.execute(
            "SELECT size, root, note, created_at FROM trailseal.checkpoints"
            " WHERE tenant = %s ORDER BY size DESC LIMIT 1",
            (tenant,),
        )
        row = await cur.fetchone()
    return None if row is None else CheckpointInfo(row[0], bytes(row[1]), row[2], row[3])


def _newest_witnessed(folder: WormFolder, tenant: str) -> tuple[int, str] | None:
    names = folder.names(f"{tenant}/checkpoints")
    if not names:
        return None
    size = int(names[-1].rsplit("/", 1)[1])
    return size, folder.get(checkpoint_name(tenant, size)).decode()


async def witnessed_status(
    conn: AsyncConnection, folder: WormFolder, tenant: str
) -> WitnessInfo | None:
    """What the write-once ``folder`` holds for ``tenant`` last, compared with the
    database's checkpoint of the same size; None when it holds nothing for it."""
    try:
        newest = await asyncio.to_thread(_newest_witnessed, folder, tenant)
    except OSError:
        return None
    if newest is None:
        return None
    size, note = newest
    async with scoped(conn, Role.READER, tenant):
        cur = await conn.execute(
            "SELECT note FROM trailseal.checkpoints WHERE tenant = %s AND size = %s",
            (tenant, size),
        )
        row = await cur.fetchone()
    return WitnessInfo(size, None if row is None else row[0] == note)
