"""The API's Python per event on ingest, in process: each step of a posted batch.

Measures, for N events of the shared log's shapes posted in batches of 500 (as
`bench/ingest_rate.py` posts them), the CPU time per event of each step of
`POST /v1/events` that is ingest's own Python, without HTTP or a database:

- **read the body**: `ingest.parse_body` of the request's bytes;
- **prepare**: `ingest.prepare` (check each event, its stored document, canonical bytes
  and leaf hash);
- **inbox parameters**: the inbox write's columns (`ingest._columns`) and their binary
  array parameters, dumped by psycopg as `ingest.write_inbox` sends them.

The batches are taken `--repeat` times over, each batch's steps one after the other as a
request takes them; the figures are the best and the median of those passes (the best is
the steadiest on a busy machine). The process first imports the server's modules, so the
garbage collector has the heap of a `trailseal serve` to walk; with `--frozen` it then
leaves them out of its passes, as `trailseal serve` does (`runtime.freeze_startup`). No
baseline: an analysis of the API's share of ingest (which `bench/cpu_split.py` measures
whole), run from each of two checkouts in turn to compare them
(`PYTHONPATH=<checkout>/src`). Not part of `bench/run.py`.
Reproduce: `.venv/bin/python bench/ingest_python.py --events 20000`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:  # run as a script: bench/ is on the path, its parent is not
    sys.path.insert(0, ROOT)

from bench import common, ingest_rate
from psycopg._queries import PostgresQuery
from psycopg.adapt import Transformer

import trailseal.web.app  # noqa: F401  (the heap of a server)
from trailseal import ingest

NAME = "ingest_python"


def _parameters(prepared: list[ingest.Prepared], received_at: Any) -> None:
    params = {"tenant": "bench", "received_at": received_at, **ingest._columns(prepared)}
    query = PostgresQuery(Transformer())
    query.convert(ingest._INSERT, params)
    query.dump(params)


def measure(count: int, passes: int) -> dict[str, Any]:
    """Each batch's steps one after the other, as a request takes them (what one makes is
    dropped before the next batch, as in a server); the CPU of each step summed over a
    pass, per event, then the best and median of the passes."""
    bodies = ingest_rate.bodies(count)
    at = ingest.now()
    steps = ("read the body", "prepare", "inbox parameters")
    passes_us: dict[str, list[float]] = {step: [] for step in steps}
    for _ in range(passes):
        spent = dict.fromkeys(steps, 0.0)
        for body in bodies:
            t0 = time.process_time()
            raw = ingest.parse_body(body)
            t1 = time.process_time()
            prepared = ingest.prepare(raw, "bench", at)
            t2 = time.process_time()
            _parameters(prepared, at)
            t3 = time.process_time()
            spent["read the body"] += t1 - t0
            spent["prepare"] += t2 - t1
            spent["inbox parameters"] += t3 - t2
            del raw, prepared
        for step in steps:
            passes_us[step].append(spent[step] / count * 1e6)
    totals = [sum(values) for values in zip(*passes_us.values(), strict=True)]
    figures = {step: _spread(values) for step, values in passes_us.items()}
    return {"cpu_us_per_event": figures, "total": _spread(totals)}


def _spread(values: list[float]) -> dict[str, float]:
    return {"best": round(min(values), 3), "median": round(statistics.median(values), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or NAME).split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5, help="passes over the batches")
    parser.add_argument("--frozen", action="store_true",
                        help="freeze the start's objects first, as a service process does")
    args = parser.parse_args()
    if args.frozen:
        from trailseal.runtime import freeze_startup
        freeze_startup()
    out = {"name": NAME, "size": args.events, "passes": args.repeat, "frozen": args.frozen,
           "batch": ingest_rate.BATCH, **measure(args.events, args.repeat),
           "machine": common.machine()}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
