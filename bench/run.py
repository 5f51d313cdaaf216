"""The benchmark suite: every benchmark against its baseline, in one run, on one machine.

`make bench` runs the quick sizes (a few minutes); `make bench FULL=1` the full ones (10M
events where the goals say so); `--smoke` tiny sizes, one round (what the test suite runs
so the benchmarks cannot rot). Every figure is a ratio against a baseline measured in the
same run on the same PostgreSQL, with subject and baseline interleaved --repeat times, as
min/median/max. Writes `<out>/<YYYY-MM-DD>.json` after each benchmark (with `finished`
once all are done) and at the end the plots `<img>/bench-<name>.png`.
Reproduce: `.venv/bin/python bench/run.py [--full] [--only verify,export]`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:  # run as a script: bench/ is on the path, its parent is not
    sys.path.insert(0, ROOT)

from bench import (
    common,
    export_rate,
    four_questions,
    ingest_rate,
    integrity_cost,
    plots,
    proof_latency,
    record_latency,
    scale,
    storage_size,
    verify_rate,
)

# In this order: storage right after the shared log is loaded, before any other
# benchmark adds rows; ingest and scale last, as they add the most.
BENCHMARKS: list[ModuleType] = [
    integrity_cost, storage_size, verify_rate, export_rate, proof_latency, four_questions,
    record_latency, ingest_rate, scale,
]
HERE = Path(__file__).parent


def _selected(only: str | None) -> list[ModuleType]:
    if not only:
        return BENCHMARKS
    names = [n.strip() for n in only.split(",") if n.strip()]
    known = {m.NAME: m for m in BENCHMARKS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; known: {sorted(known)}")
    return [m for m in BENCHMARKS if m.NAME in names]


def run(mode: str, only: str | None, repeat: int, out: Path, img: Path) -> dict[str, Any]:
    """Run the selected benchmarks; write and return the results."""
    results: dict[str, Any] = {
        "date": datetime.now(UTC).date().isoformat(), "mode": mode, "repeat": repeat,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": common.machine(), "benchmarks": [],
    }
    with tempfile.TemporaryDirectory(prefix="trailseal-bench-") as tmp:
        env = common.start(Path(tmp), repeat, smoke=mode == "smoke")
        try:
            for module in _selected(only):
                size = module.SIZES[mode]
                print(f"{module.NAME}: {size:,} ...", file=sys.stderr, flush=True)
                started = time.perf_counter()
                try:
                    found = module.run(env, size)
                except Exception as exc:  # one broken benchmark must not hide the others
                    traceback.print_exc()
                    found = {"name": module.NAME, "error": f"{type(exc).__name__}: {exc}"}
                found["seconds"] = round(time.perf_counter() - started, 1)
                results["benchmarks"].append(found)
                results["loader_events_per_second"] = env.load_rates
                _write(results, out)  # a long run cut short keeps what it measured
                print(f"{module.NAME}: {_summary(found)}", file=sys.stderr, flush=True)
        finally:
            env.close()
    results["load_average_after"] = common.machine()["load_average"]
    reason = plots.missing()
    if reason is None:
        results["plots"] = [_shown(p) for p in plots.render(results, img)]
    else:
        results["plots_skipped"] = reason
    results["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["written"] = str(_write(results, out))
    return results


def _write(results: dict[str, Any], out: Path) -> Path:
    """Write ``results`` to ``out/<date>.json``; until the run is over it has no
    ``finished``."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{results['date']}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path


def _shown(path: str) -> str:
    """``path`` relative to the checkout when it lies inside it."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else path


def _summary(found: dict[str, Any]) -> str:
    if "error" in found:
        return f"FAILED ({found['error']})"
    ratio = "-" if found["ratio"] is None else f"{found['ratio']:.3g}"
    return (f"median {found['subject']['median']:.4g} {found['unit']}, ratio {ratio} "
            f"({found['ratio_means']}), goal {found['goal']}: {found['verdict']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--full", action="store_true", help="the full sizes (10M events)")
    size.add_argument("--smoke", action="store_true", help="tiny sizes, one round")
    parser.add_argument("--only", help="NAME[,NAME]: " + ", ".join(m.NAME for m in BENCHMARKS))
    parser.add_argument("--repeat", type=int, help="rounds of each (default 3; smoke 1)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--img", type=Path, default=HERE.parent / "docs" / "img")
    args = parser.parse_args()
    mode = "full" if args.full else "smoke" if args.smoke else "quick"
    repeat = args.repeat or (1 if args.smoke else 3)
    results = run(mode, args.only, repeat, args.out, args.img)
    print(results["written"])
    if any("error" in b for b in results["benchmarks"]):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
