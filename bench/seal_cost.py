"""The archiver's CPU: sealing closed segments, and sweeping past a segment still open.

Measures, on a fresh tenant of an embedded PostgreSQL holding SEGMENTS full segments and
one more that lacks a single event (so it stays open: young, one month), with the real
archiver (segments of `--segment` events, written to a local write-once folder):

- **sealing**: one sweep that seals the closed segments (reading their rows, Parquet
  with zstd, the signed manifest, reading each file back and checking it): CPU per
  event sealed, of this process (all its threads: the file is built in one) and of
  PostgreSQL (every process of the embedded cluster);
- **an open segment**: `--sweeps` more sweeps, each finding only the open segment and
  sealing nothing: CPU per sweep, of each;
- **zstd's level**: the first sealed file's columns written again at levels 3, 6, 9 and 19
  (`segments.write_parquet`, the archiver's own writer; the archiver uses
  `segments.ZSTD_LEVEL`): CPU and bytes per event of each, the best of three writes;
- **reading a segment back**: the first sealed file's seq and canonical bytes read and
  hashed into its leaf and chain hashes (`segments.read_rows`, as the check after
  writing, `verify --archive` and a warm read's first touch of a segment do): CPU per
  event, the best of three.

No baseline: an analysis of one part of ingest's cost (which `bench/cpu_split.py`
measures whole), run from each of two checkouts in turn to compare them
(`PYTHONPATH=<checkout>/src:<checkout>`). Linux only (/proc). Not part of `bench/run.py`.
Reproduce: `.venv/bin/python bench/seal_cost.py --events 40000`.
"""

from __future__ import annotations

import asyncio
import io
import statistics
import sys
import time
from pathlib import Path
from typing import Any
from unittest.mock import patch

ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:  # run as a script: bench/ is on the path, its parent is not
    sys.path.insert(0, ROOT)

import pyarrow.parquet as pq
from bench import common, cpu_split
from psycopg import AsyncConnection

from trailseal import ingest
from trailseal.archive import segments
from trailseal.archive.worm import LocalStore
from trailseal.integrity import GENESIS_CHAIN_HASH
from trailseal.runtime import build_archiver, build_sequencer
from trailseal.store import create_pool
from trailseal.tenants import create_tenant

NAME = "seal_cost"
SEGMENT = 10_000  # the default TRAILSEAL_SEGMENT_MAX_EVENTS


async def _fill(env: common.Env, tenant: str, count: int) -> None:
    """``count`` events in ``tenant``'s log, sequenced and checkpointed, none sealed."""
    async with await AsyncConnection.connect(env.url, autocommit=True) as conn:
        await create_tenant(conn, tenant)
    pool = create_pool(env.url, min_size=1, max_size=2)
    await pool.open(wait=True)
    try:
        source = common.events(count)
        sequencer = build_sequencer(pool, env.settings)
        for done in range(0, count, common.LOAD_BATCH):
            chunk = [next(source) for _ in range(min(common.LOAD_BATCH, count - done))]
            at = ingest.now()
            async with pool.connection() as conn:
                await ingest.write_inbox(conn, tenant, ingest.prepare(chunk, tenant, at), at)
            while await sequencer.sequence_tenant(tenant):
                pass
    finally:
        await pool.close()


def _cpu(postmaster: int) -> tuple[float, float]:
    return time.process_time(), cpu_split.cluster_cpu(postmaster)


async def _round(env: common.Env, tenant: str, segment: int, sweeps: int,
                 folder: Path) -> dict[str, Any]:
    postmaster = cpu_split.postmaster_pid(env.tmp)
    settings = env.settings.model_copy(update={
        "segment_max_events": segment, "segment_max_age_seconds": 86_400.0})
    archiver = build_archiver(settings, LocalStore(folder))
    async with await AsyncConnection.connect(env.url, autocommit=True) as conn:
        own, pg = _cpu(postmaster)
        sealed = await archiver.seal_tenant(conn, tenant)
        own_sealed, pg_sealed = _cpu(postmaster)
        for _ in range(sweeps):
            if await archiver.seal_tenant(conn, tenant):
                raise SystemExit("an open segment was sealed")
        own_open, pg_open = _cpu(postmaster)
    events = sealed * segment
    first = sorted((folder / "warm" / tenant / "segments").glob("*.parquet"))[0]
    return {
        "zstd_levels": _levels(first.read_bytes()),
        "read_back_us_per_event": _read_back(first, segment),
        "segments_sealed": sealed,
        "sealing_us_per_event": {"archiver": (own_sealed - own) / events * 1e6,
                                 "postgres": (pg_sealed - pg) / events * 1e6},
        "open_segment_ms_per_sweep": {"archiver": (own_open - own_sealed) / sweeps * 1e3,
                                      "postgres": (pg_open - pg_sealed) / sweeps * 1e3},
    }


def _read_back(path: Path, count: int) -> float:
    """CPU µs per event of reading a segment's rows back with their hashes."""
    cpu = []
    for _ in range(3):
        started = time.process_time()
        rows = segments.read_rows(str(path), GENESIS_CHAIN_HASH)
        cpu.append(time.process_time() - started)
    if len(rows) != count:
        raise SystemExit(f"{path.name} holds {len(rows)} events, not {count}")
    return min(cpu) / count * 1e6


def _levels(data: bytes) -> dict[str, dict[str, float]]:
    """CPU µs and bytes per event of writing a segment's columns at each zstd level."""
    columns = pq.read_table(io.BytesIO(data)).to_pydict()
    count = len(columns["seq"])
    found = {}
    for level in (3, 6, 9, 19):
        with patch.object(segments, "ZSTD_LEVEL", level):
            cpu = []
            for _ in range(3):
                started = time.process_time()
                size = len(segments.write_parquet(columns))
                cpu.append(time.process_time() - started)
        found[str(level)] = {"cpu_us_per_event": min(cpu) / count * 1e6,
                             "bytes_per_event": size / count}
    return found


def measure(env: common.Env, count: int, sweeps: int = 20) -> list[dict[str, Any]]:
    """Rounds of sealing ``count`` events' full segments (and sweeping past the open one),
    each on a fresh tenant."""
    segment = min(SEGMENT, max(count // 4, 2))
    full = max(count // segment, 1)
    rounds = []
    for round_ in range(env.repeat):
        tenant = f"seal{round_}"
        asyncio.run(_fill(env, tenant, full * segment + segment - 1))
        rounds.append(asyncio.run(_round(env, tenant, segment, sweeps,
                                         env.tmp / f"worm{round_}")))
    return rounds


def run(env: common.Env, size: int) -> dict[str, Any]:
    rounds = measure(env, size)

    def median(part: str, who: str) -> float:
        return round(statistics.median(r[part][who] for r in rounds), 3)

    return {
        "name": NAME, "size": size, "rounds": len(rounds),
        "segment_events": min(SEGMENT, max(size // 4, 2)),
        "medians": {part: {who: median(part, who) for who in ("archiver", "postgres")}
                    for part in ("sealing_us_per_event", "open_segment_ms_per_sweep")},
        "read_back_us_per_event": round(statistics.median(
            r["read_back_us_per_event"] for r in rounds), 3),
        "zstd_levels": {level: {k: round(statistics.median(
            r["zstd_levels"][level][k] for r in rounds), 2) for k in figures}
            for level, figures in rounds[0]["zstd_levels"].items()},
        "all": rounds,
    }


def main() -> None:
    common.script(__doc__ or NAME, run, events=40_000)


if __name__ == "__main__":
    main()
