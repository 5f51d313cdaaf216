"""Reading a tenant's Merkle tree: checkpoints, C2SP tiles and entry bundles, proofs,
receipts.

Full tiles come from ``tiles``; the partial tiles of the right edge from ``log_heads``
(both written by the sequencer in one transaction, and read here in one transaction, so
they always describe the same tree). Proofs are planned by the pure core, which names the
nodes it needs; since a plan depends only on the request, the API plans first and
:func:`open_tree` reads the head and every full tile those nodes lie in with one
statement, then hands the hashes back.

A full tile never changes once written, so a process may keep it: a :class:`TileCache`
(one per API process, on the app) holds recently read full tiles, and a proof whose
tiles are all held, or at the right edge, reads nothing but the tree's head. A kept
tile also keeps the nodes inside it once a proof has asked for one, so a node of a full
tile is a lookup, not a rehash.
"""

from __future__ import annotations

import base64
import uuid
from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from trailseal.errors import OutOfRange
from trailseal.integrity.hashing import tree_levels
from trailseal.integrity.proofs import (
    NodeID,
    ProofPlan,
    assemble,
    plan_consistency,
    plan_inclusion,
)
from trailseal.integrity.tiles import TILE_WIDTH, TreeState, subtree_root, tile_for_node
from trailseal.reading.query import get_event
from trailseal.store import Role, scoped

HASH = 32
TILE_CACHE_TILES = 4096
"""Full tiles a process keeps by default: 32 MiB of hashes, 64 MiB with their nodes."""

TileKey = tuple[str, int, int]


class FullTile:
    """A full tile's hashes and, once a proof asks, every node inside it (the tile's
    256 hashes, their 128 parents, ... up to its root), so a node is a lookup."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self._nodes: bytes | None = None  # the levels above the hashes, concatenated

    def node(self, offset: int, count: int) -> bytes:
        """The root of the perfect subtree over hashes ``offset .. offset + count``."""
        if count == 1:
            return self.data[offset * HASH : (offset + 1) * HASH]
        if self._nodes is None:
            self._nodes = tree_levels(self.data)
        # Level k (count 2**k) starts after the levels below it: 128 + 64 + ... hashes.
        width = len(self.data) // HASH
        at = (width - width // (count // 2)) + offset // count
        return self._nodes[at * HASH : (at + 1) * HASH]


class TileCache:
    """Full tiles by (tenant, level, index), the least recently used dropped first."""

    def __init__(self, capacity: int = TILE_CACHE_TILES) -> None:
        self.capacity = capacity
        self._tiles: OrderedDict[TileKey, FullTile] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        return key in self._tiles

    def __len__(self) -> int:
        return len(self._tiles)

    def get(self, key: TileKey) -> FullTile | None:
        found = self._tiles.get(key)
        if found is not None:
            self._tiles.move_to_end(key)
        return found

    def put(self, key: TileKey, tile: FullTile) -> None:
        self._tiles[key] = tile
        self._tiles.move_to_end(key)
        while len(self._tiles) > self.capacity:
            self._tiles.popitem(last=False)


@dataclass(frozen=True)
class CheckpointRow:
    """A signed checkpoint as stored."""

    size: int
    root: bytes
    note: str


class Tree:
    """One tenant's tree as of one reader transaction."""

    def __init__(self, conn: AsyncConnection, tenant: str, state: TreeState,
                 cache: TileCache | None = None) -> None:
        self.conn = conn
        self.tenant = tenant
        self.state = state
        self.cache = cache if cache is not None else TileCache(0)
        self.read: dict[tuple[int, int], FullTile] = {}  # read with the head

    @property
    def size(self) -> int:
        return self.state.size

    async def tile(self, level: int, index: int, width: int) -> bytes | None:
        """The first ``width`` hashes of tile (level, index), or None if the tree does not
        have that many yet."""
        if self._at_edge(level, index):
            edge = self.state.edge[level]
            return b"".join(edge[:width]) if width <= len(edge) else None
        full = await self._full_tiles([(level, index)])
        found = full.get((level, index))
        return None if found is None else found.data[: width * HASH]

    def _at_edge(self, level: int, index: int) -> bool:
        """Whether tile (level, index) is the partial one at the right edge (never full:
        a full tile's leaves all lie below the tree's size)."""
        return level < len(self.state.edge) and index == self.size // TILE_WIDTH ** (level + 1)

    async def _full_tiles(self, keys: list[tuple[int, int]]) -> dict[tuple[int, int], FullTile]:
        """The full tiles among ``keys``: from the cache, the rest in one query."""
        found: dict[tuple[int, int], FullTile] = {}
        missing: list[tuple[int, int]] = []
        for level, index in keys:
            held = self.read.get((level, index)) or self.cache.get((self.tenant, level, index))
            if held is None:
                missing.append((level, index))
            else:
                found[(level, index)] = held
        if missing:
            cur = await self.conn.execute(
                "SELECT t.level, t.idx, t.hashes FROM trailseal.tiles t"
                " JOIN unnest(%b::smallint[], %b::bigint[]) AS w(level, idx)"
                " ON t.level = w.level AND t.idx = w.idx WHERE t.tenant = %s",
                ([k[0] for k in missing], [k[1] for k in missing], self.tenant), binary=True,
            )
            for level, index, hashes in await cur.fetchall():
                tile = FullTile(bytes(hashes))
                found[(level, index)] = tile
                self.cache.put((self.tenant, level, index), tile)
        return found

    async def entries(self, index: int, width: int) -> bytes | None:
        """The C2SP entry bundle of tile ``index``: each event's canonical bytes after a
        big-endian uint16 length. None if the log does not hold ``width`` of them."""
        first = index * TILE_WIDTH
        if first + width > self.size:
            return None
        cur = await self.conn.execute(
            "SELECT canonical FROM trailseal.events WHERE tenant = %s AND seq >= %s"
            " AND seq < %s ORDER BY seq",
            (self.tenant, first, first + width), binary=True,
        )
        rows = await cur.fetchall()
        if len(rows) != width:
            return None
        return b"".join(len(r[0]).to_bytes(2, "big") + bytes(r[0]) for r in rows)

    async def node_hashes(self, nodes: list[NodeID]) -> dict[NodeID, bytes]:
        """The hashes of perfect subtrees, read from the tiles that hold them."""
        wanted: dict[tuple[int, int], list[tuple[NodeID, int, int]]] = defaultdict(list)
        for node in nodes:
            level, index, offset, count = tile_for_node(node)
            wanted[(level, index)].append((node, offset, count))
        full = await self._full_tiles([k for k in wanted if not self._at_edge(*k)])
        found: dict[NodeID, bytes] = {}
        for (level, index), parts in wanted.items():
            if self._at_edge(level, index):
                hashes = self.state.edge[level]
                for node, offset, count in parts:
                    found[node] = subtree_root(hashes[offset : offset + count])
            elif (level, index) in full:
                tile = full[(level, index)]
                for node, offset, count in parts:
                    found[node] = tile.node(offset, count)
            else:
                raise OutOfRange(f"the tree has no tile {level}/{index}")
        return found

    def _check_size(self, size: int, name: str) -> None:
        if not 1 <= size <= self.size:
            raise OutOfRange(f"{name} must be between 1 and the log's size, {self.size}")

    async def inclusion_proof(self, index: int, size: int,
                              plan: ProofPlan | None = None) -> list[bytes]:
        """The RFC 6962 inclusion proof of leaf ``index`` in the tree of ``size``
        (``plan``: its plan, when the caller made it already)."""
        self._check_size(size, "size")
        if not 0 <= index < size:
            raise OutOfRange(f"index must be between 0 and size - 1, {size - 1}")
        plan = plan or plan_inclusion(index, size)
        return assemble(plan, await self.node_hashes(plan.node_ids()))

    async def consistency_proof(self, size1: int, size2: int,
                                plan: ProofPlan | None = None) -> list[bytes]:
        """The RFC 6962 consistency proof from the tree of ``size1`` to that of ``size2``
        (``plan``: as for :meth:`inclusion_proof`)."""
        self._check_size(size2, "to")
        if not 1 <= size1 <= size2:
            raise OutOfRange(f"from must be between 1 and to, {size2}")
        plan = plan or plan_consistency(size1, size2)
        return assemble(plan, await self.node_hashes(plan.node_ids()))


_MAX_SIZE = 1 << 63  # a tree size PostgreSQL's bigint can hold


def inclusion_plan(index: int, size: int) -> ProofPlan | None:
    """The plan of the inclusion proof of ``index`` in the tree of ``size``; None for
    numbers no tree here has (the proof refuses them with its own message)."""
    return plan_inclusion(index, size) if 0 <= index < size < _MAX_SIZE else None


def consistency_plan(size1: int, size2: int) -> ProofPlan | None:
    """As :func:`inclusion_plan`, for the consistency proof from ``size1`` to ``size2``."""
    return plan_consistency(size1, size2) if 1 <= size1 <= size2 < _MAX_SIZE else None


# The tree's reads are asked for in binary: hashes come as their bytes, where the text
# format sends twice as many hex digits for both sides to write and parse (a head's edge
# is 18 KB at 10M leaves, a full tile 8 KB).
_HEAD = "SELECT tree_size, edge FROM trailseal.log_heads WHERE tenant = %s"
_HEAD_AND_TILES = """
SELECT h.tree_size, h.edge, t.level, t.idx, t.hashes
FROM trailseal.log_heads h
LEFT JOIN (trailseal.tiles t JOIN unnest(%b::smallint[], %b::bigint[]) AS w(level, idx)
           ON t.level = w.level AND t.idx = w.idx) ON t.tenant = h.tenant
WHERE h.tenant = %s
"""


async def open_tree(conn: AsyncConnection, tenant: str, cache: TileCache | None = None,
                    *, plan: ProofPlan | None = None) -> Tree:
    """The tenant's tree as of now; call inside a reader transaction. ``cache``, if
    given, keeps the full tiles read for the next tree. With the ``plan`` of the proof
    about to be asked, the full tiles it needs that ``cache`` lacks are read in the same
    statement as the head (a proof is then one round trip to PostgreSQL, not two)."""
    keys = set() if plan is None else {tile_for_node(node)[:2] for node in plan.node_ids()}
    wanted = sorted(k for k in keys if cache is None or (tenant, *k) not in cache)
    if wanted:
        cur = await conn.execute(
            _HEAD_AND_TILES, ([k[0] for k in wanted], [k[1] for k in wanted], tenant),
            binary=True)
    else:
        cur = await conn.execute(_HEAD, (tenant,), binary=True)
    rows = await cur.fetchall()
    state = TreeState() if not rows else TreeState.from_bytes(rows[0][0], bytes(rows[0][1]))
    tree = Tree(conn, tenant, state, cache)
    for row in rows if wanted else ():
        if row[2] is not None:  # a tile the tree has full (the others are at its edge)
            tree.read[(row[2], row[3])] = tile = FullTile(bytes(row[4]))
            tree.cache.put((tenant, row[2], row[3]), tile)
    return tree


async def latest_checkpoint(conn: AsyncConnection, tenant: str) -> CheckpointRow | None:
    """The newest signed checkpoint of ``tenant``."""
    cur = await conn.execute(
        "SELECT size, root, note FROM trailseal.checkpoints WHERE tenant = %s"
        " ORDER BY size DESC LIMIT 1",
        (tenant,),
    )
    row = await cur.fetchone()
    return None if row is None else CheckpointRow(row[0], bytes(row[1]), row[2])


async def verifier_keys(conn: AsyncConnection) -> list[str]:
    """Every verifier key checkpoints have been signed with."""
    cur = await conn.execute("SELECT verifier_key FROM trailseal.log_keys ORDER BY created_at")
    return [row[0] for row in await cur.fetchall()]


def b64(hashes: list[bytes]) -> list[str]:
    return [base64.b64encode(h).decode() for h in hashes]


async def receipt(
    conn: AsyncConnection, tenant: str, event_id: uuid.UUID
) -> dict[str, Any] | None:
    """An event with everything needed to check it offline: its inclusion proof against
    the latest signed checkpoint, and that checkpoint."""
    event = await get_event(conn, tenant, event_id)
    if event is None:
        return None
    async with scoped(conn, Role.READER, tenant):
        checkpoint = await latest_checkpoint(conn, tenant)
        # Read after the checkpoint, the head may already be past it (a batch committed
        # in between): the proof is then against the checkpoint's smaller tree.
        tree = await open_tree(conn, tenant)
        if checkpoint is None or not event["seq"] < checkpoint.size <= tree.size:
            return None
        proof = await tree.inclusion_proof(event["seq"], checkpoint.size)
    return {
        "event": event,
        "seq": event["seq"],
        "leaf_hash": event["leaf_hash"],
        "inclusion_proof": {"index": event["seq"], "size": checkpoint.size, "hashes": b64(proof)},
        "checkpoint": checkpoint.note,
    }
