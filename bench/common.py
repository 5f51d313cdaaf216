"""What the benchmarks share: an embedded PostgreSQL, a loader of N sequenced events, a
`trailseal serve` subprocess on the same database, and the arithmetic of the figures.

Every figure is a ratio against a baseline measured in the same run, on the same
PostgreSQL, with the subject and the baseline interleaved `--repeat` times, because the
machines these run on are shared and noisy. Run on its own, this module prints a
description of the machine (what `bench/run.py` records with every result).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import AsyncConnection

from trailseal import ingest
from trailseal.ids import uuid7
from trailseal.runtime import build_archiver, build_sequencer
from trailseal.settings import Settings
from trailseal.store import Role, create_pool, embedded, migrate, scoped
from trailseal.tenants import create_key, create_tenant

ORIGIN = "bench.local"
LOAD_BATCH = 5000  # events per inbox write and per sequencer transaction while loading
ACTIONS = [  # (action, weight, outcome): the shape of tests/test_query_plans.py
    ("auth.login.succeeded", 30, "success"),
    ("auth.login.failed", 6, "failure"),
    ("auth.logout", 10, "success"),
    ("user.role.updated", 6, "success"),
    ("user.profile.updated", 8, "success"),
    ("setting.updated", 4, "success"),
    ("document.viewed", 25, "success"),
    ("document.deleted", 3, "failure"),
    ("data.export.created", 2, "success"),
    ("data.export.downloaded", 2, "success"),
    ("project.created", 4, "success"),
]
SETTINGS_NAMES = ["billing.plan", "sso.enforced", "mfa.required", "retention.days"]


# -- the events --------------------------------------------------------------------------

def events(
    count: int, seed: int = 20260312, now: datetime | None = None
) -> Iterator[dict[str, Any]]:
    """``count`` events of varied shape, as a producer posts them (about 450 bytes of JSON):
    users, services and keys acting on users, documents, settings and exports, from
    addresses of which one in 16 is in 203.0.113.0/24, over the last 120 days."""
    rng = random.Random(seed)
    at = now or datetime.now(UTC)
    weights = [a[1] for a in ACTIONS]
    for i in range(count):
        action, _, outcome = rng.choices(ACTIONS, weights=weights)[0]
        actor_type = rng.choices(["user", "service", "api_key", "system"], [70, 20, 6, 4])[0]
        actor_id = f"{actor_type[:2]}_{rng.randrange(2000)}"
        if action.startswith("setting."):
            target = {"type": "setting", "id": rng.choice(SETTINGS_NAMES)}
        elif action.startswith(("user.", "auth.")):
            n = rng.randrange(5000)
            target = {"type": "user", "id": f"u_{n}", "name": f"User {n:04d}"}
        elif action.startswith("data.export"):
            target = {"type": "export", "id": f"x_{rng.randrange(10**6)}"}
        else:
            n = rng.randrange(20000)
            target = {"type": rng.choice(["document", "project"]), "id": f"d_{n}",
                      "name": f"Doc {n:05d}"}
        if rng.random() < 1 / 16:
            ip = f"203.0.113.{rng.randrange(1, 255)}"
        else:
            ip = f"198.51.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        occurred = at - timedelta(seconds=rng.randrange(120 * 86400))
        event: dict[str, Any] = {
            "id": str(uuid7()),
            "occurred_at": occurred.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "actor": {"type": actor_type, "id": actor_id, "name": f"Person {actor_id}"},
            "action": action,
            "target": target,
            "outcome": {"status": outcome},
            "context": {"ip": ip, "request_id": f"r_{i:012d}", "service": "web"},
            "metadata": {"n": i, "note": "quarterly access review"},
        }
        if action.endswith("updated"):
            event["changes"] = {"value": {"before": rng.randrange(9), "after": rng.randrange(9)}}
        yield event


# -- the figures -------------------------------------------------------------------------

def spread(values: list[float]) -> dict[str, float]:
    """Min, median and max."""
    ordered = sorted(values)
    return {"min": ordered[0], "median": statistics.median(ordered), "max": ordered[-1]}


def percentile(samples: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``samples``, nearest rank."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def server_ms(answer: httpx.Response) -> float:
    """The server's own time of ``answer``, from its ``Server-Timing: app;dur=<ms>``."""
    for part in answer.headers.get("server-timing", "").split(","):
        name, _, params = part.strip().partition(";")
        if name == "app" and params.startswith("dur="):
            return float(params[4:])
    raise SystemExit(f"no Server-Timing app;dur= in the answer to {answer.request.url}")


def interleaved(repeat: int, runs: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    """Each of ``runs`` once per round, ``repeat`` rounds, so drifts in the machine's load
    touch all of them alike; returns each one's values."""
    found: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, once in runs.items():
            found[name].append(once())
    return found


def result(
    name: str, *, measures: str, baseline: str, goal: str, reproduce: str, size: int,
    unit: str, subject: dict[str, float], baselines: dict[str, dict[str, float]],
    ratio: float | None, ratio_means: str, met: bool | None, **extra: Any,
) -> dict[str, Any]:
    """One benchmark's record: what it measures, against what, its goal and how to
    reproduce it; the subject's and each baseline's min/median/max; the ratio of medians;
    and the verdict (None: a figure reported, with no goal to meet)."""
    verdict = "report" if met is None else ("met" if met else "NOT met")
    return {"name": name, "measures": measures, "baseline": baseline, "goal": goal,
            "reproduce": reproduce, "size": size, "unit": unit, "subject": subject,
            "baselines": baselines, "ratio": ratio, "ratio_means": ratio_means,
            "met": met, "verdict": verdict, **extra}


def machine() -> dict[str, Any]:
    """Where the figures were measured."""
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpus": os.cpu_count(), "cpu_model": model, "platform": platform.platform(),
            "python": platform.python_version(), "load_average": list(os.getloadavg())}


# -- the database and the loader ---------------------------------------------------------

class Env:
    """One embedded PostgreSQL for a whole run, with the logs loaded so far (by size),
    and the `trailseal serve` subprocess once a benchmark asks for it."""

    def __init__(self, tmp: Path, url: str, settings: Settings, repeat: int,
                 smoke: bool = False) -> None:
        self.tmp, self.url, self.settings = tmp, url, settings
        self.repeat, self.smoke = repeat, smoke
        self.loaded: dict[int, str] = {}
        self.load_rates: dict[str, float] = {}
        self.server: subprocess.Popen[str] | None = None
        self.base_url = ""
        self.tokens: dict[str, str] = {}

    def log(self, size: int) -> str:
        """The tenant holding a log of ``size`` sequenced events, loaded on first use
        (unless the database, kept from an earlier run, already holds it whole)."""
        if size not in self.loaded:
            tenant = f"log{size}"
            if not asyncio.run(log_whole(self.url, tenant, size)):
                self.load_rates[tenant] = load(self.url, self.settings, tenant, size)
            self.loaded[size] = tenant
        return self.loaded[size]

    def token(self, tenant: str) -> str:
        """A key of ``tenant`` with the ingest, read and export scopes."""
        if tenant not in self.tokens:
            self.tokens[tenant] = asyncio.run(_key(self.url, tenant))
        return self.tokens[tenant]

    def serve(self) -> str:
        """The base URL of `trailseal serve` (with its sequencer) on this database."""
        if self.server is None:
            self.server, self.base_url = start_server(self.url, self.tmp)
        return self.base_url

    def close(self) -> None:
        if self.server is not None:
            self.server.terminate()
            self.server.wait(30)
            self.server = None
        embedded.stop(self.tmp)


def start(tmp: Path, repeat: int, smoke: bool = False) -> Env:
    """An embedded PostgreSQL in ``tmp``, migrated."""
    settings = Settings(data_dir=tmp, log_origin=ORIGIN, sequencer_batch_size=LOAD_BATCH)
    url = embedded.start(tmp, database="trailseal")
    migrate.migrate(url)
    return Env(tmp, url, settings, repeat, smoke)


async def _key(url: str, tenant: str) -> str:
    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        await create_tenant(conn, tenant)
        key = await create_key(conn, tenant, ("ingest", "read", "export"), name="bench")
    return key.token


def load(url: str, settings: Settings, tenant: str, count: int,
         raw: Iterable[dict[str, Any]] | None = None) -> float:
    """Load ``count`` events (from ``raw``, or else ``events(count)``) into ``tenant``'s
    log the fastest way that still makes real sequenced rows: validate and canonicalise
    (ingest.prepare), write the inbox, sequence with the real sequencer, in batches of
    LOAD_BATCH. The three overlap, as in the server: the next batch is prepared in a
    thread while this one is written, and the sequencer moves what is written on a
    connection of its own. Returns events/s. Then, untimed, seal the log's closed
    segments as the archiver would have while it grew, and refresh the planner's
    statistics as autovacuum would, so a server started afterwards is in its steady
    state rather than sealing the whole log, or planning with the statistics of an
    empty table, while a benchmark measures it."""
    return asyncio.run(_load(url, settings, tenant, count, raw))


async def _load(url: str, settings: Settings, tenant: str, count: int,
                raw: Iterable[dict[str, Any]] | None) -> float:
    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        await create_tenant(conn, tenant)
    pool = create_pool(url, min_size=2, max_size=2)
    await pool.open(wait=True)
    source = iter(raw) if raw is not None else events(count)

    def prepared(size: int) -> tuple[datetime, list[ingest.Prepared]]:
        chunk = [next(source) for _ in range(size)]
        at = ingest.now()
        return at, ingest.prepare(chunk, tenant, at)

    async def write() -> None:
        done = 0
        ahead = asyncio.create_task(asyncio.to_thread(prepared, min(LOAD_BATCH, count)))
        while done < count:
            at, batch = await ahead
            done += len(batch)
            if done < count:
                ahead = asyncio.create_task(
                    asyncio.to_thread(prepared, min(LOAD_BATCH, count - done)))
            async with pool.connection() as conn:
                await ingest.write_inbox(conn, tenant, batch, at)

    started = time.perf_counter()
    writer = asyncio.create_task(write())
    try:
        sequencer = build_sequencer(pool, settings)
        while not writer.done():
            if await sequencer.sequence_tenant(tenant) == 0:
                await asyncio.wait({writer}, timeout=0.01)
        await writer  # its error, if it failed
        while await log_size(url, tenant) < count:  # another sequencer may hold the tenant
            await sequencer.sequence_tenant(tenant)
            await asyncio.sleep(0.05)
        rate = count / (time.perf_counter() - started)
        async with pool.connection() as conn:
            await build_archiver(settings).seal_tenant(conn, tenant)
            await conn.execute("ANALYZE trailseal.events")  # as autovacuum would, in time
    finally:
        writer.cancel()
        await pool.close()
    return rate


class LogSizes:
    """Polls a tenant's log size on one open connection (a connection per poll would
    add a backend's start to PostgreSQL's CPU every time)."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)

    def size(self, tenant: str) -> int:
        row = self.conn.execute(
            "SELECT size FROM trailseal.log_heads WHERE tenant = %s", (tenant,)).fetchone()
        return int(row[0]) if row else 0

    def wait(self, tenant: str, count: int) -> float:
        while self.size(tenant) < count:
            time.sleep(0.02)
        return time.perf_counter()

    def close(self) -> None:
        self.conn.close()


async def log_size(url: str, tenant: str) -> int:
    """How many events ``tenant``'s log holds."""
    async with (await AsyncConnection.connect(url, autocommit=True) as conn,
                scoped(conn, Role.READER, tenant)):
        cur = await conn.execute(
            "SELECT coalesce(max(seq) + 1, 0) FROM trailseal.events WHERE tenant = %s",
            (tenant,))
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def log_whole(url: str, tenant: str, size: int) -> bool:
    """Whether ``tenant``'s log holds the ``size`` events a load writes, whole: seqs 0 to
    size - 1, none of them the meta-audit's (a benchmark's reads add those after them)."""
    async with (await AsyncConnection.connect(url, autocommit=True) as conn,
                scoped(conn, Role.READER, tenant)):
        cur = await conn.execute(
            "SELECT EXISTS (SELECT 1 FROM trailseal.events WHERE tenant = %s AND seq = %s)"
            " AND NOT EXISTS (SELECT 1 FROM trailseal.events WHERE tenant = %s"
            "   AND action >= 'audit.' AND action < 'audit/' AND seq < %s)",
            (tenant, size - 1, tenant, size))
        row = await cur.fetchone()
    return bool(row and row[0])


def script(doc: str, run: Callable[[Env, int], dict[str, Any]], *,
           events: int = 20_000, repeat: int = 3) -> None:
    """A benchmark module run on its own: ``--events`` and ``--repeat``, a fresh embedded
    PostgreSQL in a temporary folder, the result printed as JSON."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--events", type=int, default=events)
    parser.add_argument("--repeat", type=int, default=repeat)
    data_dir_argument(parser)
    parser.add_argument("--postgres-defaults", action="store_true",
                        help="run PostgreSQL with its own defaults for the settings the "
                        "embedded server changes (trailseal.store.embedded.SETTINGS)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = start(args.data_dir or Path(tmp), args.repeat)
        if args.postgres_defaults:
            postgres_defaults(env.url)
        try:
            out = run(env, args.events)
        finally:
            env.close()
    out["loaded"] = sorted(env.load_rates)  # the logs loaded by this run (else kept)
    print(json.dumps(out, indent=2))


def postgres_defaults(url: str) -> None:
    """Put the settings the embedded server changes back to PostgreSQL's defaults (until
    its next start): the other side of an A/B of those settings."""
    with psycopg.connect(url, autocommit=True) as conn:
        for name in embedded.SETTINGS:
            conn.execute(f"ALTER SYSTEM RESET {name}")
        conn.execute("SELECT pg_reload_conf()")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the reload reaches new sessions a moment later
            with psycopg.connect(url) as fresh:
                if fresh.execute("SHOW max_wal_size").fetchone() == ("1GB",):
                    return
            time.sleep(0.05)
    raise SystemExit("PostgreSQL did not take its default max_wal_size back")


def data_dir_argument(parser: argparse.ArgumentParser) -> None:
    """``--data-dir DIR``: the embedded PostgreSQL kept in DIR, with the logs loaded
    into it, for later runs (a 10M-event log is loaded once, in about an hour)."""
    parser.add_argument("--data-dir", type=Path, help="keep the embedded PostgreSQL and "
                        "its logs here, to be used again by a later run")


def start_server(url: str, tmp: Path, *, port: int | None = None,
                 source: Path | None = None, settings: dict[str, str] | None = None,
                 ) -> tuple[subprocess.Popen[str], str]:
    """`trailseal serve` on ``url``, with the run's signing key and origin; the code of
    another checkout's ``src`` folder when ``source`` is given; ``settings`` are more
    TRAILSEAL_* variables."""
    port = port or 18000 + os.getpid() % 1000
    env = {**os.environ, "TRAILSEAL_DATABASE_URL": url, "TRAILSEAL_LOG_ORIGIN": ORIGIN,
           "TRAILSEAL_POOL_MAX_SIZE": "16", **(settings or {})}
    if source is not None:
        env["PYTHONPATH"] = str(source)
    server = subprocess.Popen(
        [sys.executable, "-m", "trailseal", "serve", "--port", str(port),
         "--data-dir", str(tmp)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("trailseal serve exited at start")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return server, base
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.terminate()
    raise SystemExit("trailseal serve did not become healthy")


def main() -> None:
    print(json.dumps(machine(), indent=2))


if __name__ == "__main__":
    main()
