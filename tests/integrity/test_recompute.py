"""recompute: the per-entry half of verification, on runs cut anywhere in the log."""

from __future__ import annotations

import pytest

from trailseal.integrity import GENESIS_CHAIN_HASH, canonicalize, chain_hash, leaf_hash
from trailseal.integrity.recompute import recompute
from trailseal.integrity.tiles import TreeState, subtree_root


def _log(n: int) -> tuple[list[bytes], list[bytes], list[bytes]]:
    entries = [canonicalize({"n": i, "action": "user.created"}) for i in range(n)]
    leaves = [leaf_hash(e) for e in entries]
    chains, chain = [], GENESIS_CHAIN_HASH
    for leaf in leaves:
        chain = chain_hash(chain, leaf)
        chains.append(chain)
    return entries, leaves, chains


ENTRIES, LEAVES, CHAINS = _log(900)


def _run(start: int, end: int, entries=None, leaves=None, chains=None, recorded=None):
    entries = (entries or ENTRIES)[start:end]
    leaves = (leaves or LEAVES)[start:end]
    chains = (chains or CHAINS)[start:end]
    previous = CHAINS[start - 1] if start else GENESIS_CHAIN_HASH
    recorded = b"".join(LEAVES[start:end]) if recorded is None else recorded
    return recompute(entries, b"".join(leaves), b"".join(chains), previous, recorded, start)


@pytest.mark.parametrize(("start", "end", "tiles"), [
    (0, 900, [0, 1, 2]), (100, 700, [1]), (256, 512, [1]), (257, 511, []), (0, 0, []),
])
def test_a_clean_run(start, end, tiles):
    done = _run(start, end)
    assert (done.first_bad_entry, done.first_bad_chain) == (None, None)
    assert done.leaves == b"".join(LEAVES[start:end])
    assert sorted(done.tile_roots) == tiles
    for tile, root in done.tile_roots.items():
        assert root == subtree_root(LEAVES[tile * 256 : tile * 256 + 256])


def test_tile_roots_from_elsewhere_build_the_same_tree():
    plain, helped = TreeState(), TreeState()
    plain.extend(b"".join(LEAVES))
    for start in range(0, 900, 300):
        helped.extend(b"".join(LEAVES[start : start + 300]), _run(start, start + 300).tile_roots)
    assert (helped.size, helped.edge, helped.root()) == (plain.size, plain.edge, plain.root())


def test_an_entry_that_is_not_canonical():
    entries = list(ENTRIES)
    entries[305] = b'{"n": 305}'
    leaves = list(LEAVES)
    leaves[305] = leaf_hash(entries[305])  # stored consistently, but not canonical
    done = _run(300, 400, entries=entries, leaves=leaves,
                recorded=b"".join(leaves[300:400]))
    assert done.first_bad_entry == 5


def test_a_stored_leaf_that_differs():
    leaves = list(LEAVES)
    leaves[310] = bytes(32)
    assert _run(300, 400, leaves=leaves).first_bad_entry == 10


def test_a_recorded_leaf_that_differs_or_is_missing():
    recorded = bytearray(b"".join(LEAVES[300:400]))
    recorded[32 * 7] ^= 1
    assert _run(300, 400, recorded=bytes(recorded)).first_bad_entry == 7
    assert _run(300, 400, recorded=b"".join(LEAVES[300:350])).first_bad_entry == 50


def test_a_chain_hash_that_differs():
    chains = list(CHAINS)
    chains[333] = bytes(32)
    done = _run(300, 400, chains=chains)
    assert (done.first_bad_entry, done.first_bad_chain) == (None, 33)


def test_lengths_must_agree():
    with pytest.raises(ValueError, match="differ in length"):
        recompute(ENTRIES[:3], b"".join(LEAVES[:2]), b"".join(CHAINS[:3]),
                  GENESIS_CHAIN_HASH, b"", 0)


def test_stored_hashes_of_the_wrong_length_are_departures_not_errors():
    from trailseal.verify_read import recompute_rows

    raw = [(i, ENTRIES[i], LEAVES[i], CHAINS[i]) for i in range(299, 400)]
    raw[11] = (310, ENTRIES[310], LEAVES[310][:31], CHAINS[310])  # seq 310's leaf cut short
    run = recompute_rows(300, raw, b"".join(LEAVES[300:400]))
    assert run.done.first_bad_entry == 10
    raw = [(i, ENTRIES[i], LEAVES[i], CHAINS[i]) for i in range(299, 400)]
    raw[21] = (320, ENTRIES[320], LEAVES[320], CHAINS[320] + b"x")  # seq 320's chain, longer
    assert recompute_rows(300, raw, b"".join(LEAVES[300:400])).done.first_bad_chain == 20
    raw = [(i, ENTRIES[i], LEAVES[i], CHAINS[i]) for i in range(299, 400)]
    raw[0] = (299, ENTRIES[299], LEAVES[299], CHAINS[299][:31])  # the chain before the run
    assert recompute_rows(300, raw, b"".join(LEAVES[300:400])).done.first_bad_chain == 0
