"""End-to-end ingest over HTTP, against COPY of the same rows into a table with the same
indexes.

Measures: events per second from the first request to the last event sequenced: 4
concurrent HTTP clients (threads, httpx) post batches of 500 events to `trailseal serve`
(its in-process sequencer) on the embedded PostgreSQL, until every event is sequenced,
chained, tiled, checkpointed and committed. Also, as a figure of its own, the fastest
loader without HTTP (ingest.prepare + write_inbox + the real sequencer, in batches of
5,000, in one process, the three overlapping): end-to-end ingest minus HTTP. Baseline,
same run, same database: COPY (binary) of the very rows the first round produced into a
fresh table made `LIKE trailseal.events INCLUDING ALL` (the same indexes, no triggers, no
hashing, no partitions). Interleaved --repeat times. Also the WAL PostgreSQL wrote in
each, per event (everything written meanwhile: the archiver's and autovacuum's too), and
the checkpoints that WAL forced (`pg_stat_checkpointer.num_requested`).
Reproduce:
`.venv/bin/python bench/ingest_rate.py --events 50000`.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:  # run as a script: bench/ is on the path, its parent is not
    sys.path.insert(0, ROOT)

import httpx
import psycopg
from bench import common
from psycopg import sql

NAME = "ingest"
SIZES = {"smoke": 200, "quick": 50_000, "full": 1_000_000}
GOAL_RATIO = 0.6
CLIENTS, BATCH = 4, 500
BLOCK = 1 << 20
WAYS = ("http", "loader", "copy")


def bodies(count: int) -> list[bytes]:
    """The request bodies: ``count`` events in batches of BATCH."""
    events = list(common.events(count))
    return [json.dumps({"events": events[i:i + BATCH]}, separators=(",", ":")).encode()
            for i in range(0, count, BATCH)]


def _post_all(base: str, token: str, requests: list[bytes]) -> None:
    position = iter(range(len(requests)))
    lock = threading.Lock()
    failures: list[str] = []

    def client() -> None:
        with httpx.Client(base_url=base, timeout=120, headers={
                "Authorization": f"Bearer {token}", "Content-Type": "application/json"}) as http:
            while True:
                with lock:
                    index = next(position, None)
                if index is None:
                    return
                answer = http.post("/v1/events", content=requests[index])
                if answer.status_code != 202:
                    failures.append(f"{answer.status_code} {answer.text[:200]}")
                    return

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit(f"ingest failed: {failures[0]}")


def _http_seconds(env: common.Env, sizes: common.LogSizes, tenant: str,
                  requests: list[bytes], count: int) -> float:
    base, token = env.serve(), env.token(tenant)
    started = time.perf_counter()
    _post_all(base, token, requests)
    return sizes.wait(tenant, count) - started


def _dump(url: str, tenant: str, path: Path) -> None:
    """The tenant's rows, as COPY writes them (binary), into ``path``."""
    with psycopg.connect(url, autocommit=True) as conn, path.open("wb") as sink:
        query = sql.SQL("COPY (SELECT * FROM trailseal.events WHERE tenant = {} ORDER BY seq)"
                        " TO STDOUT (FORMAT binary)").format(sql.Literal(tenant))
        with conn.cursor().copy(query) as copy:
            for block in copy:
                sink.write(block)


def _copy_seconds(url: str, path: Path, round_: int) -> float:
    table = sql.Identifier(f"bench_copy_{round_}")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
        conn.execute(sql.SQL("CREATE TABLE {} (LIKE trailseal.events INCLUDING ALL)").format(
            table))
        started = time.perf_counter()
        with conn.transaction(), path.open("rb") as source, conn.cursor().copy(
                sql.SQL("COPY {} FROM STDIN (FORMAT binary)").format(table)) as copy:
            while block := source.read(BLOCK):
                copy.write(block)
        seconds = time.perf_counter() - started
        conn.execute(sql.SQL("DROP TABLE {}").format(table))
    return seconds


def _wal(url: str) -> tuple[int, int]:
    """The WAL position (bytes written since the cluster began) and the checkpoints
    requested so far (those forced by max_wal_size, not by checkpoint_timeout)."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT (pg_current_wal_lsn() - '0/0')::bigint, num_requested"
                           " FROM pg_stat_checkpointer").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


class _Arm:
    """The WAL bytes per event and the checkpoints requested while one arm ran."""

    def __init__(self, url: str, rates: dict[str, list[float]], name: str, count: int) -> None:
        self.url, self.rates, self.name, self.count = url, rates, name, count

    def __enter__(self) -> None:
        self.before = _wal(self.url)

    def __exit__(self, *_: object) -> None:
        after = _wal(self.url)
        self.rates[f"wal_{self.name}"].append((after[0] - self.before[0]) / self.count)
        self.rates[f"checkpoints_{self.name}"].append(after[1] - self.before[1])


def measure(env: common.Env, count: int) -> dict[str, list[float]]:
    """Events/s of HTTP ingest, of the loader, and of the COPY baseline, per round, and
    the WAL bytes per event and checkpoints requested of each (``wal_http``,
    ``checkpoints_http`` ...)."""
    requests = bodies(count)
    rows = env.tmp / "ingest.copy"
    rates: dict[str, list[float]] = {
        f"{kind}{way}": [] for kind in ("", "wal_", "checkpoints_") for way in WAYS}
    sizes = common.LogSizes(env.url)
    try:
        for k in range(env.repeat):
            tenant = f"ingest{k}"
            with _Arm(env.url, rates, "http", count):
                rates["http"].append(count / _http_seconds(env, sizes, tenant, requests, count))
            if k == 0:
                _dump(env.url, tenant, rows)
            with _Arm(env.url, rates, "loader", count):
                rates["loader"].append(common.load(env.url, env.settings, f"direct{k}", count))
            with _Arm(env.url, rates, "copy", count):
                rates["copy"].append(count / _copy_seconds(env.url, rows, k))
    finally:
        sizes.close()
    return rates


def run(env: common.Env, size: int) -> dict[str, Any]:
    """HTTP ingest end to end against COPY of the same rows."""
    rates = measure(env, size)
    subject, copy = common.spread(rates["http"]), common.spread(rates["copy"])
    ratio = subject["median"] / copy["median"]
    return common.result(
        NAME,
        measures=f"events/s, {CLIENTS} HTTP clients posting batches of {BATCH} to trailseal "
                 "serve, from the first request until every event is sequenced, chained, "
                 "tiled, checkpointed and committed",
        baseline="COPY (binary) of the same rows into a table LIKE trailseal.events "
                 "INCLUDING ALL (same indexes; no triggers, no hashing, no partitions)",
        goal=f">= {GOAL_RATIO:g}x the baseline's events/s",
        reproduce=f"make bench ARGS='--only {NAME}'  (or: .venv/bin/python "
                  f"bench/ingest_rate.py --events {size})",
        size=size, unit="events/s", subject=subject,
        baselines={"COPY into a copy of the table": copy,
                   "loader without HTTP (prepare + inbox + sequencer)":
                       common.spread(rates["loader"])},
        ratio=ratio, ratio_means="HTTP ingest / COPY, medians", met=ratio >= GOAL_RATIO,
        wal_bytes_per_event={way: common.spread(rates[f"wal_{way}"]) for way in WAYS},
        checkpoints_requested={way: common.spread(rates[f"checkpoints_{way}"]) for way in WAYS},
    )


def main() -> None:
    common.script(__doc__ or NAME, run)


if __name__ == "__main__":
    main()
