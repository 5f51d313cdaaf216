"""The API's Python per event on ingest, in process: each step of a posted batch.

Measures, for N events of the shared log's shapes posted in batches of 500 (as
`bench/ingest_rate.py` posts them), the CPU time per event of each step of
`POST /v1/events` that is ingest's own Python, without HTTP or a database:

- **read the body**: `ingest.parse_body` of the request's bytes;
- **prepare**: `ingest.prepare` (check each event, its stored document, canonical bytes
  and leaf hash);
- **inbox parameters**: the inbox write's columns (`ingest._columns`) and their binary
  array parameters, dumped by psycopg as `ingest.write_inbox` sends them.

Each step is run over all the batches `--repeat` times; the figures are the best and the
median of those passes (the best is the steadiest on a busy machine). No baseline: an
analysis of the API's share of ingest (which `bench/cpu_split.py` measures whole), run
from each of two checkouts in turn to compare them (`PYTHONPATH=<checkout>/src`).
Not part of `bench/run.py`.
Reproduce: `.venv/bin/python bench/ingest_python.py --events 20000`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:  # run as a script: bench/ is on the path, its parent is not
    sys.path.insert(0, ROOT)

from bench import common, ingest_rate
from psycopg._queries import PostgresQuery
from psycopg.adapt import Transformer

from trailseal import ingest

NAME = "ingest_python"


def _parameters(prepared: list[ingest.Prepared], received_at: Any) -> None:
    params = {"tenant": "bench", "received_at": received_at, **ingest._columns(prepared)}
    query = PostgresQuery(Transformer())
    query.convert(ingest._INSERT, params)
    query.dump(params)


def _timed(step: Callable[[Any], Any], inputs: list[Any], count: int,
           passes: int) -> dict[str, float]:
    """CPU microseconds per event of ``step`` over every input, best and median."""
    times = []
    for _ in range(passes):
        start = time.process_time()
        for item in inputs:
            step(item)
        times.append((time.process_time() - start) / count * 1e6)
    return {"best": round(min(times), 3), "median": round(statistics.median(times), 3)}


def measure(count: int, passes: int) -> dict[str, Any]:
    bodies = ingest_rate.bodies(count)
    at = ingest.now()
    raws = [ingest.parse_body(body) for body in bodies]
    prepared = [ingest.prepare(raw, "bench", at) for raw in raws]
    steps = {
        "read the body": _timed(ingest.parse_body, bodies, count, passes),
        "prepare": _timed(lambda raw: ingest.prepare(raw, "bench", at), raws, count, passes),
        "inbox parameters": _timed(lambda p: _parameters(p, at), prepared, count, passes),
    }
    total = {k: round(sum(s[k] for s in steps.values()), 3) for k in ("best", "median")}
    return {"cpu_us_per_event": steps, "total": total}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or NAME).split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5, help="passes over the batches")
    args = parser.parse_args()
    out = {"name": NAME, "size": args.events, "passes": args.repeat,
           "batch": ingest_rate.BATCH, **measure(args.events, args.repeat),
           "machine": common.machine()}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
