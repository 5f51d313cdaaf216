"""Where the CPU goes when events are ingested over HTTP: CPU time per event of each
process, and how far the sequencer trails the requests.

Measures, for N events posted as `bench/ingest_rate.py` posts them (4 clients, batches
of 500), each on a fresh tenant of one embedded PostgreSQL:

- **serve**: `trailseal serve` with its in-process sequencer and archiver, as in the
  ingest benchmark;
- **serve, archiver off**: the same with `TRAILSEAL_RUN_ARCHIVER=false`;
- **API alone**: `trailseal serve` with `TRAILSEAL_RUN_SEQUENCER=false` (and the
  archiver off), which only fills the inbox; then **sequencer alone**: the real
  sequencer, in this process once the clients are done, moving those events into the
  log with the default batch size;
- **COPY**: the ingest benchmark's baseline, binary COPY of the first way's rows into a
  table like `events` (its CPU includes creating and dropping that table).

For each: the wall time until the last request is answered and until the last event is
sequenced, and the CPU time (user + system, read from /proc) of the API process, of
PostgreSQL (every process of the embedded cluster, the exited backends included), and of
this process (the clients; the sequencer when it runs alone) — per event, and as a share of one
CPU over the wall time. CPU time is counted per process, so it holds on a busy machine
where rates do not. Medians over --repeat rounds. Linux only (/proc). Not part of
`bench/run.py`: an analysis, not a goal.
Reproduce: `.venv/bin/python bench/cpu_split.py --events 30000`.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:  # run as a script: bench/ is on the path, its parent is not
    sys.path.insert(0, ROOT)

from bench import common, ingest_rate

from trailseal.runtime import build_sequencer
from trailseal.settings import Settings
from trailseal.store import create_pool

NAME = "cpu_split"
TICK = os.sysconf("SC_CLK_TCK")
DEFAULT_BATCH = Settings.model_fields["sequencer_batch_size"].default  # as serve runs


def _stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (field 3 first)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text.rsplit(")", 1)[1].split()


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of the process ``pid``, all its threads."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / TICK


def cluster_cpu(postmaster: int) -> float:
    """CPU seconds of a PostgreSQL cluster (``cluster_usage``)."""
    return cluster_usage(postmaster)[0]


def cluster_usage(postmaster: int) -> tuple[float, int]:
    """CPU seconds and minor page faults of a PostgreSQL cluster: the postmaster, its
    live children, and the children it has reaped (their counts are added to its own
    when it reaps them). A child reaped while its siblings are read would be counted in
    neither place (a backend whose connection just closed, say), so the reading is
    repeated until the reaped children's counts are the same before and after it."""
    while True:
        own = _stat(postmaster)
        reaped = (own[8], own[13:15])
        cpu = sum(int(f) for f in own[11:15]) / TICK
        faults = int(own[7]) + int(own[8])
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                child = _stat(int(entry.name))
            except (FileNotFoundError, ProcessLookupError):
                continue  # gone meanwhile: the check below reads again
            if int(child[1]) == postmaster:
                cpu += (int(child[11]) + int(child[12])) / TICK
                faults += int(child[7])
        again = _stat(postmaster)
        if (again[8], again[13:15]) == reaped:
            return cpu, faults


def postmaster_pid(tmp: Path) -> int:
    return int((tmp / "pg" / "postmaster.pid").read_text().split()[0])


def _clock() -> dict[str, float]:
    return {"wall": time.perf_counter(), "clients": time.process_time()}


def _figures(count: int, wall: float, cpu: dict[str, float]) -> dict[str, Any]:
    return {
        "events_per_second": count / wall,
        "cpu_us_per_event": {k: v / count * 1e6 for k, v in cpu.items()},
        "cpu_share_of_one": {k: v / wall for k, v in cpu.items()},
    }


def _serve(env: common.Env, port: int, settings: dict[str, str]) -> subprocess.Popen[str]:
    server, _ = common.start_server(env.url, env.tmp, port=port, settings=settings)
    return server


def _post(env: common.Env, settings: dict[str, str], port: int, tenant: str,
          requests: list[bytes], until: common.LogSizes | None, count: int,
          ) -> tuple[float, float, dict[str, float]]:
    """Post ``requests`` to a `trailseal serve` of its own with ``settings``; with
    ``until``, also wait until all ``count`` events are sequenced. Returns the seconds
    until the last answer, the seconds until the end, and each process's CPU seconds."""
    server = _serve(env, port, settings)
    try:
        token, pg = env.token(tenant), postmaster_pid(env.tmp)
        api0, pg0, start = process_cpu(server.pid), cluster_cpu(pg), _clock()
        ingest_rate._post_all(f"http://127.0.0.1:{port}", token, requests)
        posted = time.perf_counter()
        done = posted if until is None else until.wait(tenant, count)
        cpu = {"api": process_cpu(server.pid) - api0, "postgres": cluster_cpu(pg) - pg0,
               "clients": time.process_time() - start["clients"]}
    finally:
        server.terminate()
        server.wait(30)
    return posted - start["wall"], done - start["wall"], cpu


def _combined(env: common.Env, sizes: common.LogSizes, requests: list[bytes], count: int,
              tenant: str, settings: dict[str, str]) -> dict[str, Any]:
    """Post and sequence in one `trailseal serve`."""
    posted, done, cpu = _post(env, settings, 19000 + os.getpid() % 500, tenant, requests,
                              sizes, count)
    found = _figures(count, done, cpu)
    found["posted_events_per_second"] = count / posted
    return found


def _split(env: common.Env, requests: list[bytes], count: int,
           tenant: str) -> dict[str, Any]:
    """Fill the inbox with the sequencer off, then sequence it in this process."""
    posted, _, api = _post(env, {"TRAILSEAL_RUN_SEQUENCER": "false",
                                 "TRAILSEAL_RUN_ARCHIVER": "false"},
                           19500 + os.getpid() % 500, tenant, requests, None, count)
    sequenced, seq_cpu, pg_cpu = asyncio.run(_sequence(env, tenant, postmaster_pid(env.tmp)))
    moved = {"sequencer": seq_cpu, "postgres": pg_cpu}
    return {"API alone": _figures(count, posted, api),
            "sequencer alone": _figures(count, sequenced, moved)}


async def _sequence(env: common.Env, tenant: str, postmaster: int
                    ) -> tuple[float, float, float]:
    """Sequence ``tenant``'s whole inbox with the real sequencer, in this process (no
    clients are running now): wall seconds, this process's and PostgreSQL's CPU seconds."""
    pool = create_pool(env.url, min_size=1, max_size=2)
    await pool.open(wait=True)
    try:
        sequencer = build_sequencer(pool, env.settings.model_copy(
            update={"sequencer_batch_size": DEFAULT_BATCH}))
        await sequencer.publish_key()
        pg0, own0, started = cluster_cpu(postmaster), time.process_time(), time.perf_counter()
        await sequencer.sequence_tenant(tenant)
        return (time.perf_counter() - started, time.process_time() - own0,
                cluster_cpu(postmaster) - pg0)
    finally:
        await pool.close()


def _copy(env: common.Env, tenant: str, count: int, round_: int) -> dict[str, Any]:
    """The ingest benchmark's baseline, counted the same way: binary COPY of ``tenant``'s
    rows into a table like ``events``."""
    rows, pg = env.tmp / "cpu_split.copy", postmaster_pid(env.tmp)
    ingest_rate._dump(env.url, tenant, rows)
    pg0, own0 = cluster_cpu(pg), time.process_time()
    seconds = ingest_rate._copy_seconds(env.url, rows, round_)
    return _figures(count, seconds, {"postgres": cluster_cpu(pg) - pg0,
                                     "clients": time.process_time() - own0})


def measure(env: common.Env, count: int) -> list[dict[str, Any]]:
    """Each round's figures, per way of running."""
    requests = ingest_rate.bodies(count)
    sizes = common.LogSizes(env.url)
    rounds = []
    try:
        for k in range(env.repeat):
            found = {
                "serve": _combined(env, sizes, requests, count, f"cpu{k}", {}),
                "serve, archiver off": _combined(env, sizes, requests, count, f"noarch{k}",
                                                 {"TRAILSEAL_RUN_ARCHIVER": "false"}),
            }
            found.update(_split(env, requests, count, f"split{k}"))
            found["COPY"] = _copy(env, f"cpu{k}", count, k)
            rounds.append(found)
    finally:
        sizes.close()
    return rounds


def _median(values: list[Any]) -> Any:
    if isinstance(values[0], dict):
        return {key: _median([v[key] for v in values]) for key in values[0]}
    return round(statistics.median(values), 3)


def run(env: common.Env, size: int) -> dict[str, Any]:
    """The medians of each figure, per way of running."""
    rounds = measure(env, size)
    return {"name": NAME, "size": size, "rounds": len(rounds), "cpus": os.cpu_count(),
            "load_average": os.getloadavg(), "medians": _median(rounds)}


def main() -> None:
    common.script(__doc__ or NAME, run, events=30_000)


if __name__ == "__main__":
    main()
