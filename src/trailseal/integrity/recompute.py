"""Recompute a run of consecutive log entries: canonical form, leaf hashes, hash chain.

The per-entry half of verification, apart from the tree, so that runs can be checked
side by side (in other processes) while the caller keeps the tree, which is sequential.
Pure: bytes in, result out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from hashlib import sha256

from trailseal.integrity.canonical import is_canonical

__all__ = ["Recomputed", "recompute"]


@dataclass(frozen=True)
class Recomputed:
    """What one run of entries recomputes to; indexes count from the run's start."""

    leaves: list[bytes]
    """SHA-256(0x00 ‖ entry) of every entry."""
    first_bad_entry: int | None
    """The first entry that is not canonical or whose stored leaf hash differs."""
    first_bad_chain: int | None
    """The first stored chain hash that differs from SHA-256(previous ‖ leaf), chaining
    from ``previous`` over the recomputed leaves."""


def recompute(
    entries: Sequence[bytes],
    stored_leaves: Sequence[bytes],
    stored_chains: Sequence[bytes],
    previous: bytes,
) -> Recomputed:
    """Recompute ``entries`` (consecutive, in order) against what was stored for them;
    ``previous`` is the chain hash just before the first."""
    if not len(entries) == len(stored_leaves) == len(stored_chains):
        raise ValueError("entries, stored leaves and stored chains differ in length")
    leaves = [sha256(b"\x00" + entry).digest() for entry in entries]
    first_bad_entry = None
    if leaves != list(stored_leaves) or not all(map(is_canonical, entries)):
        first_bad_entry = next(
            i for i, entry in enumerate(entries)
            if leaves[i] != stored_leaves[i] or not is_canonical(entry)
        )
    first_bad_chain = None
    chain = previous
    for i, leaf in enumerate(leaves):
        chain = sha256(chain + leaf).digest()
        if chain != stored_chains[i]:
            first_bad_chain = i
            break
    return Recomputed(leaves, first_bad_entry, first_bad_chain)
