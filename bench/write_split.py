"""Where PostgreSQL's time goes when an event is written: each write of the ingest path
against COPY of the same rows, per event, in one database.

Measures, for the first N rows of a sequenced log copied aside: INSERT … SELECT into a
table like `event_ids` (the dedupe), into one like `inbox` (what the API writes), into
one like `events` (what the sequencer writes: every index of the log), the DELETE of
the inbox rows by position (the sequencer's), and binary COPY into a table like
`events` (the ingest benchmark's baseline). Tables made `LIKE … INCLUDING ALL`, without
partitions, triggers or row-level security; each step timed on its own, three rounds,
medians. Not part of `bench/run.py`: an analysis, not a goal.
Reproduce: `.venv/bin/python bench/write_split.py --events 20000`.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:  # run as a script: bench/ is on the path, its parent is not
    sys.path.insert(0, ROOT)

import psycopg
from bench import common

_INBOX_COLUMNS = (
    "tenant, id, occurred_at, received_at, actor_type, actor_id, actor_name, action,"
    " target_type, target_id, target_name, outcome, ip, request_id, correlation_id,"
    " service, source, source_seq, canonical, leaf_hash")
STEPS = {
    "event_ids insert": "INSERT INTO x_ids SELECT tenant, id, received_at FROM src",
    "inbox insert": f"INSERT INTO x_inbox ({_INBOX_COLUMNS}) SELECT {_INBOX_COLUMNS} FROM src",
    "inbox delete by position": "DELETE FROM x_inbox WHERE pos IN (SELECT pos FROM x_inbox)",
    "events insert": "INSERT INTO x_events SELECT * FROM src",
}


def measure(url: str, tenant: str, count: int, rounds: int) -> dict[str, float]:
    """Median microseconds per event of each step."""
    times: dict[str, list[float]] = {name: [] for name in [*STEPS, "COPY into events"]}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE src AS SELECT * FROM trailseal.events"
                     " WHERE tenant = %s ORDER BY seq LIMIT %s", (tenant, count))
        rows = conn.execute("SELECT count(*) FROM src").fetchone()
        assert rows is not None and rows[0] == count
        with conn.cursor().copy("COPY src TO STDOUT (FORMAT binary)") as copy:
            dump = b"".join(bytes(chunk) for chunk in copy)
        for _ in range(rounds):
            conn.execute("DROP TABLE IF EXISTS x_ids, x_inbox, x_events")
            conn.execute("CREATE TABLE x_ids (LIKE trailseal.event_ids INCLUDING ALL)")
            conn.execute("CREATE TABLE x_inbox (LIKE trailseal.inbox INCLUDING ALL)")
            conn.execute("CREATE TABLE x_events (LIKE trailseal.events INCLUDING ALL)")
            conn.execute("CHECKPOINT")
            for name, statement in STEPS.items():
                started = time.perf_counter()
                conn.execute(statement)
                times[name].append((time.perf_counter() - started) / count * 1e6)
            conn.execute("TRUNCATE x_events")
            conn.execute("CHECKPOINT")
            started = time.perf_counter()
            with conn.cursor().copy("COPY x_events FROM STDIN (FORMAT binary)") as copy:
                copy.write(dump)
            times["COPY into events"].append((time.perf_counter() - started) / count * 1e6)
        conn.execute("DROP TABLE x_ids, x_inbox, x_events")
    return {name: round(statistics.median(values), 1) for name, values in times.items()}


def run(env: common.Env, size: int) -> dict[str, Any]:
    """The split over the first ``size`` rows of a log of ``size`` events."""
    tenant = env.log(size)
    return {"events": size, "microseconds_per_event": measure(env.url, tenant, size, env.repeat),
            "machine": common.machine()}


def main() -> None:
    common.script(__doc__ or "write_split", run)


if __name__ == "__main__":
    main()
