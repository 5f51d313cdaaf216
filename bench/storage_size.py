"""Bytes per event on disk: PostgreSQL (table and indexes) and an archive segment,
against the raw JSON of the events as posted.

Measures: after loading a log of N events (and before any other benchmark writes), the
size of every partition of `trailseal.events` with its TOAST and indexes
(`pg_total_relation_size`), divided by the number of rows; separately the heap alone and
the indexes alone; and the overhead tables (`inbox`, `event_ids`, `tiles`, `log_heads`,
`checkpoints`) per event. Baseline: the mean size of the events' JSON as a producer posts
it (compact, UTF-8). The archive segment's bytes per event come from
`bench/segment_size.py` when that benchmark exists, run with at most SEGMENT_EVENTS
events: a segment holds at most 10,000, so its bytes per event no longer change with
the log's size past a hundred segments, and a second 10M-event log would double a full
run's hours for the same figure. Reproduce:
`.venv/bin/python bench/storage_size.py --events 100000`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:  # run as a script: bench/ is on the path, its parent is not
    sys.path.insert(0, ROOT)

import psycopg
from bench import common

NAME = "storage"
SIZES = {"smoke": 200, "quick": 100_000, "full": 10_000_000}
GOAL_SEGMENT = 0.15
OVERHEAD = ("inbox", "event_ids", "tiles", "log_heads", "checkpoints")
SEGMENT_SCRIPT = Path(__file__).with_name("segment_size.py")
SEGMENT_EVENTS = 1_000_000


def _sizes(url: str, table: str) -> dict[str, int]:
    """Heap (with TOAST), indexes and total bytes of ``table`` and all its partitions."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(pg_table_size(relid)), 0),"
            " coalesce(sum(pg_indexes_size(relid)), 0),"
            " coalesce(sum(pg_total_relation_size(relid)), 0)"
            " FROM (SELECT relid FROM pg_partition_tree(%s::regclass)"
            " UNION SELECT %s::regclass) AS parts",  # a plain table is no partition tree
            (f"trailseal.{table}",) * 2).fetchone()
    assert row is not None
    return {"table": int(row[0]), "indexes": int(row[1]), "total": int(row[2])}


def raw_json_bytes(sample: int) -> float:
    """The mean size of an event's JSON as posted, over ``sample`` events."""
    sizes = [len(json.dumps(e, separators=(",", ":")).encode()) for e in common.events(sample)]
    return sum(sizes) / len(sizes)


def segment(size: int) -> dict[str, Any]:
    """bench/segment_size.py's own figures, or why there are none."""
    if not SEGMENT_SCRIPT.exists():
        return {"measured": False, "reason": "not measured yet: bench/segment_size.py (the "
                "archive's benchmark) does not exist in this checkout"}
    done = subprocess.run([sys.executable, str(SEGMENT_SCRIPT), "--events", str(size)],
                          capture_output=True, text=True, timeout=7200)
    if done.returncode != 0:
        return {"measured": False, "reason": "bench/segment_size.py failed: "
                + done.stderr.strip().splitlines()[-1:][0] if done.stderr.strip() else "?"}
    try:
        found = json.loads(done.stdout)
    except ValueError:
        return {"measured": False, "reason": "bench/segment_size.py printed no JSON"}
    if "segment_bytes_per_event" not in found or "segment_ratio_to_raw" not in found:
        return {"measured": False, "output": found, "reason": "bench/segment_size.py printed "
                "no segment_bytes_per_event and segment_ratio_to_raw"}
    return {"measured": True, "bytes_per_event": float(found["segment_bytes_per_event"]),
            "ratio_to_raw": float(found["segment_ratio_to_raw"]), "output": found,
            "reason": None}


def measure(env: common.Env, size: int) -> dict[str, Any]:
    """Bytes per event of each part, after loading a log of ``size`` events."""
    env.log(size)
    with psycopg.connect(env.url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
        row = conn.execute("SELECT count(*) FROM trailseal.events").fetchone()
    rows = int(row[0]) if row else 0
    events = _sizes(env.url, "events")
    out: dict[str, Any] = {
        "rows": rows,
        "events_total_per_event": events["total"] / rows,
        "events_table_per_event": events["table"] / rows,
        "events_indexes_per_event": events["indexes"] / rows,
        "overhead_per_event": {t: _sizes(env.url, t)["total"] / rows for t in OVERHEAD},
        "raw_json_per_event": raw_json_bytes(min(size, 20_000)),
    }
    return out


def run(env: common.Env, size: int) -> dict[str, Any]:
    """Bytes per event in PostgreSQL and in a segment, against the raw JSON."""
    found = measure(env, size)
    seg = segment(min(size, SEGMENT_EVENTS))
    raw = found["raw_json_per_event"]
    one = lambda v: {"min": v, "median": v, "max": v}  # noqa: E731  a size does not vary
    baselines = {"raw JSON as posted": one(raw)}
    met = None
    if seg["measured"]:
        baselines["archive segment"] = one(seg["bytes_per_event"])
        # Against the raw JSON of the segment benchmark's own events, which it reports.
        met = seg["ratio_to_raw"] <= GOAL_SEGMENT
    return common.result(
        NAME,
        measures="bytes per event in PostgreSQL: every partition of trailseal.events with "
                 "its TOAST and indexes, over the rows; the overhead tables separately",
        baseline="the mean size of the events' JSON as posted (compact UTF-8)",
        goal=f"report; archive segment <= {GOAL_SEGMENT:g}x the raw JSON",
        reproduce=f"make bench ARGS='--only {NAME}'  (or: .venv/bin/python "
                  f"bench/storage_size.py --events {size})",
        size=found["rows"], unit="bytes/event", subject=one(found["events_total_per_event"]),
        baselines=baselines, ratio=found["events_total_per_event"] / raw,
        ratio_means="PostgreSQL bytes per event / raw JSON bytes per event",
        met=met, segment=seg, **{k: v for k, v in found.items() if k != "rows"},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = common.start(Path(tmp), repeat=1)
        try:
            out = measure(env, args.events)
        finally:
            env.close()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
