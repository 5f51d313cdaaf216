"""Bytes per event: in PostgreSQL, in a segment (Parquet with zstd), against raw JSON.

Generates N realistic events (logins, role changes with before/after diffs, document
reads and exports; a few hundred actors, thousands of targets, request and correlation
ids, IPs, user agents), ingests them into an embedded PostgreSQL in a temporary folder
and sequences them with the real sequencer, then measures:

- raw JSON: the events as a producer sends them (compact JSON, one per event), and their
  canonical (RFC 8785) stored form;
- PostgreSQL: the log's table and index bytes per event (``pg_total_relation_size`` of
  the month's partition, after VACUUM ANALYZE);
- a segment as written by the archiver (10,000 events per file): seq, canonical bytes and
  the query columns, zstd, dictionary-encoded strings, one row group; and, for
  comparison, the file as segments were first written (with the leaf and chain hashes as
  columns too), and a file of only seq and the canonical bytes (the query columns can be
  recomputed from them).

Reproduce: `.venv/bin/python bench/segment_size.py --events 100000`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:  # run as a script: bench/ is on the path, its parent is not
    sys.path.insert(0, ROOT)

import io

import pyarrow as pa
import pyarrow.parquet as pq
from psycopg import AsyncConnection
from psycopg.rows import dict_row

from trailseal import ingest
from trailseal.archive.segments import COLUMNS, QUERY_COLUMNS, SCHEMA, ZSTD_LEVEL, write_parquet
from trailseal.ids import uuid7
from trailseal.integrity.notes import Signer, generate_key
from trailseal.sequencer import Sequencer
from trailseal.store import create_pool, embedded, migrate
from trailseal.tenants import create_tenant

SEGMENT = 10_000
GOAL = 0.15  # segment bytes per raw JSON byte


def make_events(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """``count`` events of a plausible SaaS tenant."""
    rng = random.Random(seed)
    users = [f"u_{i:05d}" for i in range(300)]
    names = {u: f"User {i}" for i, u in enumerate(users)}
    documents = [f"doc_{i:06d}" for i in range(5000)]
    agents = ["Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15",
              "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/126.0",
              "python-httpx/0.27"]
    events = []
    for _ in range(count):
        user = rng.choice(users)
        kind = rng.random()
        context = {"ip": f"10.{rng.randrange(4)}.{rng.randrange(256)}.{rng.randrange(256)}",
                   "user_agent": rng.choice(agents), "request_id": uuid.uuid4().hex,
                   "service": rng.choice(["web", "api", "billing"])}
        event: dict[str, Any] = {"id": str(uuid7()),
                                 "actor": {"type": "user", "id": user, "name": names[user]},
                                 "context": context}
        if kind < 0.4:
            event.update(action="user.login.succeeded",
                         target={"type": "user", "id": user, "name": names[user]})
        elif kind < 0.5:
            event.update(action="user.login.failed", outcome={"status": "failure",
                         "reason": "bad_password"},
                         target={"type": "user", "id": user, "name": names[user]})
        elif kind < 0.6:
            other = rng.choice(users)
            event.update(action="user.role.updated",
                         target={"type": "user", "id": other, "name": names[other]},
                         changes={"role": {"before": "member", "after": "admin"}})
        else:
            doc = rng.choice(documents)
            event.update(action=rng.choice(["document.read", "document.exported",
                                            "document.updated"]),
                         target={"type": "document", "id": doc, "name": f"Report {doc}"},
                         metadata={"size": rng.randrange(1000, 900000), "format": "pdf"})
        events.append(event)
    return events


async def fill(url: str, events: list[dict[str, Any]], signer: Signer) -> None:
    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        await create_tenant(conn, "bench")
        for i in range(0, len(events), 1000):
            at = ingest.now()
            prepared = ingest.prepare(events[i : i + 1000], "bench", at)
            await ingest.write_inbox(conn, "bench", prepared, at)
    pool = create_pool(url, min_size=1, max_size=2)
    await pool.open(wait=True)
    try:
        await Sequencer(pool, signer, origin_host="bench.test").sequence_tenant("bench")
    finally:
        await pool.close()


async def measure(url: str) -> tuple[int, int, list[dict[str, Any]]]:
    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("VACUUM ANALYZE trailseal.events")
        cur = await conn.execute(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'trailseal.events'::regclass")
        total = (await cur.fetchone() or (0,))[0]
        await conn.execute("SELECT set_config('trailseal.tenant', 'bench', false)")
        async with conn.cursor(row_factory=dict_row) as dcur:
            await dcur.execute(
                "SELECT seq, canonical, leaf_hash, chain_hash, id::text, occurred_at, received_at,"
                " actor_type, actor_id, actor_name, action, target_type, target_id,"
                " target_name, outcome, host(ip) AS ip, request_id, correlation_id, service"
                " FROM trailseal.events WHERE tenant = 'bench' ORDER BY seq")
            rows = await dcur.fetchall()
    return int(total), len(rows), rows


def with_hashes(rows: list[dict[str, Any]]) -> bytes:
    """A segment as first written: the archiver's columns and the leaf and chain hashes
    (which the canonical bytes and the manifest's chain_before determine)."""
    table = pa.Table.from_pydict(
        {name: [r[name] for r in rows] for name in COLUMNS}, schema=SCHEMA)
    table = table.add_column(2, "leaf_hash", pa.array([bytes(r["leaf_hash"]) for r in rows],
                                                      pa.binary(32)))
    table = table.add_column(3, "chain_hash", pa.array([bytes(r["chain_hash"]) for r in rows],
                                                       pa.binary(32)))
    out = io.BytesIO()
    pq.write_table(table, out, compression="zstd", compression_level=ZSTD_LEVEL,
                   use_dictionary=[n for n in QUERY_COLUMNS if n != "id"],
                   row_group_size=len(rows), write_statistics=True)
    return out.getvalue()


def canonical_only(rows: list[dict[str, Any]]) -> bytes:
    """A segment of just seq and the canonical bytes (hashes and query columns can be
    recomputed from these)."""
    table = pa.Table.from_pydict(
        {"seq": [r["seq"] for r in rows], "canonical": [bytes(r["canonical"]) for r in rows]},
        schema=pa.schema([("seq", pa.int64()), ("canonical", pa.binary())]))
    out = io.BytesIO()
    pq.write_table(table, out, compression="zstd", compression_level=ZSTD_LEVEL,
                   row_group_size=len(rows))
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    events = make_events(args.events)
    raw = sum(len(json.dumps(e, separators=(",", ":"))) for e in events)
    signer = Signer.from_key(generate_key("bench.test/trailseal")[0])
    with tempfile.TemporaryDirectory(prefix="trailseal-bench-") as folder:
        server = embedded.start(Path(folder), database="postgres")
        name = f"segbench_{uuid.uuid4().hex[:8]}"
        import psycopg

        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = psycopg.conninfo.make_conninfo(server, dbname=name)
        migrate.migrate(url)
        asyncio.run(fill(url, events, signer))
        pg_bytes, count, rows = asyncio.run(measure(url))
        embedded.stop(Path(folder))
    canonical = sum(len(bytes(r["canonical"])) for r in rows)
    full = hashed = slim = 0
    by_column = dict.fromkeys(COLUMNS, 0)
    for i in range(0, count, SEGMENT):
        chunk = rows[i : i + SEGMENT]
        data = write_parquet({name: [r[name] for r in chunk] for name in COLUMNS})
        full += len(data)
        group = pq.ParquetFile(io.BytesIO(data)).metadata.row_group(0)
        for c in range(group.num_columns):
            column = group.column(c)
            by_column[column.path_in_schema] += column.total_compressed_size
        hashed += len(with_hashes(chunk))
        slim += len(canonical_only(chunk))
    result = {
        "events": count,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "raw_json_bytes_per_event": round(raw / count, 1),
        "canonical_bytes_per_event": round(canonical / count, 1),
        "postgresql_bytes_per_event": round(pg_bytes / count, 1),
        "segment_bytes_per_event": round(full / count, 1),
        "segment_ratio_to_raw": round(full / raw, 3),
        "segment_column_bytes_per_event": {
            name: round(size / count, 2) for name, size in by_column.items()},
        "with_hashes_segment_bytes_per_event": round(hashed / count, 1),
        "with_hashes_ratio_to_raw": round(hashed / raw, 3),
        "canonical_only_segment_bytes_per_event": round(slim / count, 1),
        "canonical_only_ratio_to_raw": round(slim / raw, 3),
        "goal_ratio": GOAL,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
