"""Inclusion and consistency proofs against published vectors and their mutations.

Every happy case (transparency-dev/merkle testdata, the RFC 6962 reference tree, and
proofs built here for small trees) must verify; every mutation of it must raise the one
`ProofError` subclass that the checks' order predicts, and nothing else.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from trailseal.integrity import (
    EMPTY_ROOT,
    IndexOutOfRange,
    MalformedHash,
    MissingNode,
    NodeID,
    ProofError,
    ProofPlan,
    RootMismatch,
    WrongProofLength,
    assemble,
    fold_root,
    leaf_hash,
    node_hash,
    plan_consistency,
    plan_inclusion,
    range_nodes,
    root_from_inclusion_proof,
    root_nodes,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).parent / "vectors" / "merkle"
RFC6962 = json.loads((VECTORS / "rfc6962.json").read_text(encoding="utf-8"))
CT_LEAVES = [bytes.fromhex(entry) for entry in RFC6962["leaves"]]
CT_ROOTS = {int(size): bytes.fromhex(root) for size, root in RFC6962["roots"].items()}


def load(name: str) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    return cases


def b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


@dataclass(frozen=True)
class Inclusion:
    leaf: bytes
    index: int
    size: int
    proof: tuple[bytes, ...]
    root: bytes

    def verify(self) -> None:
        verify_inclusion(self.leaf, self.index, self.size, list(self.proof), self.root)


@dataclass(frozen=True)
class Consistency:
    size1: int
    size2: int
    proof: tuple[bytes, ...]
    root1: bytes
    root2: bytes

    def verify(self) -> None:
        verify_consistency(self.size1, self.size2, list(self.proof), self.root1, self.root2)


def expected_inclusion_error(case: Inclusion) -> type[ProofError]:
    """The error the documented check order predicts, with lengths from the planner."""
    if not 0 <= case.index < case.size:
        return IndexOutOfRange
    if len(case.leaf) != 32 or len(case.root) != 32:
        return MalformedHash
    if len(case.proof) != len(plan_inclusion(case.index, case.size).ranges):
        return WrongProofLength
    if any(len(digest) != 32 for digest in case.proof):
        return MalformedHash
    return RootMismatch


def expected_consistency_error(case: Consistency) -> type[ProofError]:
    if not 0 < case.size1 <= case.size2:
        return IndexOutOfRange
    if len(case.root1) != 32 or len(case.root2) != 32:
        return MalformedHash
    if len(case.proof) != len(plan_consistency(case.size1, case.size2).ranges):
        return WrongProofLength
    if any(len(digest) != 32 for digest in case.proof):
        return MalformedHash
    return RootMismatch


def inclusion_case(raw: dict[str, Any]) -> Inclusion:
    proof = tuple(b64(h) for h in raw["proof"] or [])
    return Inclusion(b64(raw["leafHash"]), raw["leafIdx"], raw["treeSize"], proof, b64(raw["root"]))


def consistency_case(raw: dict[str, Any]) -> Consistency:
    proof = tuple(b64(h) for h in raw["proof"] or [])
    return Consistency(raw["size1"], raw["size2"], proof, b64(raw["root1"]), b64(raw["root2"]))


INCLUSION_VECTORS = load("inclusion.json")
CONSISTENCY_VECTORS = load("consistency.json")


# --- the transparency-dev/merkle vectors, as published --------------------------------


def test_vector_files_hold_every_upstream_case() -> None:
    assert len(INCLUSION_VECTORS) == 82
    assert len(CONSISTENCY_VECTORS) == 84
    assert sum(not raw["wantErr"] for raw in INCLUSION_VECTORS) == 5
    assert sum(not raw["wantErr"] for raw in CONSISTENCY_VECTORS) == 5


@pytest.mark.parametrize("raw", INCLUSION_VECTORS, ids=[raw["source"] for raw in INCLUSION_VECTORS])
def test_inclusion_vector(raw: dict[str, Any]) -> None:
    case = inclusion_case(raw)
    if not raw["wantErr"]:
        case.verify()
        assert root_from_inclusion_proof(case.leaf, case.index, case.size, case.proof) == case.root
    else:
        with pytest.raises(expected_inclusion_error(case)):
            case.verify()


@pytest.mark.parametrize(
    "raw", CONSISTENCY_VECTORS, ids=[raw["source"] for raw in CONSISTENCY_VECTORS]
)
def test_consistency_vector(raw: dict[str, Any]) -> None:
    case = consistency_case(raw)
    if not raw["wantErr"]:
        case.verify()
    else:
        with pytest.raises(expected_consistency_error(case)):
            case.verify()


# --- the RFC 6962 reference tree -------------------------------------------------------


def perfect_nodes(leaves: list[bytes]) -> dict[NodeID, bytes]:
    """Every perfect subtree hash of a tree, built level by level from the leaf hashes."""
    nodes = {NodeID(0, i): leaf for i, leaf in enumerate(leaves)}
    level, row = 0, leaves
    while len(row) > 1:
        row = [node_hash(row[i], row[i + 1]) for i in range(0, len(row) - 1, 2)]
        level += 1
        nodes.update((NodeID(level, i), digest) for i, digest in enumerate(row))
    return nodes


CT_NODES = perfect_nodes([leaf_hash(entry) for entry in CT_LEAVES])


@pytest.mark.parametrize("size", range(9))
def test_reference_tree_roots(size: int) -> None:
    hashes = [CT_NODES[node] for node in root_nodes(size)]
    assert fold_root(hashes) == CT_ROOTS[size]


@pytest.mark.parametrize("vector", RFC6962["inclusion"], ids=lambda v: f"{v['index']}-{v['size']}")
def test_reference_tree_inclusion(vector: dict[str, Any]) -> None:
    index, size = vector["index"], vector["size"]
    published = [bytes.fromhex(h) for h in vector["proof"]]
    plan = plan_inclusion(index, size)
    assert assemble(plan, CT_NODES) == published
    verify_inclusion(leaf_hash(CT_LEAVES[index]), index, size, published, CT_ROOTS[size])


@pytest.mark.parametrize(
    "vector", RFC6962["consistency"], ids=lambda v: f"{v['size1']}-{v['size2']}"
)
def test_reference_tree_consistency(vector: dict[str, Any]) -> None:
    size1, size2 = vector["size1"], vector["size2"]
    published = [bytes.fromhex(h) for h in vector["proof"]]
    assert assemble(plan_consistency(size1, size2), CT_NODES) == published
    verify_consistency(size1, size2, published, CT_ROOTS[size1], CT_ROOTS[size2])


# --- every happy case, mutated ---------------------------------------------------------

RNG = random.Random(6962)
SOME_HASH = bytes(RNG.getrandbits(8) for _ in range(32))


def flip(digest: bytes, bit: int) -> bytes:
    flipped = bytearray(digest)
    flipped[bit // 8] ^= 1 << (bit % 8)
    return bytes(flipped)


def generated_tree(size: int) -> tuple[list[bytes], dict[NodeID, bytes], dict[int, bytes]]:
    leaves = [leaf_hash(b"entry %d" % i) for i in range(size)]
    nodes = perfect_nodes(leaves)
    roots = {n: fold_root([nodes[node] for node in root_nodes(n)]) for n in range(size + 1)}
    return leaves, nodes, roots


def happy_inclusions() -> Iterator[Inclusion]:
    for raw in INCLUSION_VECTORS:
        if not raw["wantErr"]:
            yield inclusion_case(raw)
    for vector in RFC6962["inclusion"]:
        index, size = vector["index"], vector["size"]
        proof = tuple(bytes.fromhex(h) for h in vector["proof"])
        yield Inclusion(leaf_hash(CT_LEAVES[index]), index, size, proof, CT_ROOTS[size])
    leaves, nodes, roots = generated_tree(21)
    for size in range(1, 22):
        for index in range(size):
            proof = tuple(assemble(plan_inclusion(index, size), nodes))
            yield Inclusion(leaves[index], index, size, proof, roots[size])


def happy_consistencies() -> Iterator[Consistency]:
    for raw in CONSISTENCY_VECTORS:
        if not raw["wantErr"]:
            yield consistency_case(raw)
    for vector in RFC6962["consistency"]:
        size1, size2 = vector["size1"], vector["size2"]
        proof = tuple(bytes.fromhex(h) for h in vector["proof"])
        yield Consistency(size1, size2, proof, CT_ROOTS[size1], CT_ROOTS[size2])
    _, nodes, roots = generated_tree(21)
    for size2 in range(1, 22):
        for size1 in range(1, size2 + 1):
            proof = tuple(assemble(plan_consistency(size1, size2), nodes))
            yield Consistency(size1, size2, proof, roots[size1], roots[size2])


def proof_mutations(proof: tuple[bytes, ...], root: bytes) -> Iterator[tuple[bytes, ...]]:
    for position, digest in enumerate(proof):
        for bit in (0, 7, 100, 255):
            yield (*proof[:position], flip(digest, bit), *proof[position + 1 :])
    if proof:
        yield proof[:-1]
        yield proof[1:]
    yield (*proof, SOME_HASH)
    yield (*proof, root)
    yield (SOME_HASH, *proof)
    yield (*proof, b"")


def inclusion_mutations(case: Inclusion) -> Iterator[Inclusion]:
    for index in (case.index - 1, case.index + 1, case.index ^ 2, -1, case.size):
        yield replace(case, index=index)
    # Not size ± 1: a proof that fits both sizes can honestly verify for the other one,
    # the last hash being read as the right edge of the bigger or smaller tree.
    for size in (case.size * 2, case.size // 2, 0):
        yield replace(case, size=size)
    for proof in proof_mutations(case.proof, case.root):
        yield replace(case, proof=proof)
    yield replace(case, root=SOME_HASH)
    yield replace(case, root=EMPTY_ROOT)
    yield replace(case, root=flip(case.root, 0))
    yield replace(case, root=case.root[:31])
    yield replace(case, leaf=SOME_HASH)
    yield replace(case, leaf=flip(case.leaf, 255))
    yield replace(case, leaf=case.leaf + b"\x00")


def consistency_mutations(case: Consistency) -> Iterator[Consistency]:
    for size1 in (case.size1 - 1, case.size1 + 1, case.size1 ^ 2, 0):
        yield replace(case, size1=size1)
    for size2 in (case.size2 * 2, case.size2 // 2):
        yield replace(case, size2=size2)
    for proof in proof_mutations(case.proof, case.root2):
        yield replace(case, proof=proof)
    yield replace(case, proof=())
    yield replace(case, root1=flip(case.root1, 0))
    yield replace(case, root2=flip(case.root2, 255))
    yield replace(case, root1=SOME_HASH)
    yield replace(case, root2=SOME_HASH)
    yield replace(case, root1=case.root2, root2=case.root1)
    yield replace(case, root1=b"WrongRoot")


def check_mutations(
    happy: Any,
    mutations: Callable[[Any], Iterator[Any]],
    expected: Callable[[Any], type[ProofError]],
) -> int:
    happy.verify()
    count = 0
    for mutant in mutations(happy):
        if mutant == happy:
            continue
        error = expected(mutant)
        with pytest.raises(ProofError) as caught:
            mutant.verify()
        assert type(caught.value) is error, (mutant, caught.value)
        assert str(caught.value)
        count += 1
    return count


def test_every_inclusion_mutation_fails_with_its_error() -> None:
    cases = list(happy_inclusions())
    count = sum(check_mutations(c, inclusion_mutations, expected_inclusion_error) for c in cases)
    assert len(cases) == 241
    assert count > 5000


def test_every_consistency_mutation_fails_with_its_error() -> None:
    cases = list(happy_consistencies())
    count = sum(
        check_mutations(c, consistency_mutations, expected_consistency_error) for c in cases
    )
    assert len(cases) == 241
    assert count > 5000


# --- planning ---------------------------------------------------------------------------


def test_inclusion_plan_of_a_one_leaf_tree_is_empty() -> None:
    assert plan_inclusion(0, 1) == ProofPlan(())


@pytest.mark.parametrize(("index", "size"), [(0, 0), (1, 1), (5, 3), (-1, 4), (2**64, 2**64)])
def test_inclusion_plan_refuses_an_index_outside_the_tree(index: int, size: int) -> None:
    with pytest.raises(IndexOutOfRange, match=f"leaf index {index} is not in a tree of size"):
        plan_inclusion(index, size)


def test_inclusion_plan_ranges_and_nodes() -> None:
    plan = plan_inclusion(5, 7)
    assert plan.ranges == ((4, 5), (6, 7), (0, 4))
    assert plan.node_ids() == [NodeID(0, 4), NodeID(0, 6), NodeID(2, 0)]
    plan = plan_inclusion(0, 7)
    assert plan.ranges == ((1, 2), (2, 4), (4, 7))
    # The right edge [4, 7) is not a perfect subtree: it is folded from two nodes.
    assert plan.node_ids() == [NodeID(0, 1), NodeID(1, 1), NodeID(1, 2), NodeID(0, 6)]


def test_consistency_plan_ranges() -> None:
    assert plan_consistency(3, 7).ranges == ((2, 3), (3, 4), (0, 2), (4, 7))
    assert plan_consistency(4, 7).ranges == ((4, 7),)
    assert plan_consistency(6, 8).ranges == ((4, 6), (6, 8), (0, 4))


def test_consistency_plan_between_equal_sizes_is_empty() -> None:
    assert plan_consistency(5, 5) == ProofPlan(())
    assert plan_consistency(5, 5).node_ids() == []


def test_consistency_plan_from_size_zero_needs_allow_empty() -> None:
    with pytest.raises(IndexOutOfRange, match="allow_empty=True"):
        plan_consistency(0, 5)
    with pytest.raises(IndexOutOfRange, match="allow_empty=True"):
        plan_consistency(0, 0)
    assert plan_consistency(0, 5, allow_empty=True) == ProofPlan(())
    assert plan_consistency(0, 0, allow_empty=True) == ProofPlan(())


@pytest.mark.parametrize(("size1", "size2"), [(6, 5), (1, 0), (-1, 3), (-2, -1)])
def test_consistency_plan_refuses_shrinking_or_negative_sizes(size1: int, size2: int) -> None:
    with pytest.raises(IndexOutOfRange, match=f"from size {size1} to size {size2}"):
        plan_consistency(size1, size2, allow_empty=True)


def test_range_nodes_decompose_aligned_ranges() -> None:
    assert range_nodes(0, 1) == [NodeID(0, 0)]
    assert range_nodes(0, 13) == [NodeID(3, 0), NodeID(2, 2), NodeID(0, 12)]
    assert range_nodes(8, 14) == [NodeID(2, 2), NodeID(1, 6)]
    assert range_nodes(2**40, 2**41) == [NodeID(40, 1)]


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [(3, 3, "empty"), (4, 2, "empty"), (-1, 2, "negative"), (2, 5, "not aligned"),
     (4, 9, "not aligned"), (1, 3, "not aligned")],
)
def test_range_nodes_refuse_ranges_no_proof_uses(start: int, end: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        range_nodes(start, end)


def test_root_nodes() -> None:
    assert root_nodes(0) == []
    assert root_nodes(1) == [NodeID(0, 0)]
    assert root_nodes(70000) == [
        NodeID(16, 0), NodeID(12, 16), NodeID(8, 272), NodeID(6, 1092), NodeID(5, 2186),
        NodeID(4, 4374),
    ]
    with pytest.raises(ValueError, match="tree size"):
        root_nodes(-1)


def test_fold_root_of_nothing_is_the_empty_root() -> None:
    assert fold_root([]) == EMPTY_ROOT
    assert fold_root([SOME_HASH]) == SOME_HASH
    a, b, c = (leaf_hash(bytes([i])) for i in range(3))
    assert fold_root([a, b, c]) == node_hash(a, node_hash(b, c))


def test_node_id_coverage_and_validation() -> None:
    node = NodeID(3, 5)
    assert (node.start, node.end) == (40, 48)
    assert str(node) == "(level 3, index 5)"
    with pytest.raises(ValueError, match=">= 0"):
        NodeID(-1, 0)
    with pytest.raises(ValueError, match=">= 0"):
        NodeID(0, -1)


# --- assembly ---------------------------------------------------------------------------


def test_assemble_names_the_missing_node() -> None:
    plan = plan_inclusion(0, 7)
    hashes = dict.fromkeys(plan.node_ids(), SOME_HASH)
    del hashes[NodeID(1, 2)]
    with pytest.raises(MissingNode, match=r"\(level 1, index 2\) \(leaves \[4, 6\)\)") as caught:
        assemble(plan, hashes)
    assert caught.value.node == NodeID(1, 2)
    assert isinstance(caught.value, ProofError)
    assert not isinstance(caught.value, KeyError)


def test_assemble_refuses_a_malformed_node_hash() -> None:
    plan = plan_inclusion(0, 2)
    with pytest.raises(MalformedHash, match="must be 32 bytes, got 31"):
        assemble(plan, {NodeID(0, 1): bytes(31)})


def test_assemble_ignores_extra_hashes() -> None:
    plan = plan_inclusion(2, 3)
    assert assemble(plan, CT_NODES) == [CT_NODES[NodeID(1, 0)]]


# --- verification edge cases ------------------------------------------------------------


def test_single_leaf_tree_proves_its_leaf_with_an_empty_proof() -> None:
    leaf = leaf_hash(b"data")
    verify_inclusion(leaf, 0, 1, [], leaf)
    with pytest.raises(RootMismatch):
        verify_inclusion(leaf, 0, 1, [], SOME_HASH)
    with pytest.raises(MalformedHash, match="leaf hash must be 32 bytes, got 0"):
        verify_inclusion(b"", 0, 1, [], leaf)
    with pytest.raises(MalformedHash, match="root must be 32 bytes, got 0"):
        verify_inclusion(leaf, 0, 1, [], b"")


def test_inclusion_in_the_empty_tree_is_out_of_range() -> None:
    with pytest.raises(IndexOutOfRange):
        verify_inclusion(SOME_HASH, 0, 0, [], EMPTY_ROOT)
    with pytest.raises(IndexOutOfRange):
        root_from_inclusion_proof(SOME_HASH, 0, 0, [])


def test_wrong_length_message_gives_both_lengths() -> None:
    with pytest.raises(WrongProofLength, match="proof has 2 hashes, expected 3"):
        verify_inclusion(SOME_HASH, 0, 8, [SOME_HASH, SOME_HASH], CT_ROOTS[8])


def test_consistency_between_equal_sizes() -> None:
    verify_consistency(8, 8, [], CT_ROOTS[8], CT_ROOTS[8])
    with pytest.raises(RootMismatch, match="equal size 8"):
        verify_consistency(8, 8, [], CT_ROOTS[8], CT_ROOTS[7])
    with pytest.raises(WrongProofLength, match="expected 0"):
        verify_consistency(8, 8, [EMPTY_ROOT], CT_ROOTS[8], CT_ROOTS[8])


def test_consistency_from_size_zero() -> None:
    with pytest.raises(IndexOutOfRange, match="allow_empty=True"):
        verify_consistency(0, 8, [], EMPTY_ROOT, CT_ROOTS[8])
    with pytest.raises(IndexOutOfRange, match="allow_empty=True"):
        verify_consistency(0, 0, [], EMPTY_ROOT, EMPTY_ROOT)
    verify_consistency(0, 8, [], EMPTY_ROOT, CT_ROOTS[8], allow_empty=True)
    verify_consistency(0, 0, [], EMPTY_ROOT, EMPTY_ROOT, allow_empty=True)
    with pytest.raises(RootMismatch, match="root1 is not the root of the empty tree"):
        verify_consistency(0, 8, [], CT_ROOTS[1], CT_ROOTS[8], allow_empty=True)
    with pytest.raises(RootMismatch, match="root2 is not the root of the empty tree"):
        verify_consistency(0, 0, [], EMPTY_ROOT, CT_ROOTS[1], allow_empty=True)
    with pytest.raises(WrongProofLength):
        verify_consistency(0, 8, [EMPTY_ROOT], EMPTY_ROOT, CT_ROOTS[8], allow_empty=True)


def test_consistency_refuses_a_shrinking_tree() -> None:
    with pytest.raises(IndexOutOfRange, match="from size 8 to size 7"):
        verify_consistency(8, 7, [], CT_ROOTS[8], CT_ROOTS[7])


def test_consistency_mismatch_says_which_root() -> None:
    proof = assemble(plan_consistency(6, 8), CT_NODES)
    with pytest.raises(RootMismatch, match="size-6 root"):
        verify_consistency(6, 8, proof, CT_ROOTS[5], CT_ROOTS[8])
    with pytest.raises(RootMismatch, match="size-8 root"):
        verify_consistency(6, 8, proof, CT_ROOTS[6], CT_ROOTS[7])


def test_errors_are_value_errors() -> None:
    for error in (IndexOutOfRange, WrongProofLength, RootMismatch, MalformedHash, MissingNode):
        assert issubclass(error, ProofError)
    assert issubclass(ProofError, ValueError)


def test_verification_accepts_proofs_of_any_sequence_type() -> None:
    proof = assemble(plan_inclusion(5, 8), CT_NODES)
    leaf = leaf_hash(CT_LEAVES[5])
    verify_inclusion(leaf, 5, 8, tuple(proof), CT_ROOTS[8])
    consistency = assemble(plan_consistency(2, 5), CT_NODES)
    verify_consistency(2, 5, tuple(consistency), CT_ROOTS[2], CT_ROOTS[5])
