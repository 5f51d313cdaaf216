"""Pure integrity core: bytes in, bytes out. No I/O, no clock, no database."""

from trailseal.integrity.canonical import (
    MAX_SAFE_INTEGER,
    CanonicalizationError,
    canonicalize,
)
from trailseal.integrity.hashing import (
    EMPTY_ROOT,
    GENESIS_CHAIN_HASH,
    HASH_SIZE,
    chain_hash,
    leaf_hash,
    node_hash,
)

__all__ = [
    "EMPTY_ROOT",
    "GENESIS_CHAIN_HASH",
    "HASH_SIZE",
    "MAX_SAFE_INTEGER",
    "CanonicalizationError",
    "canonicalize",
    "chain_hash",
    "leaf_hash",
    "node_hash",
]
