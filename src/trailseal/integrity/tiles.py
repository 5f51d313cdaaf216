"""C2SP tlog-tiles arithmetic, and the right edge of a growing tree kept as tiles.

A tile is 256 consecutive hashes at one tile level: level 0 holds leaf hashes, and each
hash at level k >= 1 is the Merkle Tree Hash of a full tile at level k - 1, so tile level
k holds tree nodes of height 8k. Tile n at level k covers the leaves
[n * 256**(k+1), (n + 1) * 256**(k+1)). The rightmost tile of each level may be partial
(1 to 255 hashes); partial tiles are never hashed into the level above.

Paths are what follows a log's URL prefix: `tile/<L>/<N>[.p/<W>]` for hash tiles and
`tile/entries/<N>[.p/<W>]` for entry bundles, with N written in 3-digit groups
(1234067 → `x001/x234/067`). `parse_tile_path` takes that whole `tile/...` string.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from trailseal.integrity.hashing import EMPTY_ROOT, HASH_SIZE, tree_levels
from trailseal.integrity.proofs import NodeID, fold_root

__all__ = [
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "FullTile",
    "TileRef",
    "TreeState",
    "entries_path",
    "format_index",
    "parse_index",
    "parse_tile_path",
    "partial_tiles",
    "subtree_root",
    "tile_for_node",
    "tile_hashes",
    "tile_path",
]

TILE_HEIGHT = 8
"""Tree levels spanned by one tile."""

TILE_WIDTH = 1 << TILE_HEIGHT
"""Hashes in a full tile (256, so 8,192 bytes)."""

_TILE_BYTES = TILE_WIDTH * HASH_SIZE

MAX_TILE_LEVEL = 63
"""Highest tile level C2SP allows in a path."""

# Tree sizes are uint64 in checkpoints; 20 decimal digits need at most 7 groups, and
# the cap keeps a hostile path from turning into an arbitrarily large integer.
_MAX_INDEX = 2**64 - 1
_MAX_GROUPS = 7
_GROUP = re.compile(r"[0-9]{3}")
_INNER_GROUP = re.compile(r"x[0-9]{3}")
_LEVEL = re.compile(r"0|[1-9][0-9]?")
_WIDTH = re.compile(r"[1-9][0-9]{0,2}")


def format_index(n: int) -> str:
    """Write a tile index as C2SP path elements: 1234067 → `x001/x234/067`, 5 → `005`."""
    if n < 0:
        raise ValueError(f"tile index must be >= 0, got {n}")
    digits = str(n)
    digits = digits.zfill(-(-len(digits) // 3) * 3)
    groups = [digits[i : i + 3] for i in range(0, len(digits), 3)]
    return "/".join([*("x" + group for group in groups[:-1]), groups[-1]])


def parse_index(text: str) -> int:
    """Read a tile index written by `format_index`, refusing any other spelling.

    Raises ValueError for a missing or misplaced `x`, groups that are not exactly three
    ASCII digits, leading all-zero groups (`x000/005`), and values beyond 2**64 - 1.
    """
    groups = text.split("/")
    if len(groups) > _MAX_GROUPS:
        raise ValueError(f"tile index {text!r} has more than {_MAX_GROUPS} groups")
    for group in groups[:-1]:
        if not _INNER_GROUP.fullmatch(group):
            raise ValueError(f"tile index group {group!r} in {text!r} is not 'x' + 3 digits")
    if not _GROUP.fullmatch(groups[-1]):
        raise ValueError(f"last tile index group {groups[-1]!r} in {text!r} is not 3 digits")
    value = int("".join(group.removeprefix("x") for group in groups))
    if format_index(value) != text:
        raise ValueError(f"tile index {text!r} has leading zero groups")
    if value > _MAX_INDEX:
        raise ValueError(f"tile index {text!r} exceeds 2**64 - 1")
    return value


def _width_suffix(width: int | None) -> str:
    if width is None or width == TILE_WIDTH:
        return ""
    if not 0 < width < TILE_WIDTH:
        raise ValueError(f"tile width must be 1..{TILE_WIDTH}, got {width}")
    return f".p/{width}"


def tile_path(level: int, index: int, width: int | None = None) -> str:
    """The path `tile/<L>/<N>[.p/<W>]` of a hash tile; width None or 256 is a full tile."""
    if not 0 <= level <= MAX_TILE_LEVEL:
        raise ValueError(f"tile level must be 0..{MAX_TILE_LEVEL}, got {level}")
    return f"tile/{level}/{format_index(index)}{_width_suffix(width)}"


def entries_path(index: int, width: int | None = None) -> str:
    """The path `tile/entries/<N>[.p/<W>]` of an entry bundle; width None or 256 is full."""
    return f"tile/entries/{format_index(index)}{_width_suffix(width)}"


@dataclass(frozen=True)
class TileRef:
    """A parsed tile path: `level` is None for an entry bundle; `width` 256 when full."""

    level: int | None
    index: int
    width: int

    @property
    def is_partial(self) -> bool:
        """Whether this is a partial tile (fewer than 256 hashes or entries)."""
        return self.width < TILE_WIDTH

    @property
    def path(self) -> str:
        """The canonical path of this tile."""
        if self.level is None:
            return entries_path(self.index, self.width)
        return tile_path(self.level, self.index, self.width)


def parse_tile_path(path: str) -> TileRef:
    """Parse `tile/<L>/<N>[.p/<W>]` or `tile/entries/<N>[.p/<W>]` strictly.

    `path` is everything after the log's prefix, starting with `tile/`. Raises
    ValueError naming the problem: another prefix, a level outside 0..63 or with
    leading zeros, a non-canonical index, or a partial width outside 1..255.
    """
    parts = path.split("/")
    if len(parts) < 3 or parts[0] != "tile":
        raise ValueError(f"tile path {path!r} is not of the form tile/<L>/<N>[.p/<W>]")
    kind, elements = parts[1], parts[2:]
    width = TILE_WIDTH
    if len(elements) >= 2 and elements[-2].endswith(".p"):
        if not _WIDTH.fullmatch(elements[-1]) or int(elements[-1]) >= TILE_WIDTH:
            raise ValueError(
                f"partial tile width {elements[-1]!r} in {path!r} is not 1..{TILE_WIDTH - 1}"
            )
        width = int(elements[-1])
        elements = [*elements[:-2], elements[-2].removesuffix(".p")]
    index = parse_index("/".join(elements))
    if kind == "entries":
        return TileRef(None, index, width)
    if not _LEVEL.fullmatch(kind) or int(kind) > MAX_TILE_LEVEL:
        raise ValueError(f"tile level {kind!r} in {path!r} is not 0..{MAX_TILE_LEVEL}")
    return TileRef(int(kind), index, width)


def partial_tiles(size: int) -> list[tuple[int, int, int]]:
    """(level, index, width) of every partial tile of a tree of `size` leaves, level 0 first.

    The partial tile at level k has floor(size / 256**k) mod 256 hashes; levels where
    that is 0 have none (C2SP: empty tiles are never served).
    """
    if size < 0:
        raise ValueError(f"tree size must be >= 0, got {size}")
    tiles: list[tuple[int, int, int]] = []
    level = 0
    while size >> (TILE_HEIGHT * level):
        covered = size >> (TILE_HEIGHT * level)
        width = covered % TILE_WIDTH
        if width:
            tiles.append((level, covered >> TILE_HEIGHT, width))
        level += 1
    return tiles


def _perfect_root(hashes: Sequence[bytes]) -> bytes:
    # Pairwise reduction, the last of the levels: exact for a power-of-two count, which
    # the callers guarantee.
    return hashes[0] if len(hashes) == 1 else tree_levels(b"".join(hashes))[-HASH_SIZE:]


def _decomposed_roots(hashes: Sequence[bytes]) -> list[bytes]:
    # The perfect subtrees of a left-aligned run of hashes, largest first.
    roots: list[bytes] = []
    count, start = len(hashes), 0
    for height in reversed(range(count.bit_length())):
        if count >> height & 1:
            roots.append(_perfect_root(hashes[start : start + (1 << height)]))
            start += 1 << height
    return roots


def subtree_root(hashes: Sequence[bytes]) -> bytes:
    """RFC 6962 MTH over hashes taken as the nodes of one level (split at the largest
    power of two below the count). Used for tile roots and for nodes inside a tile.
    """
    if not hashes:
        raise ValueError("subtree_root needs at least one hash")
    return fold_root(_decomposed_roots(hashes))


def tile_for_node(node: NodeID) -> tuple[int, int, int, int]:
    """Where a perfect node's hash lives: (tile level, tile index, offset, count).

    The node's hash is `subtree_root(tile_hashes[offset : offset + count])` of that
    tile (full, or the partial tile if the node lies in it).
    """
    level, height = divmod(node.level, TILE_HEIGHT)
    first = node.index << height
    return level, first >> TILE_HEIGHT, first % TILE_WIDTH, 1 << height


def tile_hashes(data: bytes) -> list[bytes]:
    """Split a tile's bytes into its 32-byte hashes; refuses empty or ragged tiles."""
    count, extra = divmod(len(data), HASH_SIZE)
    if extra or not 0 < count <= TILE_WIDTH:
        raise ValueError(f"a tile is 1..{TILE_WIDTH} hashes of {HASH_SIZE} bytes, got {len(data)}")
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


@dataclass(frozen=True)
class FullTile:
    """A completed tile: 256 hashes (8,192 bytes) and their MTH, the hash it adds above."""

    level: int
    index: int
    hashes: bytes
    root: bytes

    @property
    def path(self) -> str:
        """The tile's path, `tile/<L>/<N>`."""
        return tile_path(self.level, self.index)


def _levels(size: int) -> int:
    # Tile levels holding at least one hash: those k with size >= 256**k.
    return (size.bit_length() + TILE_HEIGHT - 1) // TILE_HEIGHT


class TreeState:
    """The right edge of a growing tree: the partial tile of every level.

    `edge[k]` holds the hashes of the level-k partial tile, fewer than 256, so
    `len(edge[k]) == (size >> 8k) % 256`. Together with the full tiles already
    emitted, it is all that is needed to keep appending and to compute the root.
    """

    def __init__(self) -> None:
        self.size = 0
        self.edge: list[list[bytes]] = []

    def append(self, leaf_hash: bytes) -> list[FullTile]:
        """Append one leaf hash; return the full tiles it completed, level 0 first.

        A completed level-k tile's root is appended to level k + 1, which may complete
        that tile too. Each tile root is hashed once, so appending is amortised O(1).
        """
        if len(leaf_hash) != HASH_SIZE:
            raise ValueError(f"leaf hash must be {HASH_SIZE} bytes, got {len(leaf_hash)}")
        return self.extend(leaf_hash)

    def extend(self, leaf_hashes: bytes, tile_roots: Mapping[int, bytes] | None = None
               ) -> list[FullTile]:
        """Append leaf hashes, concatenated, in order; return every full tile completed,
        in order.

        ``tile_roots`` may hold the roots of level-0 tiles, by tile index, already
        computed elsewhere from these same leaves; they are used instead of rehashing.
        A whole level-0 tile is taken as it comes, never split into its hashes.
        """
        if len(leaf_hashes) % HASH_SIZE:
            raise ValueError(
                f"leaf hashes must be {HASH_SIZE} bytes each, got {len(leaf_hashes)} bytes")
        completed: list[FullTile] = []
        if not leaf_hashes:
            return completed
        if not self.edge:
            self.edge.append([])
        row, at = self.edge[0], 0
        while at < len(leaf_hashes):
            step = min((TILE_WIDTH - len(row)) * HASH_SIZE, len(leaf_hashes) - at)
            taken = leaf_hashes[at : at + step]
            at += step
            self.size += step // HASH_SIZE
            if row or step < _TILE_BYTES:
                row.extend(taken[i : i + HASH_SIZE] for i in range(0, step, HASH_SIZE))
                if len(row) < TILE_WIDTH:
                    continue
                taken = b"".join(row)
                row.clear()
            index = (self.size >> TILE_HEIGHT) - 1
            known = tile_roots.get(index) if tile_roots else None
            root = known if known is not None else tree_levels(taken)[-HASH_SIZE:]
            completed.append(FullTile(0, index, taken, root))
            self._carry(1, root, completed)
        return completed

    def _carry(self, level: int, value: bytes, completed: list[FullTile]) -> None:
        """Append a completed tile's root to ``level``, completing tiles upwards."""
        while True:
            if level == len(self.edge):
                self.edge.append([])
            row = self.edge[level]
            row.append(value)
            if len(row) < TILE_WIDTH:
                return
            root = _perfect_root(row)
            index = (self.size >> (TILE_HEIGHT * (level + 1))) - 1
            completed.append(FullTile(level, index, b"".join(row), root))
            row.clear()
            level, value = level + 1, root

    def root(self) -> bytes:
        """The RFC 6962 root of the tree at its current size, from the edge alone."""
        if self.size == 0:
            return EMPTY_ROOT
        # Higher levels cover earlier leaves, so they come first in the fold.
        roots: list[bytes] = []
        for row in reversed(self.edge):
            roots.extend(_decomposed_roots(row))
        return fold_root(roots)

    def to_bytes(self) -> bytes:
        """The edge as concatenated hashes, level 0 first; `size` says how to split it."""
        return b"".join(digest for row in self.edge for digest in row)

    @classmethod
    def from_bytes(cls, size: int, data: bytes) -> TreeState:
        """Rebuild the state of a tree of `size` leaves from `to_bytes` output.

        Raises ValueError if `data` does not hold exactly the hashes that size needs.
        """
        if size < 0:
            raise ValueError(f"tree size must be >= 0, got {size}")
        widths = [(size >> (TILE_HEIGHT * k)) % TILE_WIDTH for k in range(_levels(size))]
        expected = sum(widths) * HASH_SIZE
        if len(data) != expected:
            raise ValueError(
                f"the edge of a tree of size {size} is {expected} bytes, got {len(data)}"
            )
        state = cls()
        state.size = size
        offset = 0
        for width in widths:
            end = offset + width * HASH_SIZE
            state.edge.append([data[i : i + HASH_SIZE] for i in range(offset, end, HASH_SIZE)])
            offset = end
        return state
