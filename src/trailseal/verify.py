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
- forked      the log's tree differs from a witnessed checkpoint of the same size;
- archive damaged  a segment file in the write-once store is missing, or differs from
              its signed manifest or from the record of it (with ``archive``).

Events that left PostgreSQL through retention (their month's partition was dropped, so
each is in a verified segment: see ``trailseal.archive``) are not missing: without
``archive`` the tree check takes their recorded leaf hashes, and the hash chain resumes
from the segment's recorded last chain hash; with ``archive`` their rows are read from
the segment files, after each file's SHA-256 and signed manifest are checked, and
recomputed like any other.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

from psycopg import AsyncConnection

from trailseal.archive.segments import SegmentError, check_file, open_manifest
from trailseal.archive.worm import ObjectMissing, WormError, WormStore
from trailseal.integrity import leaf_hash as compute_leaf_hash
from trailseal.integrity.checkpoint import CheckpointError, open_checkpoint
from trailseal.integrity.hashing import HASH_SIZE
from trailseal.integrity.notes import NoteError, Verifier
from trailseal.integrity.recompute import Recomputed
from trailseal.integrity.tiles import TreeState
from trailseal.store import Role, scoped
from trailseal.verify_read import (
    EVENTS,
    EVENTS_JOINED,
    KEEP_MEMORY,
    TILES,
    Run,
    keep_memory,
    read_run,
    recompute_joined,
    recompute_rows,
    recorded_leaves,
    tile_span,
    with_previous,
)
from trailseal.witness import WormFolder, witnessed

log = logging.getLogger(__name__)

_WINDOW = 8  # rows looked at past a mismatch to tell reordering from insertion or deletion
_RUN = 8192  # rows read and recomputed together (a multiple of the tile width)
_PARALLEL_FROM = 100_000  # events from which worker processes pay for their start

class Kind(StrEnum):
    """The kinds of tampering ``verify`` tells apart."""

    ALTERED = "altered"
    DELETED = "deleted"
    INSERTED = "inserted"
    REORDERED = "reordered"
    TRUNCATED = "truncated"
    ROLLED_BACK = "rolled back"
    FORKED = "forked"
    ARCHIVE_DAMAGED = "archive damaged"


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
        """The recorded leaf hashes of seqs start .. start + count - 1, concatenated."""
        end = start + count
        tiles: list[tuple[int, bytes]] = []
        if start < min(end, self.edge_start):
            cur = await self.conn.execute(
                TILES, (self.tenant, *tile_span(start, min(end, self.edge_start)))
            )
            tiles = await cur.fetchall()
        return recorded_leaves(start, end, tiles, self.edge_start, self.edge)

    async def leaf(self, seq: int) -> bytes | None:
        return await self.leaves(seq, 1) or None


class _Gone(NamedTuple):
    """A segment whose events left PostgreSQL through retention."""

    first: int
    last: int
    chain_last: bytes
    key: str
    manifest: str
    sha256: bytes
    expired: bool


_Span = tuple[int, int, bytes | None, "_Gone | None"]  # lo, hi, chain before lo, gone segment


class _Runs:
    """Runs of rows read and recomputed in seq order: in this process, or, for a large
    log with a database URL at hand, in worker processes side by side (each on its own
    connection), handed back in seq order."""

    def __init__(self, conn: AsyncConnection, tenant: str, expected: _Expected,
                 database_url: str | None, workers: int | None, rows: int,
                 gone: Sequence[_Gone] = (), archive: _ArchiveSource | None = None) -> None:
        self.conn, self.tenant, self.expected, self.url = conn, tenant, expected, database_url
        self.gone, self.archive = list(gone), archive
        if workers is None:
            workers = (os.cpu_count() or 1) if rows >= _PARALLEL_FROM else 0
        self.pool = None
        if workers > 0 and database_url is not None:
            # Workers fork from a server that has imported their module once: a fresh
            # interpreter each (unlike a plain fork, nothing of this process's threads
            # or connections is inherited), and quick to start.
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["trailseal.verify_read"])
            self.pool = ProcessPoolExecutor(workers, mp_context=context)
        self.depth = 2 * workers

    async def __aenter__(self) -> _Runs:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)

    def _spans(self, start: int, end: int) -> list[_Span]:
        """[start, end) cut into runs: of at most _RUN rows in PostgreSQL (with the chain
        hash recorded before them when that row is gone), and whole gone segments."""
        spans: list[_Span] = []
        at, previous = start, None
        for gone in self.gone:
            if gone.last < at or gone.first >= end:
                continue
            for lo in range(at, max(at, gone.first), _RUN):
                spans.append((lo, min(lo + _RUN, gone.first), previous, None))
                previous = None
            spans.append((max(at, gone.first), min(gone.last + 1, end), None, gone))
            at, previous = gone.last + 1, gone.chain_last
        for lo in range(at, end, _RUN):
            spans.append((lo, min(lo + _RUN, end), previous, None))
            previous = None
        return spans

    async def over(self, start: int, end: int) -> AsyncIterator[Run]:
        spans = self._spans(start, end)
        if self.pool is None or self.url is None:
            if len(spans) > 1:  # the memory of one run kept for the next (KEEP_MEMORY)
                await self.conn.execute(KEEP_MEMORY)
                keep_memory()
            for span in spans:
                yield await self._read(span)
            return
        pending: deque[tuple[_Span, asyncio.Future[Run] | None]] = deque()
        queued = iter(spans)
        while True:
            for span in queued:
                if span[3] is None:
                    pending.append((span, self._hand_out(span)))
                    if len(pending) >= self.depth:
                        break
                    continue
                while pending:  # in seq order: what was handed out comes first
                    yield await self._take(pending)
                yield await self._read(span)
            if not pending:
                return
            yield await self._take(pending)

    def _hand_out(self, span: _Span) -> asyncio.Future[Run] | None:
        """The span given to a worker; None when the workers are gone (read it here)."""
        if self.pool is None or self.url is None:
            return None
        lo, hi, previous, _ = span
        try:
            return asyncio.get_running_loop().run_in_executor(
                self.pool, read_run, self.url, self.tenant, lo, hi,
                self.expected.edge_start, self.expected.edge, previous)
        except BrokenProcessPool:
            self._abandon()
            return None

    async def _take(self, pending: deque[tuple[_Span, asyncio.Future[Run] | None]]) -> Run:
        """The next run in seq order. If the pool broke (a worker was killed, or ran out
        of memory), what it held is read in this process, and so is the rest."""
        span, future = pending.popleft()
        if future is not None:
            try:
                return await future
            except BrokenProcessPool:
                self._abandon()
        return await self._read(span)

    def _abandon(self) -> None:
        if self.pool is not None:
            log.warning("a verify worker process died; going on in this process")
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None

    async def _read(self, span: _Span) -> Run:
        lo, hi, previous, gone = span
        if gone is not None:
            return await self._read_gone(lo, hi, gone)
        return await self._read_run(lo, hi, previous)

    async def _read_gone(self, start: int, end: int, gone: _Gone) -> Run:
        """A run of a segment whose events left PostgreSQL: read from its file when the
        archive is at hand, otherwise the recorded leaves taken as they are."""
        recorded = await self.expected.leaves(start, end - start)
        rows = None
        if self.archive is not None and not gone.expired:
            rows = await self.archive.rows(gone)
        if rows is None:
            return Run(start, len(recorded) // HASH_SIZE, start, None, None,
                        Recomputed(recorded, None, None, {}), archived=True)
        raw = [rows[0], *(r for r in rows[1:] if r[0] < end)]
        return recompute_rows(start, raw, recorded)._replace(archived=True)

    async def _read_run(self, start: int, end: int, previous: bytes | None = None) -> Run:
        recorded = await self.expected.leaves(start, end - start)
        async with self.conn.cursor(binary=True) as cur:
            await cur.execute(EVENTS_JOINED, (self.tenant, max(start - 1, 0), end))
            run = recompute_joined(start, await cur.fetchone(), recorded, previous)
            if run is not None:
                return run
            await cur.execute(EVENTS, (self.tenant, max(start - 1, 0), end))
            raw = await cur.fetchall()
        return recompute_rows(start, with_previous(raw, start, previous), recorded)


class _ArchiveSource:
    """Segment files read from the write-once store for ``verify``, each checked against
    its record and its signed manifest first; what is wrong with one is flagged."""

    def __init__(self, store: WormStore, verifiers: Sequence[Verifier], report: Report) -> None:
        self.store, self.verifiers, self.report = store, verifiers, report

    async def check(self, gone: _Gone) -> list[tuple[Any, ...]] | None:
        """The file's rows once it checks out (None, flagged, when it does not)."""
        try:
            data = await asyncio.to_thread(self.store.get, gone.key)
        except ObjectMissing:
            return self._damaged(gone, "the segment file is missing from the store")
        except WormError as exc:
            self.report.notes.append(f"segment {gone.first}-{gone.last} not read: {exc}")
            return None
        try:
            manifest = open_manifest(gone.manifest, self.verifiers)
            if (manifest.first_seq, manifest.last_seq, bytes.fromhex(manifest.sha256)) != (
                    gone.first, gone.last, gone.sha256):
                return self._damaged(gone, "the segment's record differs from its manifest")
            rows = await asyncio.to_thread(check_file, data, manifest)
        except (NoteError, SegmentError) as exc:
            return self._damaged(gone, f"segment {gone.first}-{gone.last}: {exc}")
        before = (gone.first - 1, b"", b"", bytes.fromhex(manifest.chain_before))
        return [before, *rows]

    async def rows(self, gone: _Gone) -> list[tuple[Any, ...]] | None:
        return await self.check(gone)

    def _damaged(self, gone: _Gone, detail: str) -> list[tuple[Any, ...]] | None:
        """Flag the segment; there are no rows to read from it."""
        self.report.flag(gone.first, Kind.ARCHIVE_DAMAGED, detail)
        return None


_SEGMENTS = """
SELECT s.first_seq, s.last_seq, s.chain_last, s.object_key, s.manifest, s.file_sha256,
       to_char(s.min_received_at AT TIME ZONE 'UTC', 'YYYY_MM'),
       EXISTS (SELECT 1 FROM trailseal.segment_events v WHERE v.tenant = s.tenant
               AND v.first_seq = s.first_seq AND v.kind = 'expired')
FROM trailseal.segments s WHERE s.tenant = %s ORDER BY s.first_seq
"""


async def _segments(conn: AsyncConnection, tenant: str) -> tuple[list[_Gone], list[_Gone]]:
    """The tenant's segments whose month's partition was dropped (their events left
    PostgreSQL through retention), and the others."""
    cur = await conn.execute(_SEGMENTS, (tenant,))
    gone: list[_Gone] = []
    hot: list[_Gone] = []
    for first, last, chain, key, note, sha, month, expired in await cur.fetchall():
        probe = await conn.execute("SELECT to_regclass(%s)", (f"trailseal.events_{month}",))
        exists = await probe.fetchone()
        segment = _Gone(first, last, bytes(chain), key, note, bytes(sha), expired)
        (hot if exists and exists[0] is not None else gone).append(segment)
    return gone, hot


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
    database_url: str | None = None,
    workers: int | None = None,
    archive: WormStore | None = None,
) -> Report:
    """Verify one tenant's log; ``conn`` must be allowed to act as the owner.

    With ``archive`` (the write-once store), every segment file is checked against its
    record and signed manifest, and events that left PostgreSQL are read from them.

    With ``database_url`` (the same database as ``conn``, also as an owner), a large log
    is read and recomputed by ``workers`` processes side by side (default: one per CPU
    from 100,000 events on; 0: none)."""
    report = Report(tenant)
    async with scoped(conn, Role.OWNER, tenant):
        await _verify(conn, tenant, verifiers, origin, witness, from_seq, progress,
                      database_url, workers, report, archive)
    return report


async def _verify(
    conn: AsyncConnection,
    tenant: str,
    verifiers: Sequence[Verifier],
    origin: str,
    witness: WormFolder | None,
    from_seq: int,
    progress: Callable[[int], None] | None,
    database_url: str | None,
    workers: int | None,
    report: Report,
    archive: WormStore | None = None,
) -> None:
    gone, hot = await _segments(conn, tenant)
    source = None
    if archive is not None:
        source = _ArchiveSource(archive, verifiers, report)
        for segment in hot:  # those still in PostgreSQL: the file is checked all the same
            if not segment.expired:
                await source.check(segment)
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
    tree = await _starting_point(from_seq, expected)
    roots: dict[int, bytes] = {}
    wanted_roots = set(checkpoints) | set(published)
    if tree.size in wanted_roots:
        roots[tree.size] = tree.root()

    cur = await conn.execute("SELECT max(seq) FROM trailseal.events WHERE tenant = %s", (tenant,))
    row = await cur.fetchone()
    end = max(row[0] + 1 if row and row[0] is not None else 0, head_size, latest)
    count = 0
    async with _Runs(conn, tenant, expected, database_url, workers, end - tree.size,
                     gone, source) as runs:
        async for run in runs.over(tree.size, end):
            bad = _take_run(run, tree, wanted_roots, roots, report)
            count = tree.size - from_seq
            if progress is not None:
                progress(count)
            if bad is not None and run.archived:
                report.flag(run.start + bad, Kind.ALTERED,
                            f"the archived event at seq {run.start + bad} differs from its "
                            "record")
            elif bad is not None:
                cur = await conn.execute(
                    EVENTS + " LIMIT %s", (tenant, run.start + bad, end + _WINDOW, _WINDOW + 1)
                )
                await _classify([_Row(*r) for r in await cur.fetchall()], expected, report)
            if report.finding is not None:
                break
    report.events = count
    if progress is not None:
        progress(count)
    _compare_roots(report, tree.size, roots, checkpoints, published, head_size, latest)


def _take_run(
    run: Run, tree: TreeState, wanted_roots: set[int], roots: dict[int, bytes], report: Report
) -> int | None:
    """Add a recomputed run to the tree, up to its first departure; return the index of
    a row that needs classifying, or None (a finding that needs none is flagged here)."""
    if run.rows == 0:
        return None  # a later run, or the end of the log, tells what is missing
    done = run.done
    if tree.size != run.start:  # an earlier run ended short
        last = (run.first_seq or run.start) - 1
        report.flag(tree.size, Kind.DELETED, f"seq {tree.size} to {last} missing")
        return None
    bad = min((i for i in (run.broken, done.first_bad_entry) if i is not None), default=None)
    good = run.rows if bad is None else bad
    if done.first_bad_chain is not None and done.first_bad_chain < good:
        _grow(tree, done.leaves[: done.first_bad_chain * HASH_SIZE], done.tile_roots,
              wanted_roots, roots)
        report.flag(tree.size, Kind.ALTERED, f"chain_hash at seq {tree.size} was changed")
        return None
    _grow(tree, done.leaves[: good * HASH_SIZE], done.tile_roots, wanted_roots, roots)
    if bad is not None and bad == run.broken and run.found is not None:
        seq, found = run.start + bad, run.found
        if found < seq:
            report.flag(found, Kind.INSERTED, f"a second event with seq {found}")
        else:
            report.flag(seq, Kind.DELETED, f"seq {seq} to {found - 1} missing")
        return None
    return bad


def _grow(tree: TreeState, leaves: bytes, tile_roots: dict[int, bytes],
          wanted: set[int], roots: dict[int, bytes]) -> None:
    """Append ``leaves`` (concatenated), keeping the root at every wanted size on the way."""
    base, at = tree.size, 0
    for size in sorted(s for s in wanted if base < s <= base + len(leaves) // HASH_SIZE):
        tree.extend(leaves[at : (size - base) * HASH_SIZE], tile_roots)
        at = (size - base) * HASH_SIZE
        roots[size] = tree.root()
    tree.extend(leaves[at:], tile_roots)


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


async def _starting_point(from_seq: int, expected: _Expected) -> TreeState:
    """The tree just before ``from_seq``, rebuilt from the recorded leaves (``--from``
    trusts the log before it as recorded)."""
    tree = TreeState()
    for start in range(0, from_seq, _RUN):
        recorded = await expected.leaves(start, min(_RUN, from_seq - start))
        tree.extend(recorded)
        if len(recorded) < min(_RUN, from_seq - start) * HASH_SIZE:
            break
    return tree
