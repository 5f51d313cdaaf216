"""The sequencer: moves each tenant's inbox into its log.

For one tenant at a time (a transaction-scoped advisory lock lets other sequencers pass
by, and the lock on the tenant's ``log_heads`` row is what makes it exclusive), one
transaction takes up to a batch of inbox rows in arrival order, gives them the next
gapless ``seq`` numbers, links each to the previous by ``chain_hash``, inserts them into
``events``, deletes them from the inbox, extends the tenant's Merkle tree (new full tiles
into ``tiles``, the right edge into ``log_heads``), signs a checkpoint of the new size, and
moves the head. Events a producer numbered (``context.source``, ``context.source_seq``)
also update their source's record in ``sources`` (see ``trailseal.gaps``), in the same
transaction; events without a source cost nothing there. Only seq numbers, hashes and
source numbers travel between Python and PostgreSQL; the event bodies never leave the
server. After the commit the checkpoint is handed to the witness, outside the database.

With ``leases`` (``trailseal.leases``) a running sequencer sequences only the tenants it
holds a lease on, renewing them between batches; the locks above still guard every batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from trailseal.gaps import SourceState, merge
from trailseal.integrity import GENESIS_CHAIN_HASH, HASH_SIZE
from trailseal.integrity.checkpoint import Checkpoint, log_origin, sign_checkpoint
from trailseal.integrity.hashing import chain_hashes
from trailseal.integrity.notes import Signer
from trailseal.integrity.tiles import FullTile, TreeState
from trailseal.leases import Leases
from trailseal.store import Role, scoped, scoped_query
from trailseal.store.arrays import bigint_array, bytea_array
from trailseal.witness import Witness

log = logging.getLogger(__name__)

_LOCK_CLASS = 0x7365_7175  # advisory lock namespace for sequencing ("sequ")

# The position range lets the primary key find the batch without reading the rest of the
# backlog; the array keeps the move exact: a row that committed inside the range after
# the head was read stays in the inbox for the next batch.
_MOVE = """
WITH moved AS (
    DELETE FROM trailseal.inbox
    WHERE tenant = %(tenant)s AND pos BETWEEN %(first)s AND %(last)s
      AND pos = ANY(%(pos)b::bigint[])
    RETURNING *
)
INSERT INTO trailseal.events (
    tenant, seq, id, occurred_at, received_at, actor_type, actor_id, actor_name, action,
    target_type, target_id, target_name, outcome, ip, request_id, correlation_id, service,
    source, source_seq, canonical, leaf_hash, chain_hash)
SELECT m.tenant, c.seq, m.id, m.occurred_at, m.received_at, m.actor_type, m.actor_id,
       m.actor_name, m.action, m.target_type, m.target_id, m.target_name, m.outcome, m.ip,
       m.request_id, m.correlation_id, m.service, m.source, m.source_seq, m.canonical,
       m.leaf_hash, c.chain_hash
FROM moved m
JOIN unnest(%(pos)b::bigint[], %(seq)b::bigint[], %(chain)b::bytea[])
     AS c(pos, seq, chain_hash) USING (pos)
ORDER BY c.seq
"""

_TRY_LOCK = "SELECT pg_try_advisory_xact_lock(%s, hashtext(%s))"

_HEAD = (
    "SELECT size, chain_hash, tree_size, edge FROM trailseal.log_heads"
    " WHERE tenant = %s FOR UPDATE"
)

_INBOX_HEAD = (
    "SELECT pos, leaf_hash, received_at, source, source_seq FROM trailseal.inbox"
    " WHERE tenant = %s ORDER BY pos LIMIT %s"
)

_LOCK_SOURCES = """
SELECT source, high_water, ahead, written_off, repeated FROM trailseal.sources
WHERE tenant = %s AND source = ANY(%s) ORDER BY source FOR UPDATE
"""

# Python merged each source's numbers into its record; this writes the results.
_SAVE_SOURCES = """
INSERT INTO trailseal.sources AS s (
    tenant, source, high_water, max_seen, ahead, written_off, repeated, first_seen_at,
    last_seen_at)
SELECT %(tenant)s, r.source, r.high_water, r.max_seen, r.ahead, r.written_off, r.repeated,
       r.first_seen_at, r.last_seen_at
FROM jsonb_to_recordset(%(rows)s) AS r(
    source text, high_water bigint, max_seen bigint, ahead bigint[], written_off bigint,
    repeated bigint, first_seen_at timestamptz, last_seen_at timestamptz)
ON CONFLICT (tenant, source) DO UPDATE SET
    high_water = EXCLUDED.high_water, max_seen = EXCLUDED.max_seen, ahead = EXCLUDED.ahead,
    written_off = EXCLUDED.written_off, repeated = EXCLUDED.repeated,
    first_seen_at = least(s.first_seen_at, EXCLUDED.first_seen_at),
    last_seen_at = greatest(s.last_seen_at, EXCLUDED.last_seen_at)
"""

_INSERT_TILES = """
INSERT INTO trailseal.tiles (tenant, level, idx, hashes, root)
SELECT %(tenant)s, t.level, t.idx, t.hashes, t.root
FROM unnest(%(level)b::smallint[], %(idx)b::bigint[], %(hashes)b::bytea[], %(root)b::bytea[])
     AS t(level, idx, hashes, root)
"""


@dataclass(frozen=True)
class Batch:
    """What one transaction sequenced, and the checkpoint it signed (None: nothing new)."""

    tenant: str
    first_seq: int
    count: int
    checkpoint: str | None = None


class _MissingPartitions(Exception):
    def __init__(self, months: set[tuple[int, int]], at: list[datetime]) -> None:
        self.months = months
        self.at = at


def _month(value: datetime) -> tuple[int, int]:
    return (value.year, value.month)


class Sequencer:
    """Sequences every tenant's inbox; run several for failover, they never collide."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        signer: Signer,
        *,
        origin_host: str,
        witness: Witness | None = None,
        batch_size: int = 1000,
        idle_seconds: float = 0.2,
        leases: Leases | None = None,
    ) -> None:
        self.pool = pool
        self.signer = signer
        self.origin_host = origin_host
        self.witness = witness
        self.batch_size = batch_size
        self.idle_seconds = idle_seconds
        self.leases = leases
        self.sequenced = 0  # events, since start: the ingest-to-log rate of /metrics
        self.wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop ``run`` runs on
        self._months: set[tuple[int, int]] = set()
        self._key_published = False

    def origin(self, tenant: str) -> str:
        """The checkpoint origin of ``tenant``'s log."""
        return log_origin(self.origin_host, tenant)

    async def publish_key(self) -> None:
        """Record this sequencer's verifier key, so readers can fetch it."""
        async with self.pool.connection() as conn, scoped(conn, Role.SEQUENCER):
            await conn.execute(
                "INSERT INTO trailseal.log_keys (verifier_key) VALUES (%s)"
                " ON CONFLICT DO NOTHING",
                (self.signer.verifier_key(),),
            )
        self._key_published = True

    async def pending_tenants(self) -> list[str]:
        """Tenants with events in the inbox."""
        async with self.pool.connection() as conn, scoped(conn, Role.SEQUENCER):
            cur = await conn.execute("SELECT * FROM trailseal.pending_tenants()")
            return [row[0] for row in await cur.fetchall()]

    async def sequence_tenant(self, tenant: str) -> int:
        """Sequence everything waiting for ``tenant``; returns how many events."""
        total = 0
        while True:
            batch = await self.sequence_batch(tenant)
            if batch is None or batch.count == 0:
                return total
            total += batch.count

    async def run_once(self) -> int:
        """One sweep over every tenant with pending events."""
        total = 0
        for tenant in await self.pending_tenants():
            total += await self.sequence_tenant(tenant)
        return total

    def nudge(self) -> None:
        """Start the next sweep now rather than after the idle wait; callable from any
        thread (the API's loop nudges a sequencer that runs on a thread of its own)."""
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nothing to wake
                loop.call_soon_threadsafe(self.wake.set)

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep until ``stop`` is set, waking early when ``wake`` is set. With leases,
        each sweep first renews and rebalances them; at the end they are given back."""
        self._loop = asyncio.get_running_loop()
        try:
            while not stop.is_set():
                try:
                    done = await (self.run_once() if self.leases is None
                                  else self._leased_sweep(self.leases))
                except Exception:
                    log.exception("sequencer sweep failed; retrying")
                    done = 0
                if done == 0:
                    self.wake.clear()
                    waiters = [asyncio.create_task(e.wait()) for e in (self.wake, stop)]
                    await asyncio.wait(
                        waiters, timeout=self.idle_seconds, return_when=asyncio.FIRST_COMPLETED
                    )
                    for waiter in waiters:
                        waiter.cancel()
        finally:
            if self.leases is not None:
                try:
                    await self.leases.release()
                except Exception:
                    log.exception("could not give the sequencer leases back; they expire")

    async def _leased_sweep(self, leases: Leases) -> int:
        """Sequence the held tenants with pending events; stop early to renew in time."""
        held = await leases.refresh()
        renew_by = time.monotonic() + leases.duration.total_seconds() / 3
        total = 0
        for tenant in await self.pending_tenants():
            if tenant not in held:
                continue
            while time.monotonic() < renew_by:
                batch = await self.sequence_batch(tenant)
                if batch is None or batch.count == 0:
                    break
                total += batch.count
        return total

    async def sequence_batch(self, tenant: str) -> Batch | None:
        """Sequence one batch for ``tenant``. None: another sequencer holds the tenant."""
        if not self._key_published:
            await self.publish_key()
        async with self.pool.connection() as conn:
            try:
                batch = await self._sequence_batch(conn, tenant)
            except _MissingPartitions as missing:
                await self._create_partitions(conn, missing.at)
                batch = await self._sequence_batch(conn, tenant)
        if batch is not None:
            self.sequenced += batch.count
        if batch is not None and batch.checkpoint is not None and self.witness is not None:
            await self.witness.publish(tenant, batch.first_seq + batch.count, batch.checkpoint)
        return batch

    async def _create_partitions(self, conn: AsyncConnection, at: list[datetime]) -> None:
        async with scoped(conn, Role.SEQUENCER):
            for value in at:
                await conn.execute("SELECT trailseal.create_events_partition(%s)", (value,))
        self._months.update(_month(value) for value in at)

    async def _sequence_batch(self, conn: AsyncConnection, tenant: str) -> Batch | None:
        # Three round trips when nothing else is asked: the BEGIN, the scope and the
        # advisory lock; the head and the batch; then the move with everything that
        # follows from it, and the COMMIT. Each round trip is also a wait for the
        # interpreter in a process that serves requests beside it.
        async with scoped_query(conn, Role.SEQUENCER, _TRY_LOCK, (_LOCK_CLASS, tenant),
                                tenant) as locked:
            row = await locked.fetchone()
            if not row or not row[0]:
                return None
            head, rows = await _head_and_inbox(conn, tenant, self.batch_size)
            if head is None:
                await conn.execute(
                    "INSERT INTO trailseal.log_heads (tenant, size, chain_hash)"
                    " VALUES (%s, 0, %s)",
                    (tenant, GENESIS_CHAIN_HASH),
                )
                size, previous, tree = 0, GENESIS_CHAIN_HASH, TreeState()
            else:
                size, previous = head[0], bytes(head[1])
                tree = TreeState.from_bytes(head[2], bytes(head[3]))
            if not rows:
                return Batch(tenant, size, 0)
            received = {r[2] for r in rows}  # one value per request: few
            missing = {_month(at) for at in received} - self._months
            if missing:
                raise _MissingPartitions(
                    missing, [next(at for at in received if _month(at) == m) for m in missing]
                )
            tiles = await self._catch_up(conn, tenant, tree, size)
            await self._track_sources(conn, tenant, rows)
            positions = [row[0] for row in rows]
            leaves = b"".join([row[1] for row in rows])
            joined = chain_hashes(previous, leaves)
            chains = [joined[at : at + HASH_SIZE] for at in range(0, len(joined), HASH_SIZE)]
            previous = chains[-1]
            tiles.extend(tree.extend(leaves))
            root = tree.root()
            note = sign_checkpoint(Checkpoint(self.origin(tenant), tree.size, root), self.signer)
            async with conn.pipeline():  # the rest of the batch in one round trip
                moved = await conn.execute(
                    _MOVE,
                    {"tenant": tenant, "pos": bigint_array(positions), "first": positions[0],
                     "last": positions[-1], "seq": bigint_array(range(size, size + len(rows))),
                     "chain": bytea_array(chains)},
                )
                if tiles:
                    await conn.execute(_INSERT_TILES, _tile_columns(tenant, tiles))
                await conn.execute(
                    "INSERT INTO trailseal.checkpoints (tenant, size, root, note)"
                    " VALUES (%s, %s, %s, %s)",
                    (tenant, tree.size, root, note),
                )
                await conn.execute(
                    "UPDATE trailseal.log_heads SET size = %s, chain_hash = %s, tree_size = %s,"
                    " edge = %s, updated_at = now() WHERE tenant = %s",
                    (size + len(rows), previous, tree.size, tree.to_bytes(), tenant),
                )
            if moved.rowcount != len(rows):  # before the COMMIT: a short move rolls back
                raise RuntimeError(
                    f"sequencer moved {moved.rowcount} of {len(rows)} rows for {tenant!r}"
                )
        return Batch(tenant, size, len(rows), note)

    async def _catch_up(
        self, conn: AsyncConnection, tenant: str, tree: TreeState, size: int
    ) -> list[FullTile]:
        """Extend the tree over events sequenced before it existed (a log that predates
        migration 0002), so it always covers the whole log."""
        if tree.size == size:
            return []
        cur = await conn.execute(
            "SELECT leaf_hash FROM trailseal.events WHERE tenant = %s AND seq >= %s"
            " ORDER BY seq",
            (tenant, tree.size),
        )
        return tree.extend(b"".join(bytes(row[0]) for row in await cur.fetchall()))

    async def _track_sources(
        self, conn: AsyncConnection, tenant: str, rows: list[tuple[Any, ...]]
    ) -> None:
        """Merge the numbers of the batch's numbered events into their sources' records."""
        numbers: dict[str, list[int]] = {}
        seen: dict[str, tuple[datetime, datetime]] = {}
        for _, _, received_at, source, source_seq in rows:
            if source is None:
                continue
            numbers.setdefault(source, []).append(source_seq)
            first, last = seen.get(source, (received_at, received_at))
            seen[source] = (min(first, received_at), max(last, received_at))
        if not numbers:
            return
        cur = await conn.execute(_LOCK_SOURCES, (tenant, list(numbers)))
        known = {row[0]: SourceState(row[1], tuple(row[2]), row[3], row[4])
                 for row in await cur.fetchall()}
        saved = []
        for source, arrived in numbers.items():
            state = merge(known.get(source, SourceState()), arrived)
            saved.append({
                "source": source,
                "high_water": state.high_water,
                "max_seen": state.max_seen,
                "ahead": list(state.ahead),
                "written_off": state.written_off,
                "repeated": state.repeated,
                "first_seen_at": seen[source][0].isoformat(),
                "last_seen_at": seen[source][1].isoformat(),
            })
        await conn.execute(_SAVE_SOURCES, {"tenant": tenant, "rows": Jsonb(saved)})


class SequencerThread:
    """A sequencer on an event loop and a connection pool of its own, in a thread of the
    process that serves the API (``trailseal serve``).

    On the API's loop, each of a batch's dozen statements waited for whatever held the
    loop when PostgreSQL answered, most often a request validating its batch (milliseconds
    of Python): the sequencer's chain of transactions, the one serial part of ingest,
    stood still meanwhile. On a thread of its own it waits at most the interpreter's
    switch interval (5 ms) for its turn, and its statements run in PostgreSQL beside the
    requests'. ``build`` makes the sequencer over the thread's pool, ``make_pool`` that
    pool (unopened); both are called on the thread."""

    def __init__(
        self,
        make_pool: Callable[[], AsyncConnectionPool],
        build: Callable[[AsyncConnectionPool], Sequencer],
    ) -> None:
        self._make_pool = make_pool
        self._build = build
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.sequencer: Sequencer | None = None
        self._thread = threading.Thread(target=self._main, name="trailseal-sequencer",
                                        daemon=True)

    async def start(self) -> Sequencer:
        """Start the thread; returns once its sequencer runs, or raises what stopped it."""
        self._thread.start()
        await asyncio.to_thread(self._ready.wait)
        if self._failure is not None:
            await asyncio.to_thread(self._thread.join)
            raise self._failure
        assert self.sequencer is not None
        return self.sequencer

    async def stop(self) -> None:
        """Stop the sweeps (the batch in progress commits first) and wait for the thread."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # its loop has already ended
                loop.call_soon_threadsafe(stop.set)
        if self._thread.is_alive():
            await asyncio.to_thread(self._thread.join)

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        try:
            pool = self._make_pool()
            await pool.open(wait=True)
        except BaseException as exc:  # handed to start(), which raises it
            self._failure = exc
            self._ready.set()
            return
        try:
            try:
                self.sequencer = self._build(pool)
            except BaseException as exc:
                self._failure = exc
                return
            self._stop = asyncio.Event()
            self._loop = asyncio.get_running_loop()
            self._ready.set()
            await self.sequencer.run(self._stop)
        finally:
            self._ready.set()
            await pool.close()


async def _head_and_inbox(
    conn: AsyncConnection, tenant: str, limit: int
) -> tuple[Any, list[Any]]:
    """``tenant``'s log head (locked; None before its first batch) and the first
    ``limit`` rows of its inbox by position, read along the primary key, in one round
    trip. The inbox's statistics are always out of date (rows arrive and leave all day);
    planned for fewer rows than wait, "the first N by position" read the tenant's whole
    backlog and sorted it, so each batch cost more as the backlog grew. With sorting off
    for that one statement, walking the primary key is the one plan left. The rows come
    in binary: the leaf hashes as their bytes."""
    async with conn.pipeline():
        head = await conn.execute(_HEAD, (tenant,))
        await conn.execute("SET LOCAL enable_sort = off")
        inbox = await conn.execute(_INBOX_HEAD, (tenant, limit), binary=True)
        await conn.execute("SET LOCAL enable_sort TO DEFAULT")
    return await head.fetchone(), await inbox.fetchall()


def _tile_columns(tenant: str, tiles: list[FullTile]) -> dict[str, object]:
    return {
        "tenant": tenant,
        "level": [t.level for t in tiles],
        "idx": [t.index for t in tiles],
        "hashes": [t.hashes for t in tiles],
        "root": [t.root for t in tiles],
    }
