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
hashing, no partitions). Interleaved --repeat times. Reproduce:
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


def measure(env: common.Env, count: int) -> dict[str, list[float]]:
    """Events/s of HTTP ingest, of the loader, and of the COPY baseline, per round."""
    requests = bodies(count)
    rows = env.tmp / "ingest.copy"
    rates: dict[str, list[float]] = {"http": [], "loader": [], "copy": []}
    sizes = common.LogSizes(env.url)
    try:
        for k in range(env.repeat):
            tenant = f"ingest{k}"
            rates["http"].append(count / _http_seconds(env, sizes, tenant, requests, count))
            if k == 0:
                _dump(env.url, tenant, rows)
            rates["loader"].append(common.load(env.url, env.settings, f"direct{k}", count))
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
    )


def main() -> None:
    common.script(__doc__ or NAME, run)


if __name__ == "__main__":
    main()
