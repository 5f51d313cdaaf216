"""RFC 6962 / RFC 9162 inclusion and consistency proofs: plan, assemble, verify.

A proof is a list of Merkle Tree Hashes of subranges of the log. Building one happens in
two pure steps, so that storage stays the caller's business:

1. *Plan* (`plan_inclusion`, `plan_consistency`): which leaf ranges the proof hashes
   cover, and hence which perfect subtree nodes (`ProofPlan.node_ids`) must be fetched.
2. *Assemble* (`assemble`): given those node hashes, fold them into the proof.

Verification (`verify_inclusion`, `verify_consistency`) follows the algorithms of
RFC 9162 §2.1.3.2 and §2.1.4.2 and raises a typed `ProofError` on any failure:

    ProofError(ValueError)
    ├── IndexOutOfRange    an index or tree size outside what the proof is defined for
    ├── WrongProofLength   too few or too many hashes for the sizes given
    ├── MalformedHash      a hash that is not 32 bytes
    ├── RootMismatch       the proof does not lead to the root it was checked against
    └── MissingNode        `assemble` was not given a hash the plan needs

Edge cases, decided once here: an inclusion proof needs 0 <= index < size; a consistency
proof needs size1 <= size2, and between equal sizes it is empty (the roots must match);
from size 0 it is refused unless the caller passes `allow_empty=True` (then it is empty,
and root1 must be the empty tree's root), because verifiers disagree on that case.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

from trailseal.integrity.hashing import EMPTY_ROOT, HASH_SIZE, node_hash

__all__ = [
    "IndexOutOfRange",
    "MalformedHash",
    "MissingNode",
    "NodeID",
    "ProofError",
    "ProofPlan",
    "RootMismatch",
    "WrongProofLength",
    "assemble",
    "fold_root",
    "plan_consistency",
    "plan_inclusion",
    "range_nodes",
    "root_from_inclusion_proof",
    "root_nodes",
    "verify_consistency",
    "verify_inclusion",
]


class ProofError(ValueError):
    """A proof could not be planned, assembled or verified."""


class IndexOutOfRange(ProofError):
    """An index or tree size lies outside what the proof is defined for."""


class WrongProofLength(ProofError):
    """The proof has the wrong number of hashes for the sizes given."""


class MalformedHash(ProofError):
    """A leaf hash, root or proof hash is not 32 bytes."""


class RootMismatch(ProofError):
    """The proof does not lead to the expected root."""


class MissingNode(ProofError):
    """`assemble` was not handed the hash of a node the plan needs."""

    def __init__(self, node: NodeID) -> None:
        super().__init__(
            f"no hash given for node {node} (leaves [{node.start}, {node.end}))"
        )
        self.node = node


@dataclass(frozen=True, order=True)
class NodeID:
    """The perfect subtree over leaves [index << level, (index + 1) << level)."""

    level: int
    index: int

    def __post_init__(self) -> None:
        if self.level < 0 or self.index < 0:
            raise ValueError(f"node level and index must be >= 0, got {self}")

    @property
    def start(self) -> int:
        """The first leaf under this node."""
        return self.index << self.level

    @property
    def end(self) -> int:
        """One past the last leaf under this node."""
        return (self.index + 1) << self.level

    def __str__(self) -> str:
        return f"(level {self.level}, index {self.index})"


@dataclass(frozen=True)
class ProofPlan:
    """The leaf ranges `(start, end)` whose hashes form a proof, in proof order.

    Each range is either a perfect subtree or the right edge of one: the range's hash
    is then the right fold of the perfect subtrees of its binary decomposition.
    """

    ranges: tuple[tuple[int, int], ...]

    def node_ids(self) -> list[NodeID]:
        """Every distinct perfect node whose hash `assemble` needs, in proof order."""
        return list(self._nodes)

    @cached_property
    def _nodes(self) -> tuple[NodeID, ...]:
        # Worked out once per plan: a reader asks for them to find the tiles, then again
        # to fetch the hashes.
        seen: dict[NodeID, None] = {}
        for start, end in self.ranges:
            for node in range_nodes(start, end):
                seen.setdefault(node)
        return tuple(seen)


def range_nodes(start: int, end: int) -> list[NodeID]:
    """The perfect subtrees, largest first, whose right fold is MTH(D[start:end]).

    The range must sit where RFC 6962 recursion can produce it: non-empty, and
    `start` a multiple of the smallest power of two >= end - start.
    """
    size = end - start
    if start < 0 or size <= 0:
        raise ValueError(f"range [{start}, {end}) is empty or negative")
    if start % (1 << (size - 1).bit_length()):
        raise ValueError(f"range [{start}, {end}) is not aligned to a subtree")
    nodes: list[NodeID] = []
    for level in reversed(range(size.bit_length())):
        if size >> level & 1:
            nodes.append(NodeID(level, start >> level))
            start += 1 << level
    return nodes


def root_nodes(size: int) -> list[NodeID]:
    """The perfect subtrees whose right fold is the root of a tree of `size` leaves."""
    if size < 0:
        raise ValueError(f"tree size must be >= 0, got {size}")
    return range_nodes(0, size) if size else []


def fold_root(hashes: Sequence[bytes]) -> bytes:
    """Right-fold subtree hashes, largest first, into one: h0 ∘ (h1 ∘ (… ∘ hn)).

    With the hashes of `root_nodes(size)` this is the tree's root; with none it is
    the empty tree's root.
    """
    if not hashes:
        return EMPTY_ROOT
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = node_hash(left, result)
    return result


def _largest_power_of_two_below(n: int) -> int:
    return 1 << ((n - 1).bit_length() - 1)


def plan_inclusion(index: int, size: int) -> ProofPlan:
    """Plan the RFC 6962 §2.1.1 audit path PATH(index, D[size]).

    Raises IndexOutOfRange unless 0 <= index < size. A tree of one leaf has an
    empty path.
    """
    if not 0 <= index < size:
        raise IndexOutOfRange(f"leaf index {index} is not in a tree of size {size}")
    ranges: list[tuple[int, int]] = []
    low, high = 0, size
    # Walk down from the root; the recursion's sibling at each step is a proof hash,
    # and the RFC lists them leaf first, so the walk's order is reversed at the end.
    while high - low > 1:
        split = low + _largest_power_of_two_below(high - low)
        if index < split:
            ranges.append((split, high))
            high = split
        else:
            ranges.append((low, split))
            low = split
    ranges.reverse()
    return ProofPlan(tuple(ranges))


def plan_consistency(size1: int, size2: int, *, allow_empty: bool = False) -> ProofPlan:
    """Plan the RFC 6962 §2.1.2 consistency proof PROOF(size1, D[size2]).

    Raises IndexOutOfRange if size1 > size2 or a size is negative, and for size1 == 0
    unless `allow_empty` is set (then the plan is empty). Equal sizes give an empty
    plan.
    """
    if not 0 <= size1 <= size2:
        raise IndexOutOfRange(f"no consistency proof from size {size1} to size {size2}")
    if size1 == 0 and not allow_empty:
        raise IndexOutOfRange(
            "a consistency proof from the empty tree is refused unless allow_empty=True"
        )
    if size1 in (0, size2):
        return ProofPlan(())
    ranges: list[tuple[int, int]] = []
    low, high = 0, size2
    # `whole` is the RFC's flag b: true while the old tree's root is still a node on
    # the path, in which case the verifier already knows that hash.
    whole = True
    while size1 != high:
        split = low + _largest_power_of_two_below(high - low)
        if size1 <= split:
            ranges.append((split, high))
            high = split
        else:
            ranges.append((low, split))
            low = split
            whole = False
    if not whole:
        ranges.append((low, high))
    ranges.reverse()
    return ProofPlan(tuple(ranges))


def assemble(plan: ProofPlan, hashes: Mapping[NodeID, bytes]) -> list[bytes]:
    """Build the proof from node hashes fetched for `plan.node_ids()`.

    Raises MissingNode naming the first node not in `hashes`, and MalformedHash for
    a hash that is not 32 bytes.
    """
    proof: list[bytes] = []
    for start, end in plan.ranges:
        parts: list[bytes] = []
        for node in range_nodes(start, end):
            digest = hashes.get(node)
            if digest is None:
                raise MissingNode(node)
            _check_hash(f"hash of node {node}", digest)
            parts.append(digest)
        proof.append(fold_root(parts))
    return proof


def _check_hash(name: str, digest: bytes) -> None:
    if len(digest) != HASH_SIZE:
        raise MalformedHash(f"{name} must be {HASH_SIZE} bytes, got {len(digest)}")


def _check_proof(proof: Sequence[bytes], expected: int) -> None:
    if len(proof) != expected:
        raise WrongProofLength(f"proof has {len(proof)} hashes, expected {expected}")
    for position, digest in enumerate(proof):
        _check_hash(f"proof[{position}]", digest)


def _inclusion_length(index: int, size: int) -> int:
    # Below the level where the paths to `index` and to the last leaf part, every
    # level contributes one sibling; above it, one hash per left subtree on the edge.
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def _consistency_length(size1: int, size2: int) -> int:
    # The inclusion path of leaf size1 - 1, started at the level of the largest
    # perfect subtree ending at size1, plus that subtree's hash unless it is the
    # whole old tree, whose root the verifier already has.
    shift = (size1 & -size1).bit_length() - 1
    seed = 0 if size1 & (size1 - 1) == 0 else 1
    return seed + _inclusion_length(size1 - 1, size2) - shift


def root_from_inclusion_proof(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]
) -> bytes:
    """The root of a tree of `size` that the proof says holds `leaf_hash` at `index`.

    Raises IndexOutOfRange, MalformedHash or WrongProofLength; the result still has
    to be compared with a trusted root (`verify_inclusion` does that).
    """
    if not 0 <= index < size:
        raise IndexOutOfRange(f"leaf index {index} is not in a tree of size {size}")
    _check_hash("leaf hash", leaf_hash)
    _check_proof(proof, _inclusion_length(index, size))
    # RFC 9162 §2.1.3.2. Its "sn is 0" failure checks only catch a proof of the wrong
    # length, which `_check_proof` has already refused with a clearer message.
    fn, sn, result = index, size - 1, leaf_hash
    for sibling in proof:
        if fn & 1 or fn == sn:
            result = node_hash(sibling, result)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            result = node_hash(result, sibling)
        fn, sn = fn >> 1, sn >> 1
    return result


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that `proof` shows `leaf_hash` at `index` in the tree of `size` and `root`.

    Returns None on success; raises IndexOutOfRange, MalformedHash, WrongProofLength
    or RootMismatch, checked in that order.
    """
    if not 0 <= index < size:
        raise IndexOutOfRange(f"leaf index {index} is not in a tree of size {size}")
    _check_hash("root", root)
    calculated = root_from_inclusion_proof(leaf_hash, index, size, proof)
    if calculated != root:
        raise RootMismatch(
            f"inclusion proof for leaf {index} leads to root {calculated.hex()}, "
            f"not {root.hex()}"
        )


def verify_consistency(
    size1: int,
    size2: int,
    proof: Sequence[bytes],
    root1: bytes,
    root2: bytes,
    *,
    allow_empty: bool = False,
) -> None:
    """Check that the tree of `size2` and `root2` extends the tree of `size1` and `root1`.

    Returns None on success; raises IndexOutOfRange (size1 > size2, a negative size,
    or size1 == 0 without `allow_empty`), MalformedHash, WrongProofLength or
    RootMismatch, checked in that order. Equal sizes need an empty proof and equal
    roots; from size 0 (when allowed) the proof is empty and root1 must be the empty
    tree's root.
    """
    if not 0 <= size1 <= size2:
        raise IndexOutOfRange(f"no consistency proof from size {size1} to size {size2}")
    if size1 == 0 and not allow_empty:
        raise IndexOutOfRange(
            "a consistency proof from the empty tree is refused unless allow_empty=True"
        )
    _check_hash("root1", root1)
    _check_hash("root2", root2)
    if size1 == 0:
        _check_proof(proof, 0)
        if root1 != EMPTY_ROOT:
            raise RootMismatch("root1 is not the root of the empty tree")
        if size2 == 0 and root2 != EMPTY_ROOT:
            raise RootMismatch("root2 is not the root of the empty tree")
        return
    if size1 == size2:
        _check_proof(proof, 0)
        if root1 != root2:
            raise RootMismatch(f"trees of equal size {size1} have different roots")
        return
    _check_proof(proof, _consistency_length(size1, size2))
    # RFC 9162 §2.1.4.2; as above, the length check stands in for its "sn is 0" tests.
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    first = second = path[0]
    for sibling in path[1:]:
        if fn & 1 or fn == sn:
            first = node_hash(sibling, first)
            second = node_hash(sibling, second)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            second = node_hash(second, sibling)
        fn, sn = fn >> 1, sn >> 1
    if first != root1:
        raise RootMismatch(
            f"consistency proof leads to a size-{size1} root {first.hex()}, not {root1.hex()}"
        )
    if second != root2:
        raise RootMismatch(
            f"consistency proof leads to a size-{size2} root {second.hex()}, not {root2.hex()}"
        )
