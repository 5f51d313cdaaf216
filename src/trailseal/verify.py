"""``trailseal verify``: recompute a tenant's log from its stored events and compare it with
everything that was recorded or published about it.

One pass over the events in seq order recomputes each event's canonical bytes (parse and
re-canonicalise: the stored bytes must already be canonical), its leaf hash, the hash
chain and the Merkle tree (full tiles and roots). The result is compared with the stored
leaf hashes, chain hashes and tiles; with every stored checkpoint, whose signatures must
verify; and with the checkpoints witnessed outside the database. The first departure is
named by seq and kind:

- altered     an event's bytes or hashes differ from what was sequenced;
- deleted     an event is missing from the middle of the log;
- inserted    an event was added that was never sequenced;
- reordered   events sit at other seqs than the ones they were sequenced at;
- truncated   events are missing at the end, though the log's own records count them;
- rolled back the database is older than a checkpoint published outside it;
- forked      the log's tree differs from a witnessed checkpoint of the same size.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

from psycopg import AsyncConnection

from trailseal.integrity import GENESIS_CHAIN_HASH
from trailseal.integrity import leaf_hash as compute_leaf_hash
from trailseal.integrity.checkpoint import CheckpointError, open_checkpoint
from trailseal.integrity.notes import NoteError, Verifier
from trailseal.integrity.recompute import Recomputed, recompute
from trailseal.integrity.tiles import TILE_WIDTH, TreeState
from trailseal.store import Role, scoped
from trailseal.witness import WormFolder, witnessed

_WINDOW = 8  # rows looked at past a mismatch to tell reordering from insertion or deletion
_RUN = 4096  # rows fetched and recomputed together (a multiple of the tile width)
_PARALLEL_FROM = 100_000  # rows from which other processes pay for their start


class Kind(StrEnum):
    """The kinds of tampering ``verify`` tells apart."""

    ALTERED = "altered"
    DELETED = "deleted"
    INSERTED = "inserted"
    REORDERED = "reordered"
    TRUNCATED = "truncated"
    ROLLED_BACK = "rolled back"
    FORKED = "forked"


@dataclass(frozen=True)
class Finding:
    """The first departure found: where, what kind, and why."""

    seq: int
    kind: Kind
    detail: str


@dataclass
class Report:
    """The outcome for one tenant."""

    tenant: str
    events: int = 0
    checkpoints: int = 0
    witnessed: int = 0
    finding: Finding | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.finding is None

    def flag(self, seq: int, kind: Kind, detail: str) -> None:
        """Keep the earliest finding by seq."""
        if self.finding is None or seq < self.finding.seq:
            self.finding = Finding(seq, kind, detail)


class _Row(NamedTuple):
    seq: int
    canonical: bytes
    leaf_hash: bytes
    chain_hash: bytes


class _Expected:
    """Leaf hashes as the sequencer recorded them (level-0 tiles and the right edge), to
    tell apart the kinds of departure. Not trusted as evidence: the recomputed tree is
    what is compared with signed checkpoints."""

    def __init__(self, conn: AsyncConnection, tenant: str, edge: list[bytes], size: int) -> None:
        self.conn = conn
        self.tenant = tenant
        self.edge = b"".join(edge)
        self.edge_start = size - len(edge)

    async def leaves(self, start: int, count: int) -> bytes:
        """The recorded leaf hashes of seqs start .. start + count - 1, concatenated;
        shorter where the record ends."""
        end = start + count
        parts: list[bytes] = []
        tiles_end = min(end, self.edge_start)
        if start < tiles_end:
            first, last = start // TILE_WIDTH, (tiles_end - 1) // TILE_WIDTH
            cur = await self.conn.execute(
                "SELECT idx, hashes FROM trailseal.tiles"
                " WHERE tenant = %s AND level = 0 AND idx BETWEEN %s AND %s ORDER BY idx",
                (self.tenant, first, last),
            )
            recorded = b""
            for idx, hashes in await cur.fetchall():
                if idx != first + len(recorded) // (TILE_WIDTH * 32):
                    break  # a missing tile ends what is recorded
                recorded += bytes(hashes)
            offset = (start - first * TILE_WIDTH) * 32
            parts.append(recorded[offset : offset + (tiles_end - start) * 32])
            if len(parts[0]) < (tiles_end - start) * 32:
                return parts[0]
        if end > self.edge_start:
            lo = max(start, self.edge_start) - self.edge_start
            parts.append(self.edge[lo * 32 : (end - self.edge_start) * 32])
        return b"".join(parts)

    async def leaf(self, seq: int) -> bytes | None:
        return await self.leaves(seq, 1) or None


async def _classify(
    rows: list[_Row], expected: _Expected, report: Report
) -> None:
    """Name the kind of the first mismatch, at rows[0], from a few rows after it."""
    first = rows[0].seq
    got = [compute_leaf_hash(r.canonical) for r in rows]
    want = [await expected.leaf(first + i) for i in range(len(rows) + 1)]
    if len(got) > 1 and got[0] == want[1] and got[1] == want[0]:
        report.flag(first, Kind.REORDERED, f"events at seq {first} and {first + 1} swapped")
    elif got[0] == want[1]:
        report.flag(first, Kind.DELETED, f"the event sequenced at {first} is gone")
    elif len(got) > 1 and got[1] == want[0]:
        report.flag(first, Kind.INSERTED, f"an event never sequenced sits at {first}")
    elif got[0] in want or want[0] in got:
        report.flag(first, Kind.REORDERED, f"the event at seq {first} was sequenced elsewhere")
    else:
        report.flag(first, Kind.ALTERED, f"the event at seq {first} differs from its record")


async def verify_tenant(
    conn: AsyncConnection,
    tenant: str,
    verifiers: Sequence[Verifier],
    *,
    origin: str,
    witness: WormFolder | None = None,
    from_seq: int = 0,
    progress: Callable[[int], None] | None = None,
) -> Report:
    """Verify one tenant's log; ``conn`` must be allowed to act as the owner."""
    report = Report(tenant)
    async with scoped(conn, Role.OWNER, tenant):
        await _verify(conn, tenant, verifiers, origin, witness, from_seq, progress, report)
    return report


async def _verify(
    conn: AsyncConnection,
    tenant: str,
    verifiers: Sequence[Verifier],
    origin: str,
    witness: WormFolder | None,
    from_seq: int,
    progress: Callable[[int], None] | None,
    report: Report,
) -> None:
    cur = await conn.execute(
        "SELECT size, tree_size, edge FROM trailseal.log_heads WHERE tenant = %s", (tenant,)
    )
    head = await cur.fetchone()
    head_size = head[0] if head else 0
    recorded = TreeState.from_bytes(head[1], bytes(head[2])) if head else TreeState()

    # Checkpoints in the database: each must be signed by a known key, for this origin.
    cur = await conn.execute(
        "SELECT size, root, note FROM trailseal.checkpoints WHERE tenant = %s ORDER BY size",
        (tenant,),
    )
    checkpoints: dict[int, bytes] = {}
    for size, root, note in await cur.fetchall():
        report.checkpoints += 1
        try:
            opened = open_checkpoint(note, verifiers)
        except (NoteError, CheckpointError) as exc:
            report.flag(max(size - 1, 0), Kind.ALTERED, f"checkpoint of size {size}: {exc}")
            continue
        if (opened.origin, opened.size, opened.root_hash) != (origin, size, bytes(root)):
            report.flag(max(size - 1, 0), Kind.ALTERED,
                        f"checkpoint of size {size} does not match its signed note")
            continue
        checkpoints[size] = opened.root_hash
    latest = max(checkpoints, default=0)

    # Checkpoints witnessed outside the database.
    published: dict[int, bytes] = {}
    for size, note in witnessed(witness, tenant) if witness else []:
        try:
            opened = open_checkpoint(note, verifiers)
        except (NoteError, CheckpointError) as exc:
            report.notes.append(f"witnessed checkpoint of size {size} ignored: {exc}")
            continue
        if opened.origin == origin and opened.size == size:
            published[size] = opened.root_hash
            report.witnessed += 1

    expected = _Expected(conn, tenant, recorded.edge[0] if recorded.edge else [], recorded.size)
    tree, chain, count = await _starting_point(conn, tenant, from_seq, expected)
    roots: dict[int, bytes] = {}
    wanted_roots = set(checkpoints) | set(published)
    if tree.size in wanted_roots:
        roots[tree.size] = tree.root()

    async with conn.cursor(name="trailseal_verify", binary=True) as rows_cur:
        rows_cur.itersize = _RUN
        await rows_cur.execute(
            "SELECT seq, canonical, leaf_hash, chain_hash FROM trailseal.events"
            " WHERE tenant = %s AND seq >= %s ORDER BY seq",
            (tenant, from_seq),
        )
        async with _Recomputer(max(head_size, latest) - from_seq) as recomputer:
            runs: deque[tuple[list[_Row], asyncio.Future[Recomputed]]] = deque()
            previous = chain
            while True:
                while len(runs) < recomputer.depth:
                    rows = [_Row(*raw) for raw in await rows_cur.fetchmany(_RUN)]
                    if not rows:
                        break
                    runs.append((rows, recomputer.submit(rows, previous)))
                    previous = rows[-1].chain_hash
                if not runs:
                    break
                rows, future = runs.popleft()
                bad = await _take_run(rows, await future, tree, expected, wanted_roots, roots,
                                      report)
                count = tree.size - from_seq
                if progress is not None:
                    progress(count)
                if bad is not None:
                    window = rows[bad:]
                    for later, _ in runs:
                        window.extend(later)
                    while len(window) <= _WINDOW:
                        more = await rows_cur.fetchmany(_WINDOW)
                        if not more:
                            break
                        window.extend(_Row(*raw) for raw in more)
                    await _classify(window[: _WINDOW + 1], expected, report)
                    break
                if report.finding is not None:
                    break
    report.events = count
    if progress is not None:
        progress(count)
    _compare_roots(report, tree.size, roots, checkpoints, published, head_size, latest)


async def _take_run(
    rows: list[_Row],
    done: Recomputed,
    tree: TreeState,
    expected: _Expected,
    wanted_roots: set[int],
    roots: dict[int, bytes],
    report: Report,
) -> int | None:
    """Add a recomputed run to the tree, up to its first departure; return the index of
    a row that needs classifying, or None (a finding that needs none is flagged here)."""
    start = tree.size
    seqs = [row.seq for row in rows]
    broken = None
    if seqs != list(range(start, start + len(rows))):
        broken = next(i for i, seq in enumerate(seqs) if seq != start + i)
    recorded = await expected.leaves(start, len(rows))
    unexpected = None
    if b"".join(done.leaves) != recorded:
        unexpected = next(
            i for i, leaf in enumerate(done.leaves) if leaf != recorded[i * 32 : i * 32 + 32]
        )
    stops = [i for i in (broken, done.first_bad_entry, unexpected) if i is not None]
    bad = min(stops, default=None)
    good = len(rows) if bad is None else bad
    if done.first_bad_chain is not None and done.first_bad_chain < good:
        good = bad = done.first_bad_chain
        _grow(tree, done.leaves[:good], wanted_roots, roots)
        report.flag(start + good, Kind.ALTERED, f"chain_hash at seq {start + good} was changed")
        return None
    _grow(tree, done.leaves[:good], wanted_roots, roots)
    if bad is not None and bad == broken:
        seq, found = start + bad, seqs[bad]
        if found < seq:
            report.flag(found, Kind.INSERTED, f"a second event with seq {found}")
        else:
            report.flag(seq, Kind.DELETED, f"seq {seq} to {found - 1} missing")
        return None
    return bad


def _grow(tree: TreeState, leaves: list[bytes], wanted: set[int], roots: dict[int, bytes]) -> None:
    """Append ``leaves``, keeping the root at every wanted size on the way."""
    base, at = tree.size, 0
    for size in sorted(size for size in wanted if base < size <= base + len(leaves)):
        tree.extend(leaves[at : size - base])
        at = size - base
        roots[size] = tree.root()
    tree.extend(leaves[at:])


class _Recomputer:
    """Recomputes runs of rows, in other processes when the log is large enough to pay
    for starting them, else inline; results come back in submission order."""

    def __init__(self, rows: int) -> None:
        workers = os.cpu_count() or 1
        self.pool = (
            ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
            if workers > 1 and rows >= _PARALLEL_FROM else None
        )
        self.depth = 2 * workers if self.pool else 1

    async def __aenter__(self) -> _Recomputer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)

    def submit(self, rows: list[_Row], previous: bytes) -> asyncio.Future[Recomputed]:
        args = ([r.canonical for r in rows], [r.leaf_hash for r in rows],
                [r.chain_hash for r in rows], previous)
        loop = asyncio.get_running_loop()
        if self.pool is None:
            future: asyncio.Future[Recomputed] = loop.create_future()
            future.set_result(recompute(*args))
            return future
        return asyncio.wrap_future(self.pool.submit(recompute, *args))


def _compare_roots(
    report: Report,
    size: int,
    roots: dict[int, bytes],
    checkpoints: dict[int, bytes],
    published: dict[int, bytes],
    head_size: int,
    latest: int,
) -> None:
    last_good = 0
    for at in sorted(checkpoints):
        if at in roots and roots[at] != checkpoints[at]:
            report.flag(last_good, Kind.ALTERED,
                        f"the recomputed tree of size {at} does not match its checkpoint")
            break
        if at in roots:
            last_good = at
    if report.finding is None and size < max(head_size, latest):
        report.flag(size, Kind.TRUNCATED,
                    f"the log records {max(head_size, latest)} events; {size} are present")
    last_match = 0
    for at in sorted(published):
        if at > max(size, latest):
            report.flag(max(size, latest), Kind.ROLLED_BACK,
                        f"a checkpoint of size {at} was published; the database is older")
            break
        if at in checkpoints and checkpoints[at] != published[at]:
            report.flag(last_match, Kind.FORKED,
                        f"the checkpoint of size {at} differs from the one witnessed")
            break
        if at in roots and roots[at] != published[at]:
            report.flag(last_match, Kind.FORKED,
                        f"the tree of size {at} differs from the witnessed checkpoint")
            break
        last_match = at


async def _starting_point(
    conn: AsyncConnection, tenant: str, from_seq: int, expected: _Expected
) -> tuple[TreeState, bytes, int]:
    """The tree and chain just before ``from_seq``: rebuilt from the recorded leaves
    (``--from`` trusts the log before it as recorded)."""
    tree = TreeState()
    if from_seq == 0:
        return tree, GENESIS_CHAIN_HASH, 0
    for start in range(0, from_seq, _RUN):
        recorded = await expected.leaves(start, min(_RUN, from_seq - start))
        tree.extend(recorded[i : i + 32] for i in range(0, len(recorded), 32))
        if len(recorded) < min(_RUN, from_seq - start) * 32:
            break
    cur = await conn.execute(
        "SELECT chain_hash FROM trailseal.events WHERE tenant = %s AND seq = %s",
        (tenant, from_seq - 1),
    )
    row = await cur.fetchone()
    return tree, bytes(row[0]) if row else GENESIS_CHAIN_HASH, 0
