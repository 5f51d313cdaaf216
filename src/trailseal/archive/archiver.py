"""The archiver: seals each tenant's log into contiguous segments in the write-once store.

For each tenant, from the seq after its last segment, it reads the events under the
newest checkpoint and closes a segment when it holds ``max_events`` events, when the next
event was received in another month (so one month's partition always holds whole
segments), or when its first event is ``max_age`` old by the injected clock. It writes
the Parquet file and its signed manifest to the store (retained until the newest event's
receive time plus the tenant's retention, under a legal hold if one covers the whole
tenant), with the checkpoint the segment falls under beside them, records the segment,
then reads the file back from the store and checks it against the log before recording
it as verified. Only a verified segment lets its events leave PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import AsyncConnection

from trailseal.archive.policy import policy_for
from trailseal.archive.segments import (
    Columns,
    Manifest,
    Sealed,
    SegmentError,
    check_file,
    columns_of,
    manifest_key,
    object_key,
    open_manifest,
    seal,
)
from trailseal.archive.worm import ObjectExists, WormError, WormStore
from trailseal.integrity import GENESIS_CHAIN_HASH
from trailseal.integrity.notes import Signer
from trailseal.store import Role, scoped
from trailseal.witness import checkpoint_name

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

_LOCK_CLASS = 0x7365_616C  # advisory lock namespace for sealing ("seal")

# A segment's values, in the order of segments.COLUMNS.
_ROWS = """
SELECT seq, canonical, id::text, occurred_at, received_at, actor_type,
       actor_id, actor_name, action, target_type, target_id, target_name, outcome,
       host(ip) AS ip, request_id, correlation_id, service
FROM trailseal.events WHERE tenant = %s AND seq >= %s AND seq < %s ORDER BY seq LIMIT %s
"""

_INSERT = """
INSERT INTO trailseal.segments (
    tenant, first_seq, last_seq, object_key, file_sha256, file_bytes, merkle_root,
    chain_before, chain_last, checkpoint_size, checkpoint_root, min_received_at,
    max_received_at, min_occurred_at, max_occurred_at, retain_until, manifest, created_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
"""


def system_clock() -> datetime:
    return datetime.now(UTC)


def _month(value: datetime) -> tuple[int, int]:
    value = value.astimezone(UTC)
    return value.year, value.month


@dataclass(frozen=True)
class SegmentRow:
    """A segment as recorded in ``trailseal.segments``."""

    tenant: str
    first_seq: int
    last_seq: int
    object_key: str
    file_sha256: bytes
    chain_last: bytes
    min_received_at: datetime
    max_received_at: datetime
    min_occurred_at: datetime
    max_occurred_at: datetime
    retain_until: datetime
    manifest: str


SEGMENT_COLUMNS = (
    "tenant, first_seq, last_seq, object_key, file_sha256, chain_last, min_received_at,"
    " max_received_at, min_occurred_at, max_occurred_at, retain_until, manifest"
)


async def segments_of(conn: AsyncConnection, tenant: str) -> list[SegmentRow]:
    """Every segment of ``tenant`` in seq order (in a transaction scoped to it)."""
    cur = await conn.execute(
        f"SELECT {SEGMENT_COLUMNS} FROM trailseal.segments WHERE tenant = %s"
        " ORDER BY first_seq",
        (tenant,),
    )
    found = []
    for row in await cur.fetchall():
        values: list[Any] = [bytes(v) if isinstance(v, memoryview) else v for v in row]
        found.append(SegmentRow(*values))
    return found


class Archiver:
    """Seals every tenant's log into segments (see the module docstring)."""

    def __init__(
        self,
        store: WormStore,
        signer: Signer,
        *,
        max_events: int = 10_000,
        max_age: timedelta = timedelta(minutes=1),
        default_preset: str = "finance",
        clock: Clock = system_clock,
    ) -> None:
        self.store = store
        self.signer = signer
        self.max_events = max_events
        self.max_age = max_age
        self.default_preset = default_preset
        self.clock = clock

    async def tenants(self, conn: AsyncConnection) -> list[str]:
        async with scoped(conn, Role.ARCHIVER):
            cur = await conn.execute("SELECT name FROM trailseal.tenants ORDER BY name")
            return [row[0] for row in await cur.fetchall()]

    async def run_once(self, conn: AsyncConnection) -> int:
        """Seal every segment that is ready, of every tenant; returns how many."""
        sealed = 0
        for tenant in await self.tenants(conn):
            sealed += await self.seal_tenant(conn, tenant)
        return sealed

    async def seal_tenant(self, conn: AsyncConnection, tenant: str) -> int:
        """Verify what is pending and seal every segment of ``tenant`` that is ready;
        nothing (0) while another archiver is at it. One archiver runs in each API
        process: two sealing one tenant at once would build the same segment, and the
        second's record would be refused. A session advisory lock per tenant (``conn``
        must be outside a transaction) lets one through; a process that dies lets go
        with its connection."""
        cur = await conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))",
                                 (_LOCK_CLASS, tenant))
        row = await cur.fetchone()
        if not row or not row[0]:
            return 0
        try:
            await self.verify_pending(conn, tenant)
            sealed = 0
            while await self.seal_next(conn, tenant):
                sealed += 1
            return sealed
        finally:
            try:
                await conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))",
                                   (_LOCK_CLASS, tenant))
            except BaseException:
                await conn.close()  # the lock must not outlive this: it goes with the session
                raise

    async def run(self, connect: Callable[[], Any], stop: asyncio.Event,
                  idle_seconds: float) -> None:
        """Sweep until ``stop`` is set; ``connect`` gives an async context manager of a
        connection (a pool's ``connection``)."""
        while not stop.is_set():
            try:
                async with connect() as conn:
                    await self.run_once(conn)
            except Exception:
                log.exception("archiver sweep failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), idle_seconds)

    async def seal_next(self, conn: AsyncConnection, tenant: str) -> bool:
        """Seal ``tenant``'s next segment if one is ready; True if one was."""
        now = self.clock()
        async with scoped(conn, Role.ARCHIVER, tenant):
            cur = await conn.execute(
                "SELECT coalesce(max(last_seq) + 1, 0) FROM trailseal.segments"
                " WHERE tenant = %s", (tenant,))
            row = await cur.fetchone()
            start = int(row[0]) if row else 0
            cur = await conn.execute(
                "SELECT coalesce(max(size), 0) FROM trailseal.checkpoints WHERE tenant = %s",
                (tenant,))
            row = await cur.fetchone()
            signed = int(row[0]) if row else 0
            if signed <= start:
                return False
            if signed - start < self.max_events and not await self._may_close(
                    conn, tenant, start, signed, now):
                return False  # too few events, too young: not worth reading them yet
            async with conn.cursor(binary=True) as rows:
                await rows.execute(_ROWS, (tenant, start, signed, self.max_events + 1))
                columns = columns_of(await rows.fetchall())
            count = self._closed(columns, start, now)
            if not count:
                return False
            chosen = {name: values[:count] for name, values in columns.items()}
            last = chosen["seq"][-1]
            cur = await conn.execute(
                "SELECT size, root FROM trailseal.checkpoints WHERE tenant = %s AND size > %s"
                " ORDER BY size LIMIT 1", (tenant, last))
            checkpoint = await cur.fetchone()
            if checkpoint is None:
                return False
            cur = await conn.execute(
                "SELECT note FROM trailseal.checkpoints WHERE tenant = %s AND size = %s",
                (tenant, checkpoint[0]))
            note_row = await cur.fetchone()
            chain_before = await self._chain_before(conn, tenant, start)
            policy = await policy_for(conn, tenant, self.default_preset)
            held = await _tenant_held(conn, tenant)
        retain_until = _whole_second(max(chosen["received_at"]) + policy.retain)
        # Building and checking a segment is CPU work (Parquet, zstd, SHA-256) mostly
        # outside the GIL: in a thread, it leaves the event loop to the API and sequencer.
        built = await asyncio.to_thread(
            seal, tenant, chosen, chain_before=chain_before,
            checkpoint=(checkpoint[0], bytes(checkpoint[1])),
            retain_until=retain_until, created_at=now, signer=self.signer)
        built = await asyncio.to_thread(self._put, built, held,
                                        note_row[0] if note_row else None, checkpoint[0])
        async with scoped(conn, Role.ARCHIVER, tenant):
            await self._record(conn, built)
        await self.verify_segment(conn, tenant, built.manifest)
        return True

    async def _may_close(self, conn: AsyncConnection, tenant: str, start: int, signed: int,
                         now: datetime) -> bool:
        """Whether fewer than ``max_events`` signed events from ``start`` may make a
        closed segment, from the first and the last of them alone: the first is
        ``max_age`` old, or the last was received in another month (or one is missing,
        which the full read reports). Otherwise the segment is still open, and its rows
        (up to ``max_events``, on every sweep) are not read."""
        cur = await conn.execute(
            "SELECT seq, received_at FROM trailseal.events WHERE tenant = %s"
            " AND seq = ANY(%s)", (tenant, [start, signed - 1]))
        edges: dict[int, datetime] = dict(await cur.fetchall())
        first, last = edges.get(start), edges.get(signed - 1)
        if first is None or last is None:
            return True
        return now - first >= self.max_age or _month(first) != _month(last)

    def _closed(self, columns: Columns, start: int, now: datetime) -> int:
        """How many of the events in ``columns`` (read from ``start`` on) make the next
        segment if it is closed; 0 while it is open."""
        seqs, received = columns["seq"], columns["received_at"]
        count = min(len(seqs), self.max_events)
        if not count:
            return 0
        if seqs[:count] != list(range(start, start + count)):
            missing = next(start + i for i, seq in enumerate(seqs) if seq != start + i)
            log.error("archiver: seq %d is missing from the log; not sealing past it", missing)
            return 0
        month_start = datetime(*_month(received[0]), 1, tzinfo=UTC)
        month_end = (month_start + timedelta(days=32)).replace(day=1)
        for i in range(1, count):
            if not month_start <= received[i] < month_end:
                return i  # the next event is another month's
        if count == self.max_events or now - received[0] >= self.max_age:
            return count
        return 0

    async def _chain_before(self, conn: AsyncConnection, tenant: str, start: int) -> bytes:
        if start == 0:
            return GENESIS_CHAIN_HASH
        cur = await conn.execute(
            "SELECT chain_last FROM trailseal.segments WHERE tenant = %s AND last_seq = %s",
            (tenant, start - 1))
        row = await cur.fetchone()
        if row is None:
            raise SegmentError(f"no segment of {tenant} ends at seq {start - 1}")
        return bytes(row[0])

    def _put(self, built: Sealed, held: bool, note: str | None, size: int) -> Sealed:
        """Write the segment; returns it as stored. A segment written before a crash,
        but not recorded, is found with the same file and its first manifest kept."""
        m = built.manifest
        until = datetime.fromisoformat(m.retain_until)
        self.store.put_new(m.file, built.data, retain_until=until, legal_hold=held)
        try:
            self.store.put_new(manifest_key(m.file), built.note.encode(), retain_until=until,
                               legal_hold=held)
        except ObjectExists:
            stored = self.store.get(manifest_key(m.file)).decode()
            earlier = open_manifest(stored, [self.signer.verifier()])
            if (earlier.sha256, earlier.first_seq, earlier.last_seq) != (
                    m.sha256, m.first_seq, m.last_seq):
                raise
            built = Sealed(built.data, earlier, stored)
        if note is not None:
            # Checkpoints go to the store too, kept as long as the segment that names it.
            self.store.put_new(checkpoint_name(m.tenant, size), note.encode(),
                               retain_until=until)
        return built

    async def _record(self, conn: AsyncConnection, built: Sealed) -> None:
        m = built.manifest
        await conn.execute(_INSERT, (
            m.tenant, m.first_seq, m.last_seq, m.file, bytes.fromhex(m.sha256), m.bytes,
            bytes.fromhex(m.merkle_root), bytes.fromhex(m.chain_before),
            bytes.fromhex(m.chain_last), m.checkpoint_size, bytes.fromhex(m.checkpoint_root),
            m.min_received_at, m.max_received_at, m.min_occurred_at, m.max_occurred_at,
            m.retain_until, built.note, m.created_at,
        ))

    async def verify_pending(self, conn: AsyncConnection, tenant: str) -> int:
        """Verify the segments of ``tenant`` not yet verified (a sweep that stopped
        between writing and verifying); returns how many now are."""
        async with scoped(conn, Role.ARCHIVER, tenant):
            cur = await conn.execute(
                "SELECT s.manifest FROM trailseal.segments s WHERE s.tenant = %s"
                " AND NOT EXISTS (SELECT 1 FROM trailseal.segment_events v WHERE"
                " v.tenant = s.tenant AND v.first_seq = s.first_seq AND v.kind = 'verified')"
                " ORDER BY s.first_seq", (tenant,))
            notes = [row[0] for row in await cur.fetchall()]
        done = 0
        for note in notes:
            manifest = open_manifest(note, [self.signer.verifier()])
            done += await self.verify_segment(conn, tenant, manifest)
        return done

    async def verify_segment(self, conn: AsyncConnection, tenant: str, m: Manifest) -> bool:
        """Read the segment back from the store, check it against its manifest and the
        log's leaf and chain hashes, and record it as verified; False (logged) if it
        differs."""
        try:
            rows = await asyncio.to_thread(lambda: check_file(self.store.get(m.file), m))
        except (WormError, SegmentError, OSError) as exc:
            log.error("segment %s of %s did not verify: %s", m.first_seq, tenant, exc)
            return False
        async with scoped(conn, Role.ARCHIVER, tenant):
            cur = await conn.execute(
                "SELECT leaf_hash, chain_hash FROM trailseal.events WHERE tenant = %s"
                " AND seq BETWEEN %s AND %s ORDER BY seq", (tenant, m.first_seq, m.last_seq))
            logged = [(bytes(r[0]), bytes(r[1])) for r in await cur.fetchall()]
            if logged != [(r[2], r[3]) for r in rows]:
                log.error("segment %s of %s differs from the log", m.first_seq, tenant)
                return False
            await conn.execute(
                "INSERT INTO trailseal.segment_events (tenant, first_seq, kind, at)"
                " VALUES (%s, %s, 'verified', %s) ON CONFLICT DO NOTHING",
                (tenant, m.first_seq, self.clock()))
        return True


def _whole_second(value: datetime) -> datetime:
    """``value`` rounded up to a whole second: S3 keeps retain-until dates to the second,
    and rounding down would shorten a retention."""
    if value.microsecond:
        value = value.replace(microsecond=0) + timedelta(seconds=1)
    return value


async def _tenant_held(conn: AsyncConnection, tenant: str) -> bool:
    cur = await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM trailseal.legal_holds h WHERE h.tenant = %s"
        " AND h.target_type IS NULL AND NOT EXISTS (SELECT 1 FROM"
        " trailseal.legal_hold_releases r WHERE r.tenant = h.tenant AND r.hold_id = h.id))",
        (tenant,))
    row = await cur.fetchone()
    return bool(row and row[0])


__all__ = ["Archiver", "SegmentRow", "object_key", "segments_of", "system_clock"]
