"""How fast `trailseal verify` checks a log, against SHA-256 over the same bytes.

Measures: events per second of `verify_tenant` (re-canonicalisation, leaf hashes, chain,
tree, checkpoints) over N events sequenced by the real sequencer, on an embedded
PostgreSQL in a temporary folder. Baseline, same run: SHA-256 of the same canonical bytes
read the same way. Reproduce: `.venv/bin/python bench/verify_rate.py --events 100000`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
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


async def measure(url: str, settings: Settings) -> dict[str, float]:
    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        report = await verify_tenant(conn, TENANT, [load_signer(settings).verifier()],
                                     origin=log_origin("bench.local", TENANT),
                                     database_url=url)
        verify_seconds = time.perf_counter() - started
        assert report.ok, report.finding
        started = time.perf_counter()
        count = 0
        await conn.execute("SET role trailseal_owner")
        await conn.execute("SELECT set_config('trailseal.tenant', %s, false)", (TENANT,))
        async with conn.transaction(), conn.cursor(name="baseline") as cur:
            cur.itersize = 5000
            await cur.execute("SELECT canonical FROM trailseal.events WHERE tenant = %s"
                              " ORDER BY seq", (TENANT,))
            async for (canonical,) in cur:
                hashlib.sha256(b"\x00" + bytes(canonical)).digest()
                count += 1
        baseline_seconds = time.perf_counter() - started
    return {
        "events": report.events,
        "verify_events_per_second": report.events / verify_seconds,
        "sha256_events_per_second": count / baseline_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), log_origin="bench.local")
        url = embedded.start(Path(tmp), database="trailseal")
        migrate.migrate(url)
        asyncio.run(populate(url, settings, args.events))
        result = asyncio.run(measure(url, settings))
    result["ratio"] = result["verify_events_per_second"] / result["sha256_events_per_second"]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
