"""RFC 6962 Merkle tree hashing and the per-tenant hash chain.

Leaves and interior nodes get different one-byte prefixes (RFC 6962 §2.1) so a leaf can
never be passed off as a node, which is what makes second-preimage forgery fail.
"""

from __future__ import annotations

from hashlib import sha256

__all__ = [
    "EMPTY_ROOT",
    "GENESIS_CHAIN_HASH",
    "HASH_SIZE",
    "chain_hash",
    "leaf_hash",
    "node_hash",
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
