"""Recompute a run of consecutive log entries: canonical form, leaf hashes, hash chain,
and the roots of the level-0 tiles the run fills.

The per-entry part of verification, apart from the tree, so that runs can be recomputed
side by side (in other processes) while the caller keeps the tree, which is sequential.
Pure: bytes in, result out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from trailseal.integrity.canonical import first_not_canonical
from trailseal.integrity.hashing import HASH_SIZE, chain_hashes, leaf_hashes, tree_levels
from trailseal.integrity.tiles import TILE_WIDTH

__all__ = ["Recomputed", "recompute"]


@dataclass(frozen=True)
class Recomputed:
    """What one run of entries recomputes to; indexes count from the run's first entry."""

    leaves: bytes
    """SHA-256(0x00 ‖ entry) of every entry, concatenated."""
    first_bad_entry: int | None
    """The first entry that is not canonical, or whose leaf hash differs from the one
    stored with it or from the one recorded for its position."""
    first_bad_chain: int | None
    """The first stored chain hash that differs from SHA-256(previous ‖ leaf), chaining
    from ``previous`` over the recomputed leaves."""
    tile_roots: dict[int, bytes]
    """Roots of the level-0 tiles (by tile index) whose 256 leaves all lie in the run."""


def recompute(
    entries: Sequence[bytes],
    stored_leaves: bytes,
    stored_chains: bytes,
    previous: bytes,
    recorded: bytes,
    first_index: int,
) -> Recomputed:
    """Recompute ``entries``, the log's entries first_index, first_index + 1, ... in
    order, against what was stored with them (``stored_leaves``, ``stored_chains``: the
    leaf and chain hashes, concatenated) and recorded for their positions (``recorded``:
    concatenated leaf hashes, shorter where the record ends); ``previous`` is the chain
    hash of the entry before the first."""
    if not len(stored_leaves) == len(stored_chains) == len(entries) * HASH_SIZE:
        raise ValueError("entries, stored leaves and stored chains differ in length")
    leaves = leaf_hashes(entries)
    not_canonical = first_not_canonical(entries)
    differences = (not_canonical, _first_difference(leaves, stored_leaves),
                   _first_difference(leaves, recorded))
    first_bad_entry = min((i for i in differences if i is not None), default=None)
    # A chain hash before the run of any other length than a hash's (only tampering past
    # the table's constraints leaves one) chains to nothing: the run's first link fails.
    if len(previous) == HASH_SIZE:
        first_bad_chain = _first_difference(chain_hashes(previous, leaves), stored_chains)
    else:
        first_bad_chain = 0 if leaves else None
    tile_roots = {}
    first_tile = -(-first_index // TILE_WIDTH)
    for tile in range(first_tile, (first_index + len(entries)) // TILE_WIDTH):
        at = (tile * TILE_WIDTH - first_index) * HASH_SIZE
        tile_roots[tile] = tree_levels(leaves[at : at + TILE_WIDTH * HASH_SIZE])[-HASH_SIZE:]
    return Recomputed(leaves, first_bad_entry, first_bad_chain, tile_roots)


def _first_difference(ours: bytes, theirs: bytes) -> int | None:
    """The index of the first of the concatenated hashes ``ours`` that differs from the
    one at its place in ``theirs`` (or has none there), or None."""
    if theirs[: len(ours)] == ours:
        return None
    return next(at // HASH_SIZE for at in range(0, len(ours), HASH_SIZE)
                if ours[at : at + HASH_SIZE] != theirs[at : at + HASH_SIZE])
