"""Warm reads: events that left PostgreSQL through retention, read from their segment
files with DuckDB, with the same filters and order as the hot rows, so the query API and
exports answer over both tiers alike.

A segment is warm when its month's partition was dropped (``drop_events_partition``
records a ``dropped`` segment event, migration 0009) and it has not expired. Those
that overlap the asked time range (by their recorded occurred_at bounds) are fetched
from the write-once store into a local cache (checked against their recorded SHA-256),
and one DuckDB query over them applies the filters, the keyset position and the order.
A segment holds no hashes: each row's leaf hash is computed from its canonical bytes, and
its chain hash from the segment's chain hash before it (recorded with the segment),
chained once per segment and kept for the segments read last. Rows come back in the shape
of :func:`trailseal.reading.query.event_view`'s input, and
:func:`merge` interleaves them with the hot rows by (occurred_at, seq). IP filters are
applied in Python (DuckDB's inet type is an extension that may not be installed).
Segments in a cold tier that needs a restore (S3 Glacier) are left out, and say so in
the log.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import heapq
import ipaddress
import logging
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import duckdb
from psycopg import AsyncConnection, AsyncCursor

from trailseal.archive.segments import read_rows
from trailseal.archive.worm import WormError, WormStore
from trailseal.integrity.hashing import HASH_SIZE, leaf_hash
from trailseal.reading.query import EventFilter, Order, like_escape

log = logging.getLogger(__name__)

Row = tuple[Any, ...]  # seq, occurred_at, canonical, leaf_hash, chain_hash
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_WARM = """
SELECT s.object_key, s.file_sha256, s.first_seq, s.chain_before
FROM trailseal.segment_events d
JOIN trailseal.segments s ON s.tenant = d.tenant AND s.first_seq = d.first_seq
WHERE d.tenant = %s AND d.kind = 'dropped'
  AND (%s::timestamptz IS NULL OR s.max_occurred_at >= %s)
  AND (%s::timestamptz IS NULL OR s.min_occurred_at < %s)
  AND NOT EXISTS (SELECT 1 FROM trailseal.segment_events v WHERE v.tenant = s.tenant
                  AND v.first_seq = s.first_seq AND v.kind = 'expired')
ORDER BY s.first_seq
"""


CHAINS_KEPT = 64
"""How many segments' chain hashes a reader keeps (32 bytes an event: 20 MB at most
for segments of 10,000)."""


class Segment(NamedTuple):
    """A warm segment as recorded: where it is, its SHA-256, its first seq and the
    chain hash before it."""

    key: str
    sha256: bytes
    first_seq: int
    chain_before: bytes


class Warm:
    """Reads warm segments of the store, through a local cache folder."""

    def __init__(self, store: WormStore, cache_dir: Path) -> None:
        self.store = store
        self.cache_dir = cache_dir
        self._chains: OrderedDict[bytes, bytes] = OrderedDict()
        self._chains_lock = threading.Lock()

    async def list_segments(self, conn: AsyncConnection, tenant: str,
                            flt: EventFilter) -> AsyncCursor[Any]:
        """Ask for the warm segments that may hold matches (in a transaction scoped to
        ``tenant``); :meth:`segments_of` reads the answer. In pipeline mode the question
        travels with the statements around it."""
        return await conn.execute(_WARM, (tenant, flt.since, flt.since, flt.until, flt.until))

    @staticmethod
    async def segments_of(listing: AsyncCursor[Any]) -> list[Segment]:
        """The segments :meth:`list_segments` found, in seq order."""
        return [Segment(row[0], bytes(row[1]), row[2], bytes(row[3]))
                for row in await listing.fetchall()]

    async def segments(self, conn: AsyncConnection, tenant: str,
                       flt: EventFilter) -> list[Segment]:
        """The warm segments that may hold matches, in seq order (in a transaction
        scoped to ``tenant``)."""
        return await self.segments_of(await self.list_segments(conn, tenant, flt))

    def _local(self, key: str, sha256: bytes) -> Path | None:
        path = self.cache_dir / key
        if path.exists() and hashlib.sha256(path.read_bytes()).digest() == sha256:
            return path
        try:
            data = self.store.get(key)
        except WormError as exc:
            log.warning("warm segment %s left out: %s", key, exc)
            return None
        if hashlib.sha256(data).digest() != sha256:
            log.error("warm segment %s differs from its record; left out", key)
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_bytes(data)
        partial.replace(path)
        return path

    async def _local_segments(self, conn: AsyncConnection, tenant: str, flt: EventFilter,
                              found: list[Segment] | None = None) -> _Located:
        if found is None:
            found = await self.segments(conn, tenant, flt)
        if not found:
            return _Located([], [])
        local = await asyncio.to_thread(
            lambda: [(s, self._local(s.key, s.sha256)) for s in found])
        kept = [(s, path) for s, path in local if path is not None]
        return _Located([s for s, _ in kept], [str(path) for _, path in kept])

    def _chain(self, segment: Segment, path: str) -> bytes:
        """The chain hashes of a segment's events, concatenated (the file at ``path`` was
        checked against the segment's recorded SHA-256)."""
        kept = segment.sha256 + segment.chain_before
        with self._chains_lock:
            chains = self._chains.get(kept)
            if chains is not None:
                self._chains.move_to_end(kept)
                return chains
        chains = b"".join(row[3] for row in read_rows(path, segment.chain_before))
        with self._chains_lock:
            self._chains[kept] = chains
            while len(self._chains) > CHAINS_KEPT:
                self._chains.popitem(last=False)
        return chains

    def _hashed(self, found: Sequence[Sequence[Any]], located: _Located) -> list[Row]:
        """DuckDB's (seq, occurred_at, canonical) rows with their leaf and chain hashes."""
        firsts = [s.first_seq for s in located.segments]
        chains: dict[int, bytes] = {}
        rows = []
        for seq, occurred_at, canonical, *_ in found:
            at = bisect.bisect_right(firsts, seq) - 1
            if at not in chains:
                chains[at] = self._chain(located.segments[at], located.paths[at])
            start = (seq - firsts[at]) * HASH_SIZE
            rows.append((seq, occurred_at, canonical, leaf_hash(canonical),
                         chains[at][start:start + HASH_SIZE]))
        return rows

    async def rows(self, conn: AsyncConnection, tenant: str, flt: EventFilter, *,
                   order: Order, after: tuple[datetime, int] | None = None,
                   limit: int | None = None,
                   segments: list[Segment] | None = None) -> list[Row]:
        """The warm rows matching ``flt`` in (occurred_at, seq) ``order`` from just past
        ``after``, at most ``limit``; from ``segments`` when the caller listed them
        already (:meth:`list_segments`)."""
        located = await self._local_segments(conn, tenant, flt, segments)
        if not located.paths:
            return []
        return await asyncio.to_thread(
            lambda: self._hashed(_query(located.paths, flt, order, after, limit), located))

    async def stream(self, conn: AsyncConnection, tenant: str, flt: EventFilter, *,
                     order: Order, batch: int = 1000) -> AsyncIterator[Row]:
        """As :meth:`rows`, all of them, ``batch`` at a time (constant memory here;
        DuckDB sorts within its own memory limit, spilling to disk beyond it)."""
        located = await self._local_segments(conn, tenant, flt)
        if not located.paths:
            return
        statement, params = _statement(located.paths, flt, order, None, None)
        network = ipaddress.ip_network(flt.ip) if flt.ip is not None else None
        db = await asyncio.to_thread(duckdb.connect)
        try:
            await asyncio.to_thread(db.execute, "SET TimeZone = 'UTC'")
            await asyncio.to_thread(db.execute, statement, params)
            while found := await asyncio.to_thread(db.fetchmany, batch):
                hashed = await asyncio.to_thread(self._hashed, _within(found, network),
                                                 located)
                for row in hashed:
                    yield row
        finally:
            db.close()


class _Located(NamedTuple):
    """The listed segments found in the local cache, in seq order, and their paths."""

    segments: list[Segment]
    paths: list[str]


def _where(flt: EventFilter, order: Order,
           after: tuple[datetime, int] | None) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    for column in ("actor_type", "actor_id", "target_type", "target_id", "outcome",
                   "correlation_id", "request_id", "service"):
        value = getattr(flt, column)
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if flt.action:
        parts = []
        for action in flt.action:
            if action.endswith("*"):
                parts.append("starts_with(action, ?)")
                params.append(action[:-1])
            else:
                parts.append("action = ?")
                params.append(action)
        where.append("(" + " OR ".join(parts) + ")")
    elif not flt.include_meta:
        where.append("NOT starts_with(action, 'audit.')")
    if flt.q is not None:
        pattern = "%" + like_escape(flt.q) + "%"
        where.append("(" + " OR ".join(
            f"{c} ILIKE ? ESCAPE '\\'" for c in
            ("actor_id", "actor_name", "target_id", "target_name")) + ")")
        params.extend([pattern] * 4)
    if flt.since is not None:
        where.append("occurred_at >= ?")
        params.append(flt.since)
    if flt.until is not None:
        where.append("occurred_at < ?")
        params.append(flt.until)
    if after is not None:
        where.append(f"(occurred_at, seq) {'<' if order == 'desc' else '>'} (?, ?)")
        params.extend(after)
    return where, params


def _statement(paths: list[str], flt: EventFilter, order: Order,
               after: tuple[datetime, int] | None, limit: int | None) -> tuple[str, list[Any]]:
    where, params = _where(flt, order, after)
    direction = "DESC" if order == "desc" else "ASC"
    # ip is filtered in Python (_within); a limit is applied after it. Columns are matched
    # by name: segments written with hash columns too read alike.
    statement = (
        "SELECT seq, occurred_at, canonical, ip"
        " FROM read_parquet(?, union_by_name = true) WHERE " + (" AND ".join(where) or "true")
        + f" ORDER BY occurred_at {direction}, seq {direction}"
    )
    if limit is not None and flt.ip is None:
        statement += f" LIMIT {int(limit)}"
    return statement, [paths, *params]


def _within(found: list[Any], network: IPNetwork | None) -> list[Any]:
    return [row for row in found
            if network is None or (row[3] is not None
                                   and ipaddress.ip_address(row[3]) in network)]


def _query(paths: list[str], flt: EventFilter, order: Order,
           after: tuple[datetime, int] | None, limit: int | None) -> list[Row]:
    statement, params = _statement(paths, flt, order, after, limit)
    with duckdb.connect() as db:
        db.execute("SET TimeZone = 'UTC'")
        found = db.execute(statement, params).fetchall()
    network = ipaddress.ip_network(flt.ip) if flt.ip is not None else None
    rows = _within(found, network)
    return rows[:limit] if limit is not None else rows


def _key(order: Order):  # type: ignore[no-untyped-def]
    if order == "desc":
        return lambda row: (-row[1].timestamp(), -row[0])
    return lambda row: (row[1].timestamp(), row[0])


def merge(hot: Iterable[Row], warm: Iterable[Row], order: Order) -> Iterator[Row]:
    """Hot and warm rows, each already in ``order``, interleaved by (occurred_at, seq)."""
    return heapq.merge(hot, warm, key=_key(order))


async def merge_async(hot: AsyncIterator[Row], warm: AsyncIterator[Row],
                      order: Order) -> AsyncIterator[Row]:
    """As :func:`merge`, for rows streamed from both tiers (a server-side cursor and
    :meth:`Warm.stream`), holding one row of each at a time."""
    key = _key(order)
    pending = await anext(warm, None)
    async for row in hot:
        while pending is not None and key(pending) <= key(row):
            yield pending
            pending = await anext(warm, None)
        yield row
    while pending is not None:
        yield pending
        pending = await anext(warm, None)
