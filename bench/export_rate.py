"""How fast exports run, and that their memory does not grow with their size.

Populates N events (sequenced by the real sequencer) on an embedded PostgreSQL in a
temporary folder, the first tenth of them under an action of their own; then, for each
format, exports that tenth and then all N through `export_chunks` (the code behind
`GET /v1/export` and `trailseal export --format`), each in a fresh process, and reports
rows per second, bytes, the resident set size before the export and the highest seen
while it ran (sampled after every chunk), and the process's peak RSS (and that of an idle
process that only imported and connected, for reference).
Reproduce: `.venv/bin/python bench/export_rate.py --events 1000000`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from psycopg import AsyncConnection

from trailseal import ingest
from trailseal.ids import uuid7
from trailseal.reading.export import FORMATS, export_chunks
from trailseal.reading.query import EventFilter
from trailseal.runtime import build_sequencer
from trailseal.settings import Settings
from trailseal.store import create_pool, embedded, migrate
from trailseal.tenants import create_tenant

TENANT = "bench"
SMALL_ACTION = "report.first_tenth.exported"


def _event(i: int, small: int) -> dict[str, object]:
    return {
        "id": str(uuid7()),
        "actor": {"type": "user", "id": f"u_{i % 1000}", "name": "Bench User"},
        "action": SMALL_ACTION if i < small else "user.role.updated",
        "target": {"type": "user", "id": f"u_{(i * 7) % 1000}", "name": "=SUM(A1:A9)"},
        "changes": {"role": {"before": "viewer", "after": "editor"}},
        "context": {"ip": "203.0.113.7", "request_id": f"req_{i}", "service": "web"},
        "metadata": {"n": i, "note": "x" * 120},
    }


async def populate(url: str, settings: Settings, events: int) -> None:
    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        await create_tenant(conn, TENANT)
    pool = create_pool(url, min_size=1, max_size=2)
    await pool.open(wait=True)
    sequencer = build_sequencer(pool, settings)
    small = events // 10
    for start in range(0, events, 1000):
        at = ingest.now()
        raw = [_event(i, small) for i in range(start, min(events, start + 1000))]
        async with pool.connection() as conn:
            await ingest.write_inbox(conn, TENANT, ingest.prepare(raw, TENANT, at), at)
        await sequencer.sequence_tenant(TENANT)
    await pool.close()


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
        settings = Settings(data_dir=Path(tmp), log_origin="bench.local")
        url = embedded.start(Path(tmp), database="trailseal")
        try:
            migrate.migrate(url)
            started = time.perf_counter()
            asyncio.run(populate(url, settings, args.events))
            populate_seconds = time.perf_counter() - started
            results = measure(url)
        finally:
            embedded.stop(Path(tmp))
    print(json.dumps({"events": args.events, "populate_seconds": round(populate_seconds, 1),
                      "exports": results}, indent=2))


if __name__ == "__main__":
    main()
