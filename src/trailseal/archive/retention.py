"""``trailseal retention run``: move each tenant's data between tiers at the thresholds
of its policy, by the injected clock.

- hot → warm: a month's partition of the log is dropped once every tenant with events in
  it has them all in verified segments, the month is past each one's hot days, and no
  legal hold covers it; ``trailseal.drop_events_partition`` checks all of that itself,
  as the owner, and refuses otherwise (its reason is reported). Leaf hashes and tiles
  stay, so proofs and ``verify`` still work.
- warm → cold: a segment whose newest event is older than the tenant's warm days moves
  to the store's cold tier (recorded once, as a ``cold`` segment event).
- cold → gone: a segment whose retain-until date has passed is deleted from the store
  (recorded as ``expired``), unless a legal hold covers it; the store refuses an early
  or held delete on its own as well.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import AsyncConnection

from trailseal.archive.archiver import SegmentRow, segments_of
from trailseal.archive.holds import active_holds
from trailseal.archive.policy import policy_for
from trailseal.archive.segments import manifest_key
from trailseal.archive.worm import ObjectLocked, ObjectMissing, WormError, WormStore
from trailseal.store import Role, scoped

log = logging.getLogger(__name__)

_PARTITION = re.compile(r"^events_(\d{4})_(\d{2})$")


@dataclass
class RetentionReport:
    """What one run did."""

    dropped: list[str] = field(default_factory=list)
    kept: list[tuple[str, str]] = field(default_factory=list)  # partition, why
    cold: int = 0
    expired: int = 0
    held: int = 0
    problems: list[str] = field(default_factory=list)


async def _kinds(conn: AsyncConnection, tenant: str) -> dict[int, set[str]]:
    cur = await conn.execute(
        "SELECT first_seq, kind FROM trailseal.segment_events WHERE tenant = %s", (tenant,))
    found: dict[int, set[str]] = {}
    for first, kind in await cur.fetchall():
        found.setdefault(first, set()).add(kind)
    return found


async def _record(conn: AsyncConnection, tenant: str, first: int, kind: str,
                  at: datetime) -> None:
    async with scoped(conn, Role.ARCHIVER, tenant):
        await conn.execute(
            "INSERT INTO trailseal.segment_events (tenant, first_seq, kind, at)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING", (tenant, first, kind, at))


async def move_tiers(conn: AsyncConnection, store: WormStore, tenant: str, now: datetime,
                     default_preset: str, report: RetentionReport) -> None:
    """Move ``tenant``'s segments to the cold tier and delete expired ones."""
    async with scoped(conn, Role.ARCHIVER, tenant):
        policy = await policy_for(conn, tenant, default_preset)
        segments = await segments_of(conn, tenant)
        kinds = await _kinds(conn, tenant)
        tenant_held = any(h.target is None for h in await active_holds(conn, tenant))
    for segment in segments:
        done = kinds.get(segment.first_seq, set())
        if "expired" in done or "verified" not in done:
            continue
        if now >= segment.retain_until:
            if tenant_held:
                report.held += 1
                continue
            try:
                await asyncio.to_thread(_delete, store, segment, now)
            except ObjectLocked as exc:
                report.held += 1
                log.info("segment %d of %s kept: %s", segment.first_seq, tenant, exc)
                continue
            await _record(conn, tenant, segment.first_seq, "expired", now)
            report.expired += 1
        elif now - segment.max_received_at >= policy.warm and "cold" not in done:
            try:
                await asyncio.to_thread(_make_cold, store, segment)
            except WormError as exc:
                report.problems.append(f"{tenant} segment {segment.first_seq}: {exc}")
                continue
            await _record(conn, tenant, segment.first_seq, "cold", now)
            report.cold += 1


def _delete(store: WormStore, segment: SegmentRow, now: datetime) -> None:
    for key in (segment.object_key, manifest_key(segment.object_key)):
        try:
            store.delete(key, now=now)
        except ObjectMissing:
            continue  # deleted by a run that stopped before recording it


def _make_cold(store: WormStore, segment: SegmentRow) -> None:
    for key in (segment.object_key, manifest_key(segment.object_key)):
        store.make_cold(key)


async def partitions(conn: AsyncConnection) -> list[tuple[str, datetime]]:
    """The log's month partitions, oldest first: name and first instant of the month."""
    cur = await conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'trailseal.events'::regclass ORDER BY c.relname")
    found = []
    for (name,) in await cur.fetchall():
        match = _PARTITION.match(name)
        if match:
            found.append((name, datetime(int(match[1]), int(match[2]), 1, tzinfo=UTC)))
    return found


async def drop_partitions(conn: AsyncConnection, now: datetime,
                          report: RetentionReport) -> None:
    """Ask the database to drop every month that has ended; it refuses those it must
    keep, and says why."""
    for name, month in await partitions(conn):
        end = (month + timedelta(days=32)).replace(day=1)
        if end > now:
            continue
        try:
            async with scoped(conn, Role.ARCHIVER):
                await conn.execute("SELECT trailseal.drop_events_partition(%s, %s)",
                                   (month, now))
        except psycopg.Error as exc:
            report.kept.append((name, (exc.diag.message_primary or str(exc))
                                .removeprefix("trailseal: ")))
            continue
        report.dropped.append(name)


async def run_retention(conn: AsyncConnection, store: WormStore, now: datetime, *,
                        default_preset: str = "finance",
                        tenants: list[str] | None = None) -> RetentionReport:
    """One retention run at ``now`` over ``tenants`` (default: all)."""
    report = RetentionReport()
    if tenants is None:
        async with scoped(conn, Role.ARCHIVER):
            cur = await conn.execute("SELECT name FROM trailseal.tenants ORDER BY name")
            tenants = [row[0] for row in await cur.fetchall()]
    for tenant in tenants:
        await move_tiers(conn, store, tenant, now, default_preset, report)
    await drop_partitions(conn, now, report)
    return report
