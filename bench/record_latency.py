"""Time of `AuditClient.record()` on the caller's thread: p50, p99, p99.9.

Measures: the wall time of each record() call (build the event, redact, spool it with
os.write), over N calls, in two runs: with the sender idle (the service unreachable, so
the background thread mostly sleeps in backoff) and with the sender delivering to a live
service (`trailseal serve --demo` started in a temporary folder), where the sender thread
competes for the GIL. Goal: p99 <= 20 us. Reproduce:
`.venv/bin/python bench/record_latency.py --events 50000`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from trailseal.client import AuditClient

logging.getLogger("trailseal.client").setLevel(logging.ERROR)  # retries while "idle"


def _percentiles(samples: list[int]) -> dict[str, float]:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(len(ordered) * q))] / 1000  # noqa: E731
    return {"p50_us": pick(0.50), "p99_us": pick(0.99), "p999_us": pick(0.999),
            "max_us": ordered[-1] / 1000}


def run(url: str, token: str, spool: Path, events: int, deliver: bool) -> dict[str, object]:
    client = AuditClient(url, token, spool, max_delay=0.05)
    samples = []
    clock = time.perf_counter_ns
    for i in range(events):
        start = clock()
        client.record("user.role.updated", actor=("user", "7", "Ann"), target=("user", "42"),
                      changes={"role": {"before": "viewer", "after": "editor"}},
                      metadata={"i": i, "reason": "quarterly review"})
        samples.append(clock() - start)
    result: dict[str, object] = dict(_percentiles(samples))
    if deliver:
        result["delivered"] = client.flush(120)
    client.close(0.1 if not deliver else 5)
    return result


def _wait_healthy(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit("the service did not become healthy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    out: dict[str, object] = {"events": args.events}
    with tempfile.TemporaryDirectory() as tmp:
        out["sender_idle"] = run("http://127.0.0.1:9", "tsk_none", Path(tmp, "idle"),
                                 args.events, deliver=False)
        port = 18000 + os.getpid() % 1000
        serve = subprocess.Popen(
            [sys.executable, "-m", "trailseal", "serve", "--demo", "--port", str(port),
             "--data-dir", str(Path(tmp, "data"))],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            token = None
            while token is None:
                line = serve.stdout.readline() if serve.stdout else ""
                if not line:
                    raise SystemExit("the service did not start")
                found = re.search(r"TOKEN=(tsk_\S+)", line)
                token = found[1] if found else None
            _wait_healthy(f"http://127.0.0.1:{port}/healthz")
            out["sender_live"] = run(f"http://127.0.0.1:{port}", token, Path(tmp, "live"),
                                     args.events, deliver=True)
        finally:
            serve.terminate()
            serve.wait(30)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
