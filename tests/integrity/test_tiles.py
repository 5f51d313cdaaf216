"""Tile paths, and the tiled tree cross-checked against a naive RFC 6962 reference tree.

`ReferenceTree` below computes MTH, PATH and PROOF by the recursive definitions of
RFC 6962 §2.1 and nothing else; it exists only here. The fast code must agree with it on
roots, on every tile it emits, on the edge it keeps, and on proofs assembled from tiles.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from trailseal.integrity import (
    EMPTY_ROOT,
    TILE_HEIGHT,
    TILE_WIDTH,
    FullTile,
    NodeID,
    TileRef,
    TreeState,
    assemble,
    entries_path,
    format_index,
    leaf_hash,
    node_hash,
    parse_index,
    parse_tile_path,
    partial_tiles,
    plan_consistency,
    plan_inclusion,
    subtree_root,
    tile_for_node,
    tile_hashes,
    tile_path,
    verify_consistency,
    verify_inclusion,
)

TILES = json.loads(
    (Path(__file__).parent / "vectors" / "merkle" / "tiles.json").read_text(encoding="utf-8")
)


# --- the naive reference tree -----------------------------------------------------------


def largest_power_of_two_below(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


class ReferenceTree:
    """RFC 6962 §2.1 by its recursive definitions, over a list of leaf hashes.

    MTH is memoised per range only so the large cases stay quick; each value is still
    computed exactly as the RFC defines it.
    """

    def __init__(self, leaves: list[bytes]) -> None:
        self.leaves = leaves
        self._memo: dict[tuple[int, int], bytes] = {}

    def mth(self, low: int, high: int) -> bytes:
        """MTH(D[low:high])."""
        n = high - low
        if n == 0:
            return EMPTY_ROOT
        if n == 1:
            return self.leaves[low]
        cached = self._memo.get((low, high))
        if cached is None:
            k = largest_power_of_two_below(n)
            cached = node_hash(self.mth(low, low + k), self.mth(low + k, high))
            self._memo[(low, high)] = cached
        return cached

    def path(self, m: int, low: int, high: int) -> list[bytes]:
        """PATH(m, D[low:high]), m relative to low."""
        n = high - low
        if n == 1:
            return []
        k = largest_power_of_two_below(n)
        if m < k:
            return [*self.path(m, low, low + k), self.mth(low + k, high)]
        return [*self.path(m - k, low + k, high), self.mth(low, low + k)]

    def subproof(self, m: int, low: int, high: int, whole: bool) -> list[bytes]:
        """SUBPROOF(m, D[low:high], b)."""
        n = high - low
        if m == n:
            return [] if whole else [self.mth(low, high)]
        k = largest_power_of_two_below(n)
        if m <= k:
            return [*self.subproof(m, low, low + k, whole), self.mth(low + k, high)]
        return [*self.subproof(m - k, low + k, high, False), self.mth(low, low + k)]

    def proof(self, m: int, n: int) -> list[bytes]:
        """PROOF(m, D[n])."""
        return self.subproof(m, 0, n, True)

    def level_hashes(self, height: int, start: int, count: int) -> list[bytes]:
        """`count` consecutive nodes of tree height `height`, the first at `start`."""
        span = 1 << height
        return [self.mth((start + i) * span, (start + i + 1) * span) for i in range(count)]


def leaves(count: int, seed: int = 0) -> list[bytes]:
    return [leaf_hash(b"%d:%d" % (seed, i)) for i in range(count)]


class Tiles:
    """Full tiles as they were emitted, and node hashes read from them plus the edge."""

    def __init__(self) -> None:
        self.full: dict[tuple[int, int], list[bytes]] = {}

    def add(self, tiles: list[FullTile]) -> None:
        for tile in tiles:
            assert (tile.level, tile.index) not in self.full
            self.full[(tile.level, tile.index)] = tile_hashes(tile.hashes)

    def node_hashes(self, state: TreeState, nodes: list[NodeID]) -> dict[NodeID, bytes]:
        found: dict[NodeID, bytes] = {}
        for node in nodes:
            level, index, offset, count = tile_for_node(node)
            hashes = self.full.get((level, index))
            if hashes is None:
                assert index == state.size >> (TILE_HEIGHT * (level + 1))
                hashes = state.edge[level]
            assert offset + count <= len(hashes)
            found[node] = subtree_root(hashes[offset : offset + count])
        return found


def check_tile(reference: ReferenceTree, tile: FullTile) -> None:
    expected = reference.level_hashes(TILE_HEIGHT * tile.level, tile.index * TILE_WIDTH, 256)
    assert tile.hashes == b"".join(expected)
    span = TILE_WIDTH ** (tile.level + 1)
    assert tile.root == reference.mth(tile.index * span, (tile.index + 1) * span)


def check_edge(reference: ReferenceTree, state: TreeState) -> None:
    partial = {level: (index, width) for level, index, width in partial_tiles(state.size)}
    for level, row in enumerate(state.edge):
        index, width = partial.get(level, (0, 0))
        assert len(row) == width
        if width:
            assert row == reference.level_hashes(TILE_HEIGHT * level, index * TILE_WIDTH, width)


def check_proofs(
    reference: ReferenceTree, state: TreeState, tiles: Tiles, pairs: list[tuple[int, int]]
) -> None:
    """Inclusion of leaf a and consistency from size b (1 <= b), at the state's size."""
    n = state.size
    root = reference.mth(0, n)
    for index, old in pairs:
        plan = plan_inclusion(index, n)
        proof = assemble(plan, tiles.node_hashes(state, plan.node_ids()))
        assert proof == reference.path(index, 0, n)
        verify_inclusion(reference.leaves[index], index, n, proof, root)
        plan = plan_consistency(old, n)
        proof = assemble(plan, tiles.node_hashes(state, plan.node_ids()))
        assert proof == reference.proof(old, n)
        verify_consistency(old, n, proof, reference.mth(0, old), root)


# --- tile index and path encoding -------------------------------------------------------


@pytest.mark.parametrize("vector", TILES["indexes"], ids=lambda v: v["text"])
def test_index_vectors(vector: dict[str, Any]) -> None:
    assert format_index(vector["index"]) == vector["text"]
    assert parse_index(vector["text"]) == vector["index"]


def test_index_round_trips() -> None:
    rng = random.Random(8)
    values = [*range(0, 2100), *(10**k + d for k in range(3, 20) for d in (-1, 0, 1))]
    values += [rng.randrange(2**64) for _ in range(2000)]
    for value in values:
        assert parse_index(format_index(value)) == value


def test_format_index_refuses_negative() -> None:
    with pytest.raises(ValueError, match="must be >= 0"):
        format_index(-1)


@pytest.mark.parametrize("vector", TILES["paths"], ids=lambda v: v["path"])
def test_path_vectors(vector: dict[str, Any]) -> None:
    level, index, width, path = vector["level"], vector["index"], vector["width"], vector["path"]
    ref = TileRef(level, index, width)
    assert parse_tile_path(path) == ref
    assert ref.path == path
    assert ref.is_partial == (width < 256)
    built = entries_path(index, width) if level is None else tile_path(level, index, width)
    assert built == path
    if width == 256:
        plain = entries_path(index) if level is None else tile_path(level, index)
        assert plain == path


@pytest.mark.parametrize("vector", TILES["invalid_paths"], ids=lambda v: repr(v["path"]))
def test_invalid_path_vectors(vector: dict[str, str]) -> None:
    with pytest.raises(ValueError) as caught:
        parse_tile_path(vector["path"])
    assert vector["error"] in str(caught.value)


def test_paths_round_trip() -> None:
    rng = random.Random(9)
    for _ in range(2000):
        level = rng.choice([None, 0, 1, 2, rng.randrange(64)])
        index = rng.choice([rng.randrange(1000), rng.randrange(2**56)])
        width = rng.choice([256, rng.randrange(1, 256)])
        ref = TileRef(level, index, width)
        assert parse_tile_path(ref.path) == ref


@pytest.mark.parametrize(
    ("level", "index", "width", "message"),
    [(-1, 0, None, "level must be 0..63"), (64, 0, None, "level must be 0..63"),
     (0, -1, None, "index must be >= 0"), (0, 0, 0, "width must be 1..256"),
     (0, 0, 257, "width must be 1..256"), (0, 0, -5, "width must be 1..256")],
)
def test_tile_path_refusals(level: int, index: int, width: int | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tile_path(level, index, width)


def test_entries_path_refusals() -> None:
    with pytest.raises(ValueError, match=r"width must be 1\.\.256"):
        entries_path(0, 0)
    with pytest.raises(ValueError, match="index must be >= 0"):
        entries_path(-3)


@pytest.mark.parametrize("vector", TILES["partial_tiles"], ids=lambda v: str(v["size"]))
def test_partial_tile_vectors(vector: dict[str, Any]) -> None:
    assert partial_tiles(vector["size"]) == [tuple(tile) for tile in vector["tiles"]]


def test_partial_tiles_refuse_negative_size() -> None:
    with pytest.raises(ValueError, match="tree size"):
        partial_tiles(-1)


@pytest.mark.parametrize("vector", TILES["nodes"], ids=lambda v: str(v["node"]))
def test_tile_for_node_vectors(vector: dict[str, Any]) -> None:
    assert tile_for_node(NodeID(*vector["node"])) == tuple(vector["tile"])


def test_tile_hashes_splits_and_refuses() -> None:
    data = bytes(range(64))
    assert tile_hashes(data) == [data[:32], data[32:]]
    assert len(tile_hashes(bytes(8192))) == 256
    for size in (0, 31, 33, 8192 + 32):
        with pytest.raises(ValueError, match=r"1\.\.256 hashes"):
            tile_hashes(bytes(size))


# --- subtree_root -----------------------------------------------------------------------


def test_subtree_root_is_mth_over_nodes() -> None:
    hashes = leaves(300, seed=1)
    reference = ReferenceTree(hashes)
    for count in range(1, 300):
        start = 300 - count
        assert subtree_root(hashes[start:]) == ReferenceTree(hashes[start:]).mth(0, count)
    assert subtree_root(hashes[:256]) == reference.mth(0, 256)
    with pytest.raises(ValueError, match="at least one"):
        subtree_root([])


# --- TreeState against the reference ----------------------------------------------------


def test_empty_tree() -> None:
    state = TreeState()
    assert (state.size, state.edge, state.root()) == (0, [], EMPTY_ROOT)
    assert state.to_bytes() == b""
    assert TreeState.from_bytes(0, b"").root() == EMPTY_ROOT


def test_every_size_to_1100() -> None:
    hashes = leaves(1100, seed=2)
    reference = ReferenceTree(hashes)
    state, tiles = TreeState(), Tiles()
    for n, leaf in enumerate(hashes, start=1):
        emitted = state.append(leaf)
        assert [(t.level, t.index) for t in emitted] == (
            [(0, n // 256 - 1)] if n % 256 == 0 else []
        )
        tiles.add(emitted)
        for tile in emitted:
            check_tile(reference, tile)
        assert state.size == n
        assert state.root() == reference.mth(0, n)
        check_edge(reference, state)
    assert sorted(tiles.full) == [(0, 0), (0, 1), (0, 2), (0, 3)]


def test_proofs_from_tiles_for_every_pair_in_small_trees() -> None:
    hashes = leaves(300, seed=3)
    reference = ReferenceTree(hashes)
    state, tiles = TreeState(), Tiles()
    for leaf in hashes:
        tiles.add(state.append(leaf))
        n = state.size
        if n <= 70 or n in (255, 256, 257, 300):
            pairs = [(index, max(1, (index * 7) % (n + 1))) for index in range(n)]
            pairs += [(n - 1, old) for old in range(1, n + 1)]
            check_proofs(reference, state, tiles, pairs)


def test_large_random_trees() -> None:
    rng = random.Random(70000)
    size = rng.randrange(196_608, 200_000)
    hashes = leaves(size, seed=4)
    reference = ReferenceTree(hashes)
    checkpoints = sorted(
        {rng.randrange(1, size) for _ in range(4)} | {65_535, 65_536, 65_537, 70_000, size}
    )
    state, tiles = TreeState(), Tiles()
    start = 0
    for checkpoint in checkpoints:
        emitted = state.extend(b"".join(hashes[start:checkpoint]))
        start = checkpoint
        tiles.add(emitted)
        for tile in emitted:
            check_tile(reference, tile)
        assert state.size == checkpoint
        assert state.root() == reference.mth(0, checkpoint)
        check_edge(reference, state)
        pairs = [(rng.randrange(checkpoint), rng.randrange(1, checkpoint + 1)) for _ in range(6)]
        pairs += [(checkpoint - 1, checkpoint), (0, 1)]
        check_proofs(reference, state, tiles, pairs)
    assert sorted(key for key in tiles.full if key[0] == 1) == [(1, 0), (1, 1), (1, 2)]
    assert state.size == size


def test_partial_tiles_match_the_edge() -> None:
    state = TreeState()
    state.extend(b"".join(leaves(70_000, seed=5)))
    assert [len(row) for row in state.edge] == [112, 17, 1]
    assert partial_tiles(70_000) == [(0, 273, 112), (1, 1, 17), (2, 0, 1)]


def test_size_256_has_only_a_level_one_partial() -> None:
    state = TreeState()
    emitted = state.extend(b"".join(leaves(256, seed=6)))
    assert [(t.level, t.index, len(t.hashes)) for t in emitted] == [(0, 0, 8192)]
    assert emitted[0].path == "tile/0/000"
    assert state.edge == [[], [emitted[0].root]]
    assert state.root() == emitted[0].root


def test_extend_is_append_in_order() -> None:
    hashes = leaves(600, seed=7)
    one, other = TreeState(), TreeState()
    tiles = one.extend(b"".join(hashes))
    assert tiles == [tile for leaf in hashes for tile in other.append(leaf)]
    assert (one.size, one.edge) == (other.size, other.edge)
    # In pieces that start and end inside tiles, on them, and cover whole ones.
    pieces, appended = TreeState(), TreeState()
    for count in (1, 254, 1, 256, 300, 212, 512, 3, 0, 1100):
        more = leaves(count, seed=count)
        tiles = pieces.extend(b"".join(more))
        assert tiles == [tile for leaf in more for tile in appended.append(leaf)]
        assert (pieces.size, pieces.edge) == (appended.size, appended.edge)
    assert pieces.root() == appended.root()


def test_extend_refuses_hashes_of_the_wrong_length() -> None:
    state = TreeState()
    for bad in (bytes(31), bytes(33), bytes(32 * 256 + 1)):
        with pytest.raises(ValueError, match="leaf hashes must be 32 bytes each"):
            state.extend(bad)
    assert (state.size, state.edge) == (0, [])


def test_append_refuses_a_malformed_leaf_hash() -> None:
    state = TreeState()
    for bad in (b"", bytes(31), bytes(33)):
        with pytest.raises(ValueError, match="leaf hash must be 32 bytes"):
            state.append(bad)
    assert state.size == 0


# --- serialisation ----------------------------------------------------------------------


def test_reload_round_trips_and_continues_identically() -> None:
    rng = random.Random(11)
    hashes = leaves(70_300, seed=8)
    sizes = sorted({0, 1, 255, 256, 257, 65_535, 65_536, 65_537, 70_000, 70_299}
                   | {rng.randrange(70_300) for _ in range(6)})
    state = TreeState()
    for size in sizes:
        state.extend(b"".join(hashes[state.size : size]))
        data = state.to_bytes()
        widths = sum(width for _, _, width in partial_tiles(size))
        assert len(data) == 32 * widths
        reloaded = TreeState.from_bytes(size, data)
        assert (reloaded.size, reloaded.edge) == (state.size, state.edge)
        assert reloaded.root() == state.root()
        assert reloaded.to_bytes() == data
        follow = b"".join(hashes[size : size + 600])
        original = TreeState.from_bytes(size, data)
        assert reloaded.extend(follow) == original.extend(follow)
        assert reloaded.edge == original.edge and reloaded.root() == original.root()


def test_from_bytes_refuses_data_that_does_not_fit_the_size() -> None:
    state = TreeState()
    state.extend(b"".join(leaves(70_000, seed=9)))
    data = state.to_bytes()
    for size, blob in [(70_000, data[:-32]), (70_000, data + bytes(32)), (70_000, data[:-1]),
                       (70_001, data), (69_999, data), (0, bytes(32)), (1, b"")]:
        with pytest.raises(ValueError, match=f"the edge of a tree of size {size} is"):
            TreeState.from_bytes(size, blob)
    with pytest.raises(ValueError, match="tree size must be >= 0"):
        TreeState.from_bytes(-1, b"")


def test_full_tile_path() -> None:
    tile = FullTile(level=1, index=1234067, hashes=bytes(8192), root=bytes(32))
    assert tile.path == "tile/1/x001/x234/067"
