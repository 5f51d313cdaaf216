from collections.abc import Sequence

from _typeshed import ReadableBuffer as Buffer

def leaf_hashes(entries: Sequence[Buffer], /) -> bytes:
    """SHA-256(0x00 || entry) of every entry, concatenated."""

def chain_hashes(previous: Buffer, leaves: Buffer, /) -> bytes:
    """The hash chain over concatenated leaf hashes from ``previous``, concatenated."""

def tree_levels(hashes: Buffer, /) -> bytes:
    """The interior nodes over a power-of-two count of hashes, level by level, up to the
    root, concatenated."""
