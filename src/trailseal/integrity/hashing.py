"""RFC 6962 Merkle tree hashing and the per-tenant hash chain.

Leaves and interior nodes get different one-byte prefixes (RFC 6962 §2.1) so a leaf can
never be passed off as a node, which is what makes second-preimage forgery fail.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from hashlib import sha256

__all__ = [
    "EMPTY_ROOT",
    "GENESIS_CHAIN_HASH",
    "HASH_SIZE",
    "chain_hash",
    "chain_hashes",
    "leaf_hash",
    "leaf_hashes",
    "node_hash",
    "tree_levels",
]

HASH_SIZE = 32
"""Bytes in a SHA-256 digest."""

EMPTY_ROOT = sha256(b"").digest()
"""Root hash of the tree with no leaves (RFC 6962 §2.1: MTH({}) = SHA-256())."""

GENESIS_CHAIN_HASH = bytes(HASH_SIZE)
"""The `previous` value chained into a tenant's first entry."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


def leaf_hash(entry: bytes) -> bytes:
    """Return SHA-256(0x00 || entry), the RFC 6962 hash of one log entry."""
    return sha256(_LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return SHA-256(0x01 || left || right), the RFC 6962 hash of an interior node."""
    return sha256(_NODE_PREFIX + left + right).digest()


def chain_hash(previous: bytes, leaf: bytes) -> bytes:
    """Return SHA-256(previous || leaf), linking an entry to the one before it.

    Both inputs must be 32-byte digests; anything else raises ValueError, since a
    short or long input would still hash and silently break verification later.
    """
    joined = previous + leaf
    if len(joined) != 2 * HASH_SIZE or len(leaf) != HASH_SIZE:
        for name, digest in (("previous", previous), ("leaf", leaf)):
            if len(digest) != HASH_SIZE:
                raise ValueError(f"{name} must be {HASH_SIZE} bytes, got {len(digest)}")
    return sha256(joined).digest()


# Over many values at once: the same hashes as above, one call for a run of them. The C
# module (optional at install; OpenSSL's SHA-256, as hashlib's) does them without a
# Python round per hash; the Python below is the reference it is tested against, and
# what runs without it.


def _leaf_hashes(entries: Sequence[bytes]) -> bytes:
    return b"".join([sha256(_LEAF_PREFIX + entry).digest() for entry in entries])


def _chain_hashes(previous: bytes, leaves: bytes) -> bytes:
    if len(previous) != HASH_SIZE:
        raise ValueError(f"previous must be {HASH_SIZE} bytes, got {len(previous)}")
    if len(leaves) % HASH_SIZE:
        raise ValueError(f"leaves must be whole {HASH_SIZE}-byte hashes, got {len(leaves)} bytes")
    chains = []
    for at in range(0, len(leaves), HASH_SIZE):
        previous = sha256(previous + leaves[at : at + HASH_SIZE]).digest()
        chains.append(previous)
    return b"".join(chains)


def _tree_levels(hashes: bytes) -> bytes:
    count = len(hashes) // HASH_SIZE
    if len(hashes) % HASH_SIZE or count == 0 or count & (count - 1):
        raise ValueError(
            f"hashes must be a power-of-two count of {HASH_SIZE}-byte hashes, got"
            f" {len(hashes)} bytes")
    levels, below = [], hashes
    while len(below) > HASH_SIZE:
        below = b"".join([sha256(_NODE_PREFIX + below[at : at + 2 * HASH_SIZE]).digest()
                          for at in range(0, len(below), 2 * HASH_SIZE)])
        levels.append(below)
    return b"".join(levels)


leaf_hashes: Callable[[Sequence[bytes]], bytes]
"""SHA-256(0x00 || entry) of every entry, concatenated: ``leaf_hash`` over a run."""
chain_hashes: Callable[[bytes, bytes], bytes]
"""The chain over concatenated leaf hashes from ``previous``: each SHA-256(the chain
hash before || leaf), concatenated: ``chain_hash`` over a run."""
tree_levels: Callable[[bytes], bytes]
"""The interior nodes over a power-of-two count of concatenated hashes: their pairs'
``node_hash``, then those nodes' pairs', ... up to the root (the last 32 bytes),
concatenated; empty for one hash."""
try:
    from trailseal.integrity._rfc6962 import chain_hashes, leaf_hashes, tree_levels
except ImportError:  # pragma: no cover - the install without a C compiler
    leaf_hashes, chain_hashes, tree_levels = _leaf_hashes, _chain_hashes, _tree_levels
