"""What the spool's fsync costs the caller's thread: its appends while the sender syncs.

Measures, on one `SpoolWriter` in a fresh folder: `--records` appends of a 400-byte
record on this thread while a second thread calls `sync()` every `--every` ms (what the
sender does after each pass), as `record()` writes while the sender ships. Each loop
iteration's wall time is counted, not only the append's, since a thread holding the GIL
or the writer's lock stops this one wherever it stands: p50, p99, p99.9, max over the
iterations that stayed in one segment, and apart, the time of each append that filled a
segment and opened the next (4 MB each, so about one in 10,000); and the mean of all
iterations (the round's wall time over its records, every stall included). Each of
`--repeat` rounds in a fresh folder.

No baseline: an analysis of one part of `record()`'s tail (which `bench/record_latency.py`
measures whole), run from each of two checkouts in turn to compare them
(`PYTHONPATH=<checkout>/src:<checkout>`). Not part of `bench/run.py`.
Reproduce: `.venv/bin/python bench/spool_sync.py --records 200000`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:  # run as a script: bench/ is on the path, its parent is not
    sys.path.insert(0, ROOT)

from bench import common

from trailseal.client.spool import SpoolWriter, claim_slot

RECORD = b"x" * 400


def measure(folder: Path, records: int, every_ms: float) -> dict[str, Any]:
    """One round: the iterations' percentiles (us) and each rotation's time (ms)."""
    slot = claim_slot(folder)
    assert slot is not None
    writer = SpoolWriter(slot)
    stop = threading.Event()

    def sync() -> None:
        while not stop.wait(every_ms / 1000):
            writer.sync()

    syncer = threading.Thread(target=sync, name="syncer")
    syncer.start()
    steady: list[int] = []
    rotations: list[int] = []
    clock = time.perf_counter_ns
    last = started = clock()
    try:
        for _ in range(records):
            segment = writer.segment_number
            writer.append(RECORD)
            now = clock()
            (rotations if writer.segment_number != segment else steady).append(now - last)
            last = now
    finally:
        stop.set()
        syncer.join()
        writer.close()
        slot.release()

    def us(q: float) -> float:
        return round(common.percentile(steady, q) / 1000, 2)

    return {"mean_us": round((last - started) / records / 1000, 3),
            "p50_us": us(0.50), "p99_us": us(0.99), "p999_us": us(0.999),
            "max_us": round(max(steady) / 1000, 1),
            "rotations_ms": [round(r / 1e6, 2) for r in rotations]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--every", type=float, default=20.0, help="ms between syncs")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rounds = []
    for k in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="trailseal-spool-") as tmp:
            rounds.append(measure(Path(tmp, str(k)), args.records, args.every))
    medians = {key: common.spread([r[key] for r in rounds])
               for key in ("mean_us", "p50_us", "p99_us", "p999_us", "max_us")}
    every_rotation = [ms for r in rounds for ms in r["rotations_ms"]]
    if every_rotation:
        medians["rotation_ms"] = common.spread(every_rotation)
    print(json.dumps({"records": args.records, "sync_every_ms": args.every,
                      "spread": medians, "rounds": rounds}, indent=2))


if __name__ == "__main__":
    main()
