"""The integrity work per event, in one process: canonical bytes, leaf hash, chain, tiles.

Measures: microseconds per event of what the ingest API and the sequencer compute for
each event's integrity: RFC 8785 canonicalisation of the stored document
(`canonicalize`), the RFC 6962 leaf hash, the chain hash, and appending the leaf to the
Merkle tiles (`TreeState.extend`, in batches of 1,000; the sequencer's are up to 5,000).
No I/O.
Baselines, same run: SHA-256 of the same canonical bytes (the floor: one hash per event),
and pymerkle's in-memory tree appending the same bytes (`InmemoryTree.append_entry`).
Min/median/max over --repeat runs, interleaved. Reproduce:
`.venv/bin/python bench/integrity_cost.py --events 100000`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:  # run as a script: bench/ is on the path, its parent is not
    sys.path.insert(0, ROOT)

from bench import common

from trailseal import ingest
from trailseal.integrity import GENESIS_CHAIN_HASH, HASH_SIZE, canonicalize, leaf_hash
from trailseal.integrity.hashing import chain_hashes
from trailseal.integrity.tiles import TreeState

NAME = "integrity"
SIZES = {"smoke": 200, "quick": 100_000, "full": 1_000_000}
GOAL_US = 3.0
BATCH = 1000


def documents(count: int) -> list[dict[str, Any]]:
    """The stored documents of ``count`` events (what the API canonicalises)."""
    at = ingest.now()
    return [p.document for p in ingest.prepare(list(common.events(count)), "bench", at)]


def _subject(docs: list[dict[str, Any]]) -> float:
    started = time.perf_counter()
    tree, chain = TreeState(), GENESIS_CHAIN_HASH
    for start in range(0, len(docs), BATCH):
        # As the API (a leaf hash per event) and then the sequencer (the batch's chain,
        # split per event for its insert, and its tiles) do.
        leaves = b"".join([leaf_hash(canonicalize(doc)) for doc in docs[start:start + BATCH]])
        joined = chain_hashes(chain, leaves)
        chains = [joined[at:at + HASH_SIZE] for at in range(0, len(joined), HASH_SIZE)]
        chain = chains[-1]
        tree.extend(leaves)
    tree.root()
    return time.perf_counter() - started


def _sha256(entries: list[bytes]) -> float:
    sha256 = hashlib.sha256
    started = time.perf_counter()
    for entry in entries:
        sha256(entry).digest()
    return time.perf_counter() - started


def _pymerkle(entries: list[bytes]) -> float:
    from pymerkle import InmemoryTree

    tree = InmemoryTree(algorithm="sha256")
    started = time.perf_counter()
    for entry in entries:
        tree.append_entry(entry)
    return time.perf_counter() - started


def pymerkle_missing() -> str | None:
    """Why the pymerkle baseline cannot run here, or None."""
    try:
        import pymerkle  # noqa: F401
    except ImportError:
        return "pymerkle is not installed (it is in the bench extra: pip install -e '.[bench]')"
    return None


def measure(count: int, repeat: int) -> tuple[dict[str, list[float]], str | None]:
    """Microseconds per event of each way, and why pymerkle was left out (or None)."""
    docs = documents(count)
    entries = [canonicalize(doc) for doc in docs]
    runs = {"trailseal": lambda: _subject(docs), "sha256": lambda: _sha256(entries)}
    missing = pymerkle_missing()
    if missing is None:
        runs["pymerkle"] = lambda: _pymerkle(entries)
    seconds = common.interleaved(repeat, runs)
    return {name: [s / count * 1e6 for s in values] for name, values in seconds.items()}, missing


def run(env: common.Env, size: int) -> dict[str, Any]:
    """The integrity work per event against SHA-256 and pymerkle."""
    micros, missing = measure(size, env.repeat)
    subject = common.spread(micros["trailseal"])
    baselines = {"sha256": common.spread(micros["sha256"])}
    skipped = {}
    if missing is None:
        baselines["pymerkle InmemoryTree.append_entry"] = common.spread(micros["pymerkle"])
    else:
        skipped["pymerkle InmemoryTree.append_entry"] = missing
    return common.result(
        NAME,
        measures="microseconds per event, in one process: canonicalize + leaf hash + chain "
                 "hash + TreeState.extend (in batches of 1,000)",
        baseline="SHA-256 of the same canonical bytes; pymerkle's in-memory append of the "
                 "same bytes",
        goal=f"<= {GOAL_US:g} us per event",
        reproduce=f"make bench ARGS='--only {NAME}'  (or: .venv/bin/python "
                  f"bench/integrity_cost.py --events {size})",
        size=size, unit="us/event", subject=subject, baselines=baselines,
        ratio=subject["median"] / baselines["sha256"]["median"],
        ratio_means="trailseal / SHA-256, medians (lower is cheaper)",
        met=subject["median"] <= GOAL_US, skipped_baselines=skipped,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    micros, missing = measure(args.events, args.repeat)
    out: dict[str, Any] = {name: common.spread(v) for name, v in micros.items()}
    if missing:
        out["pymerkle"] = missing
    print(json.dumps({"events": args.events, "us_per_event": out}, indent=2))


if __name__ == "__main__":
    main()
