"""Throughput across processes: API processes and leased sequencers on one PostgreSQL.

Measures: events/s sequenced end to end (from the first request until every event is
sequenced, chained, tiled, checkpointed and committed) with A `trailseal serve` processes
(TRAILSEAL_RUN_SEQUENCER=false) and S `trailseal sequencer` processes sharing the tenants
through leases, T fresh tenants, and 8 client threads posting batches of 500 events,
request i to API process i mod A for tenant i mod T. Also the CPU each group of processes
used (utime + stime from /proc, in cores: CPU seconds over wall seconds): the API
processes, the sequencers, PostgreSQL (the postmaster and its backends) and the clients;
and events/s accepted (202) by the API, up to the last answer, apart.
Baseline, same run: 1 API process, 1 sequencer, 1 tenant. Every process is started afresh
for each combination, which is run once per round. Reproduce:
`.venv/bin/python bench/scale.py --events 20000`.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:  # run as a script: bench/ is on the path, its parent is not
    sys.path.insert(0, ROOT)

import httpx
from bench import common
from bench.ingest_rate import BATCH
from psycopg import AsyncConnection

NAME = "scale"
SIZES = {"smoke": 200, "quick": 20_000, "full": 100_000}
CLIENTS = 8
Combination = tuple[int, int, int]  # API processes, sequencer processes, tenants
BASELINE: Combination = (1, 1, 1)
SMOKE_GRID: list[Combination] = [BASELINE]
# Quick: as many sequencers as API processes; full: every combination.
QUICK_GRID: list[Combination] = [(p, p, t) for p in (1, 2, 4) for t in (1, 4, 16)]
FULL_GRID: list[Combination] = [(a, s, t) for a in (1, 2, 4) for s in (1, 2, 4)
                                for t in (1, 4, 16)]
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of ``pids`` (those still alive), in seconds."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / TICKS


def postgres_pids(tmp: Path) -> list[int]:
    """The postmaster of the run's PostgreSQL and its children (the backends)."""
    found = list(Path(tmp).glob("**/postmaster.pid"))
    if not found:
        return []
    master = int(found[0].read_text().split()[0])
    pids = [master]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == master:
                pids.append(int(stat.parent.name))
        except (OSError, ValueError):
            continue
    return pids


def _environment(env: common.Env) -> dict[str, str]:
    return {**os.environ, "TRAILSEAL_DATABASE_URL": env.url,
            "TRAILSEAL_LOG_ORIGIN": common.ORIGIN, "TRAILSEAL_RUN_SEQUENCER": "false",
            "TRAILSEAL_POOL_MAX_SIZE": "8"}


def _start(env: common.Env, apis: int, sequencers: int) -> tuple[
        list[subprocess.Popen[str]], list[subprocess.Popen[str]], list[str]]:
    environment = _environment(env)
    first = 19000 + os.getpid() % 500 * 4
    api = [subprocess.Popen(
        [sys.executable, "-m", "trailseal", "serve", "--port", str(first + i),
         "--data-dir", str(env.tmp)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        text=True, env=environment) for i in range(apis)]
    seq = [subprocess.Popen(
        [sys.executable, "-m", "trailseal", "sequencer", "--data-dir", str(env.tmp)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True, env=environment)
        for _ in range(sequencers)]
    bases = [f"http://127.0.0.1:{first + i}" for i in range(apis)]
    deadline = time.monotonic() + 60
    for base, process in zip(bases, api, strict=True):
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                _stop(api + seq)
                raise SystemExit(f"trailseal serve at {base} did not become healthy")
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    return api, seq, bases


def _stop(processes: list[subprocess.Popen[str]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(30)


def _post_all(bases: list[str], tokens: list[str], requests: list[bytes]) -> None:
    position = iter(range(len(requests)))
    lock = threading.Lock()
    failures: list[str] = []

    def client() -> None:
        with httpx.Client(timeout=120) as http:
            while True:
                with lock:
                    index = next(position, None)
                if index is None:
                    return
                answer = http.post(
                    f"{bases[index % len(bases)]}/v1/events", content=requests[index],
                    headers={"Authorization": f"Bearer {tokens[index % len(tokens)]}",
                             "Content-Type": "application/json"})
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


def _expected(tenants: int, requests: list[bytes]) -> list[int]:
    """Events each tenant receives when request i goes to tenant i mod ``tenants``."""
    counts = [0] * tenants
    for i, body in enumerate(requests):
        counts[i % tenants] += len(json.loads(body)["events"])
    return counts


async def _sequenced(url: str, names: list[str], counts: list[int]) -> None:
    """Until every tenant's tree holds its events: one connection, one query per look
    (a connection per tenant per look would itself load PostgreSQL)."""
    wanted = dict(zip(names, counts, strict=True))
    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        while True:
            cur = await conn.execute(
                "SELECT tenant, tree_size FROM trailseal.log_heads WHERE tenant = ANY(%s)",
                (names,))
            sizes = dict(await cur.fetchall())
            if all(sizes.get(n, 0) >= c for n, c in wanted.items()):
                return
            await asyncio.sleep(0.02)


def once(env: common.Env, combination: Combination, requests: list[bytes],
         label: str) -> dict[str, float]:
    """One combination, on fresh processes and fresh tenants: events/s and CPU cores
    used per group of processes."""
    apis, sequencers, tenants = combination
    names = [f"scale{label}t{i}" for i in range(tenants)]
    tokens = [env.token(n) for n in names]
    counts = _expected(tenants, requests)
    api, seq, bases = _start(env, apis, sequencers)
    try:
        groups = {"api": [p.pid for p in api], "sequencers": [p.pid for p in seq],
                  "postgres": postgres_pids(env.tmp)}
        before = {g: cpu_seconds(pids) for g, pids in groups.items()}
        clients_before = sum(os.times()[:2])
        started = time.perf_counter()
        _post_all(bases, tokens, requests)
        posted = time.perf_counter() - started
        asyncio.run(_sequenced(env.url, names, counts))
        seconds = time.perf_counter() - started
        groups["postgres"] = postgres_pids(env.tmp)  # backends that connected meanwhile
        cores = {f"cpu_{g}": (cpu_seconds(pids) - before.get(g, 0.0)) / seconds
                 for g, pids in groups.items()}
        cores["cpu_clients"] = (sum(os.times()[:2]) - clients_before) / seconds
    finally:
        _stop(api + seq)
    return {"events_per_second": sum(counts) / seconds,
            "accepted_per_second": sum(counts) / posted, **cores}


def _grid(env: common.Env, size: int) -> list[Combination]:
    if env.smoke:
        return SMOKE_GRID
    return FULL_GRID if size >= SIZES["full"] else QUICK_GRID


def _key(combination: Combination) -> str:
    return "{} API, {} sequencer, {} tenant".format(*combination)


def run(env: common.Env, size: int) -> dict[str, Any]:
    """Events/s of every combination of the grid, against 1 API, 1 sequencer, 1 tenant."""
    grid = _grid(env, size)
    events = list(common.events(size))
    requests = [json.dumps({"events": events[i:i + BATCH]}, separators=(",", ":")).encode()
                for i in range(0, size, BATCH)]
    rounds: dict[Combination, list[dict[str, float]]] = {c: [] for c in grid}
    for r in range(env.repeat):
        for k, combination in enumerate(grid):
            rounds[combination].append(once(env, combination, requests, f"{r}x{k}"))
    table = {}
    for combination, found in rounds.items():
        table[_key(combination)] = {name: common.spread([f[name] for f in found])
                                    for name in found[0]}
    best = max(grid, key=lambda c: table[_key(c)]["events_per_second"]["median"])
    subject = table[_key(best)]["events_per_second"]
    baseline = table[_key(BASELINE)]["events_per_second"]
    return common.result(
        NAME,
        measures=f"events/s sequenced end to end with A API processes and S leased "
                 f"sequencer processes on one PostgreSQL, T tenants, {CLIENTS} client "
                 f"threads posting batches of {BATCH} round-robin to the API processes; "
                 "the best combination of the grid",
        baseline="1 API process, 1 sequencer, 1 tenant, in the same run",
        goal="report how throughput grows with processes and tenants",
        reproduce=f"make bench ARGS='--only {NAME}'  (or: .venv/bin/python bench/scale.py "
                  f"--events {size})",
        size=size, unit="events/s", subject=subject,
        baselines={_key(BASELINE): baseline}, ratio=subject["median"] / baseline["median"],
        ratio_means=f"best combination ({_key(best)}) / the baseline, medians",
        met=None, combinations=table, grid=[list(c) for c in grid], clients=CLIENTS,
    )


def main() -> None:
    common.script(__doc__ or NAME, run, events=SIZES["quick"], repeat=1)


if __name__ == "__main__":
    main()
