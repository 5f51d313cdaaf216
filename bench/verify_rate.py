"""How fast `trailseal verify` checks a log, against SHA-256 over the same bytes.

Measures: events per second of `verify_tenant` (re-canonicalisation, leaf hashes, chain,
tree, checkpoints) over N events sequenced by the real sequencer, on an embedded
PostgreSQL in a temporary folder: with one worker process per CPU (the command's default
for logs of 100,000 events or more; timed in a child process whose main module is as light
as the command's), and in one process.
Baseline, same run: SHA-256 of the same canonical bytes read in seq order in binary, in
one process. Min/median/max over --repeat runs, interleaved; beside each way, the
PostgreSQL cluster's CPU time and minor page faults per event while it ran. Reproduce:
`.venv/bin/python bench/verify_rate.py --events 200000`; with `--before CHECKOUT`,
another checkout's verify is timed too, both ways, in the same interleaving; with
`--data-dir DIR`, the database and its log are kept in DIR for the next run.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:  # run as a script: bench/ is on the path, its parent is not
    sys.path.insert(0, ROOT)

from bench import common, cpu_split
from psycopg import AsyncConnection

from trailseal.integrity.checkpoint import log_origin
from trailseal.runtime import load_signer
from trailseal.settings import Settings
from trailseal.verify import verify_tenant

NAME = "verify"
SIZES = {"smoke": 200, "quick": 100_000, "full": 10_000_000}
GOAL = 500_000  # events/s
PARALLEL_FROM = 100_000  # as trailseal.verify: worker processes from this many events


async def _verify_seconds(url: str, settings: Settings, tenant: str, workers: int) -> float:
    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        report = await verify_tenant(conn, tenant, [load_signer(settings).verifier()],
                                     origin=log_origin(common.ORIGIN, tenant),
                                     database_url=url, workers=workers)
        seconds = time.perf_counter() - started
    assert report.ok, report.finding
    return seconds


async def _baseline_seconds(url: str, tenant: str) -> float:
    """SHA-256 of every event's bytes, read in seq order in binary, in one process."""
    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        await conn.execute("SET role trailseal_owner")
        await conn.execute("SELECT set_config('trailseal.tenant', %s, false)", (tenant,))
        async with conn.transaction(), conn.cursor(name="baseline", binary=True) as cur:
            cur.itersize = 4096
            await cur.execute("SELECT canonical FROM trailseal.events WHERE tenant = %s"
                              " ORDER BY seq", (tenant,))
            async for (canonical,) in cur:
                hashlib.sha256(b"\x00" + canonical).digest()
        return time.perf_counter() - started


# The worker processes import the program's main module; `trailseal verify`'s is the
# light console script. Timed in a child whose main module is this one line, the
# benchmark's own (heavy) modules stay out of the workers, as in the command.
_CHILD = ("import asyncio, sys, json; from bench.verify_rate import _child; "
          "print(json.dumps(asyncio.run(_child(*sys.argv[1:]))))")


async def _child(url: str, data_dir: str, tenant: str, workers: str) -> float:
    settings = Settings(data_dir=Path(data_dir), log_origin=common.ORIGIN)
    return await _verify_seconds(url, settings, tenant, int(workers))


def _verify_seconds_in_child(env: common.Env, tenant: str, workers: int,
                             checkout: Path | None = None) -> float:
    """Verify timed in a child process; of another checkout's code when ``checkout``
    is given (its `src` and `bench` first on the path)."""
    cwd, environ = ROOT, None
    if checkout is not None:
        cwd = str(checkout)
        environ = {**os.environ, "PYTHONPATH": f"{checkout / 'src'}{os.pathsep}{checkout}"}
    answer = subprocess.run(
        [sys.executable, "-c", _CHILD, env.url, str(env.settings.data_dir), tenant,
         str(workers)], capture_output=True, text=True, check=True, cwd=cwd, env=environ)
    return float(answer.stdout.strip().splitlines()[-1])


class Measured(NamedTuple):
    events: int
    rates: dict[str, list[float]]  # events/s of each way, a value per round
    postgres: dict[str, dict[str, list[float]]]  # each way's "cpu_us" and "faults" per event


def measure(env: common.Env, tenant: str, before: Path | None = None) -> Measured:
    """Events in the log, and events/s of each way, interleaved --repeat times (a smoke
    run at a tiny size leaves out the worker processes, which verify would not start),
    with the embedded PostgreSQL's CPU time and minor page faults per event during each.
    With ``before`` (another checkout), its verify is timed both ways too, in the same
    interleaving: the side-by-side figure of a change."""
    events = asyncio.run(common.log_size(env.url, tenant))
    workers = os.cpu_count() or 1
    runs = {
        "workers": lambda: _verify_seconds_in_child(env, tenant, workers),
        "in_process": lambda: asyncio.run(_verify_seconds(env.url, env.settings, tenant, 0)),
        "sha256": lambda: asyncio.run(_baseline_seconds(env.url, tenant)),
    }
    if before is not None:  # both sides' one-process verify in a child alike
        runs["in_process"] = lambda: _verify_seconds_in_child(env, tenant, 0)
        runs["before_workers"] = lambda: _verify_seconds_in_child(env, tenant, workers, before)
        runs["before_in_process"] = lambda: _verify_seconds_in_child(env, tenant, 0, before)
    if env.smoke and events < PARALLEL_FROM:
        del runs["workers"]
    postmaster = cpu_split.postmaster_pid(env.tmp)
    postgres: dict[str, dict[str, list[float]]] = {
        name: {"cpu_us": [], "faults": []} for name in runs}

    def counted(name: str, once: Callable[[], float]) -> Callable[[], float]:
        def counting() -> float:
            cpu, faults = cpu_split.cluster_usage(postmaster)
            seconds = once()
            cpu_after, faults_after = cpu_split.cluster_usage(postmaster)
            postgres[name]["cpu_us"].append((cpu_after - cpu) / events * 1e6)
            postgres[name]["faults"].append((faults_after - faults) / events)
            return seconds
        return counting

    seconds = common.interleaved(env.repeat, {n: counted(n, f) for n, f in runs.items()})
    rates = {name: [events / s for s in runs] for name, runs in seconds.items()}
    return Measured(events, rates, postgres)


def run(env: common.Env, size: int) -> dict[str, Any]:
    """`trailseal verify` over a log of ``size`` events against SHA-256 of its bytes."""
    events, rates, postgres = measure(env, env.log(size))
    # The subject is what `trailseal verify` does by default at this size.
    default, other = (("workers", "in_process") if events >= PARALLEL_FROM
                      else ("in_process", "workers"))
    subject = common.spread(rates[default])
    sha = common.spread(rates["sha256"])
    others = {"sha256": sha}
    if other in rates:
        others[f"verify, {other.replace('_', ' ')}"] = common.spread(rates[other])
    return common.result(
        NAME,
        measures="events/s of verify_tenant (canonical check, leaf hashes, chain, tiles, "
                 "every checkpoint's signature and root) as `trailseal verify` runs it: one "
                 f"worker process per CPU from {PARALLEL_FROM:,} events, else in one process",
        baseline="SHA-256 of the same canonical bytes, read in seq order in binary, "
                 "in one process",
        goal=f">= {GOAL:,} events/s",
        reproduce=f"make bench ARGS='--only {NAME}'  (or: .venv/bin/python "
                  f"bench/verify_rate.py --events {size})",
        size=events, unit="events/s", subject=subject,
        baselines=others,
        mode=default.replace("_", " "),
        ratio=subject["median"] / sha["median"], ratio_means="verify / SHA-256, medians",
        met=subject["median"] >= GOAL,
        postgres={name: {figure: common.spread(values) for figure, values in way.items()}
                  for name, way in postgres.items()},
        postgres_means="the embedded PostgreSQL's CPU microseconds and minor page faults "
                       "per event while each way ran (every process of the cluster)",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--before", type=Path, help="another checkout, timed side by side "
                        "(its C modules built or copied into its src)")
    common.data_dir_argument(parser)
    args = parser.parse_args()
    machine = common.machine()
    with tempfile.TemporaryDirectory() as tmp:
        env = common.start(args.data_dir or Path(tmp), args.repeat)
        try:
            tenant = env.log(args.events)
            events, rates, postgres = measure(env, tenant, args.before)
        finally:
            env.close()
    out: dict[str, object] = {"events": events, "cpus": os.cpu_count(),
                              "loaded": tenant in env.load_rates,  # else kept in --data-dir
                              "machine": machine, "load_average_after": os.getloadavg()}
    for name, values in rates.items():
        out[f"{name}_events_per_second"] = common.spread(values)
        out[f"{name}_postgres_cpu_us_per_event"] = common.spread(postgres[name]["cpu_us"])
        out[f"{name}_postgres_faults_per_event"] = common.spread(postgres[name]["faults"])
    out["ratio_median_workers_to_sha256"] = (
        common.spread(rates["workers"])["median"] / common.spread(rates["sha256"])["median"])
    for way in ("workers", "in_process"):
        if f"before_{way}" in rates:
            out[f"{way}_after_over_before"] = (common.spread(rates[way])["median"]
                                               / common.spread(rates[f"before_{way}"])["median"])
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
