"""Time of `AuditClient.record()` on the caller's thread: p50, p99, p99.9.

Measures: the wall time of each record() call (build the event, redact, write it into
the spool's mapped segment), over N calls, in two runs: with the sender idle (the service
unreachable, so the background thread mostly sleeps in backoff) and with the sender
delivering to a live service (`trailseal serve` on the same PostgreSQL), where the sender
thread competes for the GIL. Beside them, a control: the same percentiles of a fixed
piece of pure Python (`control`: sorted-key JSON and a SHA-256 of a small event, no I/O,
no other thread), timed the same way in the same run, so a tail that comes from the
machine (other processes, the hypervisor) shows in the control's p99 over its p50 as
well. Goal: p99 <= 20 us. Baseline (in `bench/run.py`, same run, same PostgreSQL): the
time django-auditlog adds to a model's save() (bench/auditlog_baseline.py). Reproduce:
`.venv/bin/python bench/record_latency.py --events 50000`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:  # run as a script: bench/ is on the path, its parent is not
    sys.path.insert(0, ROOT)

import psycopg
from bench import auditlog_baseline, common
from psycopg import sql

from trailseal.client import AuditClient

logging.getLogger("trailseal.client").setLevel(logging.ERROR)  # retries while "idle"

NAME = "record"
SIZES = {"smoke": 200, "quick": 20_000, "full": 200_000}
GOAL_P99_US = 20.0
GOAL_TIMES_LESS = 50.0
SCRATCH = "bench_django"


def _percentiles(samples: list[int]) -> dict[str, float]:
    pick = lambda q: common.percentile(samples, q) / 1000  # noqa: E731
    return {"p50_us": pick(0.50), "p99_us": pick(0.99), "p999_us": pick(0.999),
            "max_us": max(samples) / 1000}


_CONTROL_EVENT = {"action": "user.role.updated", "actor": {"type": "user", "id": "7"},
                  "target": {"type": "user", "id": "42"},
                  "changes": {"role": {"before": "viewer", "after": "editor"}},
                  "metadata": {"reason": "quarterly review"}}


def control(calls: int) -> dict[str, float]:
    """The percentiles of a fixed piece of pure Python timed ``calls`` times, as
    :func:`measure` times record(): what the machine's own jitter does to a tail."""
    samples = []
    clock = time.perf_counter_ns
    for _ in range(calls):
        start = clock()
        hashlib.sha256(json.dumps(_CONTROL_EVENT, sort_keys=True).encode()).digest()
        samples.append(clock() - start)
    return _percentiles(samples)


def measure(url: str, token: str, spool: Path, events: int, deliver: bool) -> dict[str, Any]:
    """record() ``events`` times; the percentiles of its wall time."""
    client = AuditClient(url, token, spool, max_delay=0.05)
    samples = []
    clock = time.perf_counter_ns
    for i in range(events):
        start = clock()
        client.record("user.role.updated", actor=("user", "7", "Ann"), target=("user", "42"),
                      changes={"role": {"before": "viewer", "after": "editor"}},
                      metadata={"i": i, "reason": "quarterly review"})
        samples.append(clock() - start)
    result: dict[str, Any] = dict(_percentiles(samples))
    if deliver:
        result["delivered"] = client.flush(120)
    client.close(0.1 if not deliver else 5)
    return result


def _auditlog(env: common.Env, saves: int) -> dict[str, Any]:
    """bench/auditlog_baseline.py in a process of its own, on a scratch database."""
    with psycopg.connect(env.url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(SCRATCH)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(SCRATCH)))
    url = psycopg.conninfo.make_conninfo(env.url, dbname=SCRATCH)
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("auditlog_baseline.py")), "--url", url,
         "--saves", str(saves)], capture_output=True, text=True, check=True, timeout=1800)
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def run(env: common.Env, size: int) -> dict[str, Any]:
    """record() on the caller's thread against what django-auditlog adds to save()."""
    tenant = "record"
    base, token = env.serve(), env.token(tenant)
    missing = auditlog_baseline.missing()
    saves = max(400, size // 4)
    rounds: dict[str, list[dict[str, Any]]] = {"idle": [], "live": [], "auditlog": [],
                                               "control": []}
    for k in range(env.repeat):
        rounds["control"].append(control(size))
        rounds["idle"].append(measure("http://127.0.0.1:9", "tsk_none",
                                      env.tmp / f"spool-idle-{k}", size, deliver=False))
        rounds["live"].append(measure(base, token, env.tmp / f"spool-live-{k}", size,
                                      deliver=True))
        if missing is None:
            rounds["auditlog"].append(_auditlog(env, saves))

    def series(name: str, key: str) -> dict[str, float]:
        return common.spread([r[key] for r in rounds[name]])

    subject = series("live", "p99_us")
    extra: dict[str, Any] = {
        "record_p50_us_sender_live": series("live", "p50_us"),
        "record_p99_us_sender_idle": series("idle", "p99_us"),
        "record_p50_us_sender_idle": series("idle", "p50_us"),
        "record_p999_us_sender_live": series("live", "p999_us"),
        "delivered": all(r["delivered"] for r in rounds["live"]),
        "control_p50_us": series("control", "p50_us"),
        "control_p99_us": series("control", "p99_us"),
    }
    baselines: dict[str, dict[str, float]] = {}
    skipped: dict[str, str] = {}
    ratio = None
    met = subject["median"] <= GOAL_P99_US
    if missing is None:
        added_p50 = series("auditlog", "p50_us_added")
        baselines["django-auditlog, added to save(), p50"] = added_p50
        baselines["django-auditlog, added to save(), p99"] = series("auditlog", "p99_us_added")
        baselines["save() without auditlog, p50"] = series("auditlog", "p50_us_without")
        ratio = added_p50["median"] / extra["record_p50_us_sender_live"]["median"]
        met = met and ratio >= GOAL_TIMES_LESS
        extra["auditlog_saves"] = saves
    else:
        skipped["django-auditlog"] = missing
    return common.result(
        NAME,
        measures="wall time of AuditClient.record() on the caller's thread, p99 (and p50) "
                 "over each run of N calls, with the sender delivering to trailseal serve",
        baseline="the time django-auditlog adds to a Django model save() (an update of one "
                 "field) on the same PostgreSQL: p50 with it registered minus p50 without",
        goal=f"p99 <= {GOAL_P99_US:g} us, and >= {GOAL_TIMES_LESS:g}x less than the baseline "
             "(p50 against p50)",
        reproduce=f"make bench ARGS='--only {NAME}'  (or: .venv/bin/python "
                  f"bench/record_latency.py --events {size})",
        size=size, unit="us", subject=subject, baselines=baselines, ratio=ratio,
        ratio_means="auditlog's added p50 / record() p50 (sender live), medians: how many "
                    "times less record() costs",
        met=met, skipped_baselines=skipped, **extra,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    out: dict[str, object] = {"events": args.events, "control": control(args.events)}
    with tempfile.TemporaryDirectory() as tmp:
        out["sender_idle"] = measure("http://127.0.0.1:9", "tsk_none", Path(tmp, "idle"),
                                     args.events, deliver=False)
        env = common.start(Path(tmp, "pg"), repeat=1)
        try:
            out["sender_live"] = measure(env.serve(), env.token("record"), Path(tmp, "live"),
                                         args.events, deliver=True)
        finally:
            env.close()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
