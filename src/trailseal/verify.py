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

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from psycopg import AsyncConnection

from trailseal.integrity import GENESIS_CHAIN_HASH
from trailseal.integrity import chain_hash as next_chain_hash
from trailseal.integrity import leaf_hash as compute_leaf_hash
from trailseal.integrity.canonical import is_canonical
from trailseal.integrity.checkpoint import CheckpointError, open_checkpoint
from trailseal.integrity.notes import NoteError, Verifier
from trailseal.integrity.tiles import TILE_WIDTH, TreeState
from trailseal.store import Role, scoped
from trailseal.witness import WormFolder, witnessed

_WINDOW = 8  # rows looked at past a mismatch to tell reordering from insertion or deletion


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


@dataclass(frozen=True)
class _Row:
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
        self.edge = edge
        self.edge_start = size - len(edge)
        self.tiles: dict[int, bytes] = {}

    async def leaf(self, seq: int) -> bytes | None:
        if seq >= self.edge_start:
            index = seq - self.edge_start
            return self.edge[index] if index < len(self.edge) else None
        tile = seq // TILE_WIDTH
        if tile not in self.tiles:
            cur = await self.conn.execute(
                "SELECT hashes FROM trailseal.tiles WHERE tenant = %s AND level = 0 AND idx = %s",
                (self.tenant, tile),
            )
            row = await cur.fetchone()
            self.tiles = {tile: bytes(row[0]) if row else b""}
        data = self.tiles[tile]
        offset = (seq % TILE_WIDTH) * 32
        return data[offset : offset + 32] or None


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

    async with conn.cursor(name="trailseal_verify") as rows_cur:
        rows_cur.itersize = 5000
        await rows_cur.execute(
            "SELECT seq, canonical, leaf_hash, chain_hash FROM trailseal.events"
            " WHERE tenant = %s AND seq >= %s ORDER BY seq",
            (tenant, from_seq),
        )
        pending: list[_Row] = []
        async for raw in rows_cur:
            row = _Row(raw[0], bytes(raw[1]), bytes(raw[2]), bytes(raw[3]))
            if pending:  # gathering rows after a mismatch
                pending.append(row)
                if len(pending) > _WINDOW:
                    break
                continue
            seq = tree.size
            if row.seq < seq:
                report.flag(row.seq, Kind.INSERTED, f"a second event with seq {row.seq}")
                break
            if row.seq > seq:
                report.flag(seq, Kind.DELETED, f"seq {seq} to {row.seq - 1} missing")
                break
            leaf = compute_leaf_hash(row.canonical)
            if (
                leaf != row.leaf_hash
                or not is_canonical(row.canonical)
                or leaf != await expected.leaf(seq)
            ):
                pending.append(row)
                continue
            chain = next_chain_hash(chain, leaf)
            if chain != row.chain_hash:
                report.flag(seq, Kind.ALTERED, f"chain_hash at seq {seq} was changed")
                break
            tree.append(leaf)
            count += 1
            if tree.size in wanted_roots:
                roots[tree.size] = tree.root()
            if progress is not None and count % 10_000 == 0:
                progress(count)
        if pending:
            await _classify(pending, expected, report)
    report.events = count
    if progress is not None:
        progress(count)
    _compare_roots(report, tree.size, roots, checkpoints, published, head_size, latest)


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
    for seq in range(from_seq):
        leaf = await expected.leaf(seq)
        if leaf is None:
            break
        tree.append(leaf)
    cur = await conn.execute(
        "SELECT chain_hash FROM trailseal.events WHERE tenant = %s AND seq = %s",
        (tenant, from_seq - 1),
    )
    row = await cur.fetchone()
    return tree, bytes(row[0]) if row else GENESIS_CHAIN_HASH, 0
