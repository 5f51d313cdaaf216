"""RFC 6962 hashing and the hash chain, checked against published known answers."""

from __future__ import annotations

import types
from hashlib import sha256

import pytest

import trailseal.integrity
from trailseal.integrity import (
    EMPTY_ROOT,
    GENESIS_CHAIN_HASH,
    chain_hash,
    leaf_hash,
    node_hash,
)

# The Certificate Transparency reference tree (RFC 6962 test data, also used by
# transparency-dev/merkle): the first leaf inputs and the roots over the first n of them.
CT_LEAVES = [b"", b"\x00", b"\x10", b"\x20\x21"]
CT_ROOTS = {
    0: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    4: "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
}


def test_empty_root() -> None:
    assert EMPTY_ROOT.hex() == CT_ROOTS[0]


def test_leaf_hash_of_empty_entry() -> None:
    assert leaf_hash(b"").hex() == CT_ROOTS[1]


def test_leaf_hash_prefixes_zero_byte() -> None:
    assert leaf_hash(b"entry") == sha256(b"\x00entry").digest()


def test_node_hash_prefixes_one_byte() -> None:
    left, right = bytes(range(32)), bytes(range(32, 64))
    assert node_hash(left, right) == sha256(b"\x01" + left + right).digest()


def test_leaf_and_node_hashes_are_domain_separated() -> None:
    left, right = leaf_hash(b"a"), leaf_hash(b"b")
    assert node_hash(left, right) != leaf_hash(left + right)


def reference_root(entries: list[bytes]) -> bytes:
    """MTH(D[n]) exactly as RFC 6962 §2.1 defines it: split at the largest power of two < n."""
    if not entries:
        return EMPTY_ROOT
    if len(entries) == 1:
        return leaf_hash(entries[0])
    split = 1 << ((len(entries) - 1).bit_length() - 1)
    return node_hash(reference_root(entries[:split]), reference_root(entries[split:]))


@pytest.mark.parametrize("size", sorted(CT_ROOTS))
def test_node_hash_builds_reference_roots(size: int) -> None:
    assert reference_root(CT_LEAVES[:size]).hex() == CT_ROOTS[size]


def test_genesis_chain_hash_is_32_zero_bytes() -> None:
    assert bytes(32) == GENESIS_CHAIN_HASH


def test_chain_hash_from_genesis() -> None:
    leaf = leaf_hash(b'{"action":"user.login"}')
    assert chain_hash(GENESIS_CHAIN_HASH, leaf) == sha256(bytes(32) + leaf).digest()


def test_chain_hash_links_in_order() -> None:
    first, second = leaf_hash(b"1"), leaf_hash(b"2")
    one = chain_hash(GENESIS_CHAIN_HASH, first)
    two = chain_hash(one, second)
    assert two == sha256(one + second).digest()
    assert two != chain_hash(chain_hash(GENESIS_CHAIN_HASH, second), first)


@pytest.mark.parametrize("length", [0, 31, 33, 64])
def test_chain_hash_rejects_wrong_previous_length(length: int) -> None:
    with pytest.raises(ValueError, match="previous must be 32 bytes"):
        chain_hash(bytes(length), leaf_hash(b""))


@pytest.mark.parametrize("length", [0, 31, 33, 64])
def test_chain_hash_rejects_wrong_leaf_length(length: int) -> None:
    with pytest.raises(ValueError, match="leaf must be 32 bytes"):
        chain_hash(GENESIS_CHAIN_HASH, bytes(length))


def test_package_exports_match_all() -> None:
    public = {
        name for name, value in vars(trailseal.integrity).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(trailseal.integrity.__all__) == public
