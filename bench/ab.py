"""Before and after on one noisy machine: two `trailseal serve` processes, one running
another checkout's code, on one database, asked the same questions alternately.

A change to a read path is often worth a fraction of a millisecond, less than what a
shared machine drifts between two runs. Here both versions answer side by side: for each
ask, the same request goes to the "before" server and to the "after" server (this
checkout), in alternating order, and each answer's `Server-Timing: app;dur=` is kept.
Neither server runs the sequencer or the archiver in process (one `trailseal sequencer`
of this checkout sequences the meta-audit's records of the reads), so both do the same
work; the log is sealed before they start.
Reported per request kind: p50 and p95 of each side and the ratio of the p50s (after /
before: below 1 is faster). The kinds: the four questions of `bench/four_questions.py`
and an inclusion and a consistency proof at random indexes.

The "before" checkout must run on this database as migrated by this one: a server
refuses a database with migrations it does not know, so copy this checkout's newer
migrations into it (the comparison is then of the code alone, on one schema). It also
needs its C module built (or copied) in its `src`.
Reproduce: `git worktree add /tmp/before <commit>` (copy
`src/trailseal/integrity/_jcs*.so` and the newer `src/trailseal/store/migrations/*.sql`
into it), then
`.venv/bin/python bench/ab.py --before /tmp/before --events 100000`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:  # run as a script: bench/ is on the path, its parent is not
    sys.path.insert(0, ROOT)

import httpx
from bench import common
from bench.four_questions import PAGE, questions


def _asks(size: int) -> dict[str, tuple[str, dict[str, str]]]:
    asks = {title: ("/v1/events", {**params, "limit": str(PAGE)})
            for title, params in questions(datetime.now(UTC)).items()}
    index, older = random.randrange(size), random.randrange(1, size)
    asks["inclusion proof"] = ("/v1/log/proof/inclusion",
                               {"index": str(index), "size": str(size)})
    asks["consistency proof"] = ("/v1/log/proof/consistency",
                                 {"from": str(older), "to": str(size)})
    return asks


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def measure(env: common.Env, before: Path, size: int, rounds: int) -> dict[str, Any]:
    """Server milliseconds of every ask, per kind, from each side."""
    tenant = env.log(size)
    token = env.token(tenant)
    # Neither server sequences or archives: the meta-audit's records of the reads are
    # sequenced by a process of their own, so both servers do the same work.
    quiet = {"TRAILSEAL_RUN_SEQUENCER": "false", "TRAILSEAL_RUN_ARCHIVER": "false"}
    old, old_base = common.start_server(env.url, env.tmp, port=_free_port(), source=before,
                                        settings=quiet)
    new, new_base = common.start_server(env.url, env.tmp, port=_free_port(), settings=quiet)
    sequencer = subprocess.Popen(
        [sys.executable, "-m", "trailseal", "sequencer", "--data-dir", str(env.tmp)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "TRAILSEAL_DATABASE_URL": env.url,
             "TRAILSEAL_LOG_ORIGIN": common.ORIGIN})
    times: dict[str, dict[str, list[float]]] = {}
    try:
        headers = {"Authorization": f"Bearer {token}"}
        with (httpx.Client(base_url=old_base, headers=headers, timeout=60) as a,
              httpx.Client(base_url=new_base, headers=headers, timeout=60) as b):
            for turn in range(rounds):
                for title, (path, params) in _asks(size).items():
                    kept = times.setdefault(title, {"before": [], "after": []})
                    pair = [("before", a), ("after", b)]
                    for side, client in pair if turn % 2 == 0 else pair[::-1]:
                        answer = client.get(path, params=params)
                        answer.raise_for_status()
                        kept[side].append(common.server_ms(answer))
    finally:
        for process in (old, new, sequencer):
            process.terminate()
            process.wait(30)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="the other checkout")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--asks", type=int, default=300, help="of each kind, per side")
    common.data_dir_argument(parser)
    args = parser.parse_args()
    source = args.before.resolve() / "src"
    if not (source / "trailseal").is_dir():
        raise SystemExit(f"{args.before} is not a trailseal checkout (no src/trailseal)")
    with tempfile.TemporaryDirectory() as tmp:
        env = common.start(args.data_dir or Path(tmp), 1)
        try:
            times = measure(env, source, args.events, args.asks)
        finally:
            env.close()
    report: dict[str, Any] = {"events": args.events, "asks": args.asks,
                              "before": str(args.before), "machine": common.machine()}
    for title, sides in times.items():
        figures = {f"{side}_{label}_ms": common.percentile(sides[side], q)
                   for side in ("before", "after") for label, q in (("p50", 0.5),
                                                                    ("p95", 0.95))}
        figures["after_over_before_p50"] = figures["after_p50_ms"] / figures["before_p50_ms"]
        report[title] = figures
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
