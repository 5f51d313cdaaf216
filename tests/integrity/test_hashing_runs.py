"""RFC 6962 hashing over runs (``leaf_hashes``, ``chain_hashes``, ``tree_levels``): the
published known answers, the one-at-a-time functions they stand for, and the C module
held to the Python reference, value for value and error for error."""

from __future__ import annotations

import json
from hashlib import sha256
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trailseal.integrity import GENESIS_CHAIN_HASH, chain_hash, hashing, leaf_hash, node_hash
from trailseal.integrity import _rfc6962 as c  # built by the install: its absence fails here

VECTORS = json.loads((Path(__file__).parent / "vectors/merkle/rfc6962.json").read_text())
CT_LEAVES = [bytes.fromhex(leaf) for leaf in VECTORS["leaves"]]

# Every implementation of the three: the C module's, the Python reference, and the names
# the rest of the code calls (the C module's whenever it is built).
IMPLEMENTATIONS = {
    "c": (c.leaf_hashes, c.chain_hashes, c.tree_levels),
    "python": (hashing._leaf_hashes, hashing._chain_hashes, hashing._tree_levels),
    "exported": (hashing.leaf_hashes, hashing.chain_hashes, hashing.tree_levels),
}


def split(joined: bytes) -> list[bytes]:
    return [joined[at : at + 32] for at in range(0, len(joined), 32)]


def test_the_exported_names_are_the_c_module_s() -> None:
    assert IMPLEMENTATIONS["exported"] == IMPLEMENTATIONS["c"]


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
def test_the_reference_tree_s_root(name: str) -> None:
    leaf_hashes, _, tree_levels = IMPLEMENTATIONS[name]
    leaves = leaf_hashes(CT_LEAVES)
    assert leaves[:32].hex() == VECTORS["roots"]["1"]  # the empty entry's leaf hash
    levels = tree_levels(leaves)
    assert len(levels) == 7 * 32  # 4 + 2 + 1 nodes above 8 leaves
    assert levels[-32:].hex() == VECTORS["roots"]["8"]
    assert tree_levels(leaves[:64])[-32:].hex() == VECTORS["roots"]["2"]
    assert tree_levels(leaves[:128])[-32:].hex() == VECTORS["roots"]["4"]


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
def test_runs_are_the_one_at_a_time_hashes(name: str) -> None:
    leaf_hashes, chain_hashes, tree_levels = IMPLEMENTATIONS[name]
    entries = [bytes([i]) * i for i in range(16)]
    leaves = split(leaf_hashes(entries))
    assert leaves == [leaf_hash(e) for e in entries]
    chains, previous = [], GENESIS_CHAIN_HASH
    for leaf in leaves:
        previous = chain_hash(previous, leaf)
        chains.append(previous)
    assert split(chain_hashes(GENESIS_CHAIN_HASH, b"".join(leaves))) == chains
    level, expected = leaves, []
    while len(level) > 1:
        level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
        expected += level
    assert split(tree_levels(b"".join(leaves))) == expected


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
def test_empty_and_single_runs(name: str) -> None:
    leaf_hashes, chain_hashes, tree_levels = IMPLEMENTATIONS[name]
    assert leaf_hashes([]) == b""
    assert chain_hashes(GENESIS_CHAIN_HASH, b"") == b""
    assert tree_levels(bytes(32)) == b""  # one hash: nothing above it
    assert leaf_hashes([b"x"]) == sha256(b"\x00x").digest()


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
@pytest.mark.parametrize(("previous", "leaves"), [
    (bytes(31), bytes(32)), (bytes(33), bytes(32)), (b"", b""),
    (bytes(32), bytes(31)), (bytes(32), bytes(65)),
])
def test_chain_hashes_refuse_what_is_not_whole_hashes(name: str, previous: bytes,
                                                      leaves: bytes) -> None:
    _, chain_hashes, _ = IMPLEMENTATIONS[name]
    with pytest.raises(ValueError, match="32"):
        chain_hashes(previous, leaves)


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
@pytest.mark.parametrize("size", [0, 31, 33, 3 * 32, 6 * 32, 255 * 32])
def test_tree_levels_refuse_what_is_not_a_power_of_two_of_hashes(name: str, size: int) -> None:
    _, _, tree_levels = IMPLEMENTATIONS[name]
    with pytest.raises(ValueError, match="power-of-two"):
        tree_levels(bytes(size))


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
def test_leaf_hashes_refuse_what_is_not_bytes(name: str) -> None:
    leaf_hashes, _, _ = IMPLEMENTATIONS[name]
    with pytest.raises(TypeError):
        leaf_hashes([b"a", "text"])


@settings(max_examples=300, deadline=None)
@given(
    entries=st.lists(st.binary(max_size=700), max_size=40),
    previous=st.binary(min_size=32, max_size=32),
    height=st.integers(0, 9),
)
def test_the_c_module_is_the_python_reference(entries: list[bytes], previous: bytes,
                                              height: int) -> None:
    leaves = c.leaf_hashes(entries)
    assert leaves == hashing._leaf_hashes(entries)
    assert c.chain_hashes(previous, leaves) == hashing._chain_hashes(previous, leaves)
    hashes = (leaves * (1 << height))[: 32 << height] or bytes(32 << height)
    hashes = hashes.ljust(32 << height, b"\x07")
    assert c.tree_levels(hashes) == hashing._tree_levels(hashes)


def test_buffers_other_than_bytes_are_read_as_their_bytes() -> None:
    # psycopg may hand over memoryviews; the C module reads any contiguous buffer.
    entries = [b"abc", b"defg"]
    assert c.leaf_hashes([memoryview(e) for e in entries]) == c.leaf_hashes(entries)
    leaves = c.leaf_hashes(entries)
    assert c.chain_hashes(bytearray(32), memoryview(leaves)) == c.chain_hashes(bytes(32), leaves)
    assert c.tree_levels(bytearray(leaves)) == c.tree_levels(leaves)
