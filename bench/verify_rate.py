"""How fast `trailseal verify` checks a log, against SHA-256 over the same bytes.

Measures: events per second of `verify_tenant` (re-canonicalisation, leaf hashes, chain,
tree, checkpoints) over N events sequenced by the real sequencer, on an embedded
PostgreSQL in a temporary folder: with one worker process per CPU, and in one process.
Baseline, same run: SHA-256 of the same canonical bytes read in seq order in binary, in
one process. Min/median/max over --repeat runs, interleaved. Reproduce:
`.venv/bin/python bench/verify_rate.py --events 200000`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from psycopg import AsyncConnection

from trailseal import ingest
from trailseal.ids import uuid7
from trailseal.integrity.checkpoint import log_origin
from trailseal.runtime import build_sequencer, load_signer
from trailseal.settings import Settings
from trailseal.store import create_pool, embedded, migrate
from trailseal.tenants import create_tenant
from trailseal.verify import verify_tenant

TENANT = "bench"


def _event(i: int) -> dict[str, object]:
    return {
        "id": str(uuid7()),
        "actor": {"type": "user", "id": f"u_{i % 1000}", "name": "Bench User"},
        "action": "user.role.updated",
        "target": {"type": "user", "id": f"u_{(i * 7) % 1000}"},
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
    for start in range(0, events, 1000):
        at = ingest.now()
        batch = ingest.prepare([_event(i) for i in range(start, min(events, start + 1000))],
                               TENANT, at)
        async with pool.connection() as conn:
            await ingest.write_inbox(conn, TENANT, batch, at)
        await sequencer.sequence_tenant(TENANT)
    await pool.close()


async def _verify_seconds(url: str, settings: Settings, workers: int) -> float:
    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        report = await verify_tenant(conn, TENANT, [load_signer(settings).verifier()],
                                     origin=log_origin("bench.local", TENANT),
                                     database_url=url, workers=workers)
        seconds = time.perf_counter() - started
    assert report.ok, report.finding
    return seconds


async def _baseline_seconds(url: str) -> float:
    """SHA-256 of every event's bytes, read in seq order in binary, in one process."""
    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        await conn.execute("SET role trailseal_owner")
        await conn.execute("SELECT set_config('trailseal.tenant', %s, false)", (TENANT,))
        async with conn.transaction(), conn.cursor(name="baseline", binary=True) as cur:
            cur.itersize = 4096
            await cur.execute("SELECT canonical FROM trailseal.events WHERE tenant = %s"
                              " ORDER BY seq", (TENANT,))
            async for (canonical,) in cur:
                hashlib.sha256(b"\x00" + canonical).digest()
        return time.perf_counter() - started


def _spread(events: int, seconds: list[float]) -> dict[str, float]:
    rates = sorted(events / s for s in seconds)
    return {"min": rates[0], "median": statistics.median(rates), "max": rates[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    workers = os.cpu_count() or 1
    runs: dict[str, list[float]] = {"workers": [], "in_process": [], "sha256": []}
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), log_origin="bench.local")
        url = embedded.start(Path(tmp), database="trailseal")
        migrate.migrate(url)
        asyncio.run(populate(url, settings, args.events))
        for _ in range(args.repeat):  # interleaved, so drifts in load touch all three
            runs["workers"].append(asyncio.run(_verify_seconds(url, settings, workers)))
            runs["in_process"].append(asyncio.run(_verify_seconds(url, settings, 0)))
            runs["sha256"].append(asyncio.run(_baseline_seconds(url)))
    result: dict[str, object] = {"events": args.events, "cpus": workers}
    for name, seconds in runs.items():
        result[f"{name}_events_per_second"] = _spread(args.events, seconds)
    result["ratio_median_workers_to_sha256"] = (
        statistics.median(runs["sha256"]) / statistics.median(runs["workers"])
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
