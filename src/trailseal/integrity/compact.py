"""Compact ranges: the root of a tree from the subtrees left of a run of leaves, and the
leaves themselves.

A tree of size n is the right fold of its perfect subtrees, one per set bit of n (largest
first). Knowing those for the first ``first`` leaves, the leaves that follow can be
appended one by one, merging equal heights, without any other part of the tree: this is
how an exported run of events is checked against a checkpoint with O(log n) extra hashes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from trailseal.integrity.hashing import EMPTY_ROOT, HASH_SIZE, node_hash


def prefix_heights(first: int) -> list[int]:
    """Heights of the perfect subtrees covering leaves [0, first), largest first."""
    return [h for h in range(first.bit_length() - 1, -1, -1) if first >> h & 1]


def range_root(first: int, prefix: Sequence[bytes], leaves: Iterable[bytes]) -> tuple[int, bytes]:
    """The size and RFC 6962 root of the tree of the first ``first`` leaves (given as the
    hashes of their perfect subtrees, largest first) followed by ``leaves``."""
    heights = prefix_heights(first)
    if len(prefix) != len(heights) or any(len(h) != HASH_SIZE for h in prefix):
        raise ValueError(f"a prefix of {first} leaves takes {len(heights)} subtree hashes")
    stack = list(zip(heights, prefix, strict=True))
    size = first
    for leaf in leaves:
        stack.append((0, leaf))
        size += 1
        while len(stack) > 1 and stack[-1][0] == stack[-2][0]:
            height, right = stack.pop()
            _, left = stack.pop()
            stack.append((height + 1, node_hash(left, right)))
    if not stack:
        return 0, EMPTY_ROOT
    root = stack[-1][1]
    for _, left in reversed(stack[:-1]):
        root = node_hash(left, root)
    return size, root
