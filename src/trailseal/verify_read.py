"""Reading a run of a tenant's events for ``trailseal verify``, and recomputing it.

The part of ``trailseal.verify`` that worker processes run: kept apart, and light to
import, so that a worker starts quickly (they fork from a server that imports this
module once). Reads go through the connection handed in, or the worker's own.
"""

from __future__ import annotations

import gc
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import psycopg

from trailseal.integrity.hashing import GENESIS_CHAIN_HASH, HASH_SIZE
from trailseal.integrity.recompute import Recomputed, recompute
from trailseal.integrity.tiles import TILE_WIDTH

OWNER_ROLE = "trailseal_owner"  # trailseal.store.Role.OWNER, without importing the store

EVENTS = (
    "SELECT seq, canonical, leaf_hash, chain_hash FROM trailseal.events"
    " WHERE tenant = %s AND seq >= %s AND seq < %s ORDER BY seq"
)
# The same rows, each column joined into one value: the entries by newlines (which no
# canonical entry holds), seqs as 8-byte big-endian integers. One value per column, not
# one row per event, is what makes reading a run cheap; rows that are not regular
# (missing, doubled, out of order, an entry holding a newline) are read row by row.
EVENTS_JOINED = (
    "SELECT string_agg(int8send(seq), ''), string_agg(canonical, '\\x0a'::bytea),"
    " string_agg(leaf_hash, ''), string_agg(chain_hash, '') FROM (" + EVENTS + ") run"
)
TILES = (
    "SELECT idx, hashes FROM trailseal.tiles"
    " WHERE tenant = %s AND level = 0 AND idx BETWEEN %s AND %s ORDER BY idx"
)


def recorded_leaves(
    start: int, end: int, tiles: list[tuple[int, bytes]], edge_start: int, edge: bytes
) -> bytes:
    """The recorded leaf hashes of seqs start .. end - 1, concatenated, from the level-0
    tiles that cover them (``tiles``: index and hashes, in order) and the right edge
    (the partial tile from ``edge_start``); shorter where the record ends."""
    tiles_end = min(end, edge_start)
    joined = b""
    if start < tiles_end:
        first = start // TILE_WIDTH
        for idx, hashes in tiles:
            if idx != first + len(joined) // (TILE_WIDTH * 32):
                break  # a missing tile ends what is recorded
            joined += bytes(hashes)
        offset = (start - first * TILE_WIDTH) * 32
        joined = joined[offset : offset + (tiles_end - start) * 32]
        if len(joined) < (tiles_end - start) * 32:
            return joined
    if end > edge_start:
        lo = max(start, edge_start) - edge_start
        joined += edge[lo * 32 : (end - edge_start) * 32]
    return joined


def tile_span(start: int, end: int) -> tuple[int, int]:
    return start // TILE_WIDTH, (end - 1) // TILE_WIDTH


class Run(NamedTuple):
    """What the rows read for seqs [start, start + _RUN) recompute to."""

    start: int
    rows: int  # rows found
    first_seq: int | None
    broken: int | None  # the first row whose seq is not start + its index
    found: int | None  # that row's seq
    done: Recomputed
    archived: bool = False  # read from a segment file, or taken from the record


def with_previous(raw: list[tuple[Any, ...]], start: int,
                   previous: bytes | None) -> list[tuple[Any, ...]]:
    """``raw`` with a stand-in for the row before ``start`` carrying ``previous`` (the
    chain hash recorded for it), when that row left PostgreSQL."""
    if previous is None or (raw and raw[0][0] == start - 1):
        return raw
    return [(start - 1, b"", b"", previous), *raw]


def recompute_rows(start: int, raw: list[tuple[Any, ...]], recorded: bytes) -> Run:
    """Recompute the rows read for seq >= start - 1 (in seq order): those from ``start``
    on, chaining from the chain hash of the one before."""
    cut = next((i for i, row in enumerate(raw) if row[0] >= start), len(raw))
    previous = raw[cut - 1][3] if cut else GENESIS_CHAIN_HASH
    columns: list[list[Any]] = [list(c) for c in zip(*raw[cut:], strict=True)] or [[]] * 4
    seqs, entries, leaves, chains = columns
    broken = found = None
    if seqs != list(range(start, start + len(seqs))):
        broken = next(i for i, seq in enumerate(seqs) if seq != start + i)
        found = seqs[broken]
    done = recompute(entries, _joined(leaves), _joined(chains), previous, recorded, start)
    return Run(start, len(seqs), seqs[0] if seqs else None, broken, found, done)


def _joined(hashes: list[bytes]) -> bytes:
    """Stored hashes concatenated, each of the wrong length (which only tampering past
    the table's constraints leaves) in the place of one that matches nothing: all zero
    bytes, which no SHA-256 output is but with odds of 2**-256."""
    return b"".join(h if len(h) == HASH_SIZE else bytes(HASH_SIZE) for h in hashes)


def recompute_joined(start: int, joined: tuple[Any, ...] | None, recorded: bytes,
                      previous: bytes | None) -> Run | None:
    """Recompute the rows read for seq >= start - 1 as ``EVENTS_JOINED`` gives them;
    None unless they are regular: consecutive seqs from start - 1 (from start when
    ``previous``, the chain hash before it, is given, or start is 0), one entry, leaf
    hash and chain hash each."""
    if joined is None or joined[0] is None:
        return None
    seqs, entries, leaves, chains = (bytes(column) for column in joined)
    count = len(seqs) // 8
    first = int.from_bytes(seqs[:8], "big", signed=True)
    if (
        first != (start if previous is not None or start == 0 else start - 1)
        or seqs != struct.pack(f">{count}q", *range(first, first + count))
        or not len(leaves) == len(chains) == count * HASH_SIZE
    ):
        return None
    split = entries.split(b"\n")
    if len(split) != count:
        return None
    if first < start:  # the row before the run: only its chain hash is wanted
        previous = chains[:HASH_SIZE]
        split, leaves, chains = split[1:], leaves[HASH_SIZE:], chains[HASH_SIZE:]
        count -= 1
    if count == 0:
        return None
    with _gc_paused():
        done = recompute(split, leaves, chains, previous or GENESIS_CHAIN_HASH, recorded,
                         start)
    return Run(start, count, start, None, None, done)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic garbage collector held off: recomputing a run makes many short-lived
    objects and no cycles, and a collection pass over them is wasted work."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


# With glibc's malloc, a block above its mapping threshold (128 KiB at first) is mapped
# from the system on its own and unmapped when freed, and free memory above its trim
# threshold at the top of the heap is given back; both thresholds rise (to the block's
# size, and twice that) only when such a mapped block, of at most 32 MiB, is freed. A
# run's values are megabytes, built, copied and freed on every run by the PostgreSQL
# backend and by the reading process, so at the first thresholds every run had that
# memory mapped and faulted in afresh, a page at a time (about 450 faults per 1,000
# events in the backend). One block of 30 MB made and freed first, on each side, raises
# both thresholds for the connection's life. With another allocator it is one statement
# and one allocation, harmless.
KEEP_MEMORY = "SELECT length(repeat('x', 30000000))"


def keep_memory() -> None:
    """This process's side of ``KEEP_MEMORY``."""
    block = bytearray(30_000_000)
    del block


_worker_connection: psycopg.Connection[Any] | None = None


def read_run(url: str, tenant: str, start: int, end: int,
                        edge_start: int, edge: bytes, previous: bytes | None = None) -> Run:
    """One run read and recomputed in a worker process, on a connection of its own."""
    global _worker_connection
    if _worker_connection is None:
        _worker_connection = psycopg.connect(url)
        _worker_connection.execute(KEEP_MEMORY)
        _worker_connection.commit()
        keep_memory()
    conn = _worker_connection
    with conn.transaction(), conn.cursor(binary=True) as cur:
        cur.execute(
            "SELECT set_config('role', %s, true), set_config('trailseal.tenant', %s, true)",
            (OWNER_ROLE, tenant),
        )
        tiles: list[tuple[int, bytes]] = []
        if start < min(end, edge_start):
            cur.execute(TILES, (tenant, *tile_span(start, min(end, edge_start))))
            tiles = cur.fetchall()
        recorded = recorded_leaves(start, end, tiles, edge_start, edge)
        cur.execute(EVENTS_JOINED, (tenant, max(start - 1, 0), end))
        run = recompute_joined(start, cur.fetchone(), recorded, previous)
        if run is not None:
            return run
        cur.execute(EVENTS, (tenant, max(start - 1, 0), end))
        raw = cur.fetchall()
    return recompute_rows(start, with_previous(raw, start, previous), recorded)


