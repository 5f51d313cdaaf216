"""The plots of a benchmark results file: one PNG per benchmark, the subject beside its
baselines (bars at the median, whiskers from min to max), titled with the goal and the
verdict. `bench/run.py` draws them after every run; to redraw from a results file:
`.venv/bin/python bench/plots.py bench/results/<date>.json --img docs/img`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

SUBJECT = "trailseal"


def missing() -> str | None:
    """Why plots cannot be drawn here, or None."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "matplotlib is not installed (it is in the bench extra: pip install -e '.[bench]')"
    return None


def render(results: dict[str, Any], img: Path) -> list[str]:
    """One PNG per benchmark in ``img``, named bench-<name>.png; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    img.mkdir(parents=True, exist_ok=True)
    written = []
    for bench in results["benchmarks"]:
        if "subject" not in bench:
            continue
        series = {SUBJECT: bench["subject"], **bench["baselines"]}
        names = list(series)
        medians = [series[n]["median"] for n in names]
        low = [series[n]["median"] - series[n]["min"] for n in names]
        high = [series[n]["max"] - series[n]["median"] for n in names]
        figure, axes = pyplot.subplots(figsize=(7.5, 0.6 * len(names) + 1.9))
        colours = ["#2b6cb0"] + ["#a0aec0"] * (len(names) - 1)
        axes.barh(range(len(names)), medians, xerr=[low, high], color=colours, capsize=4)
        axes.set_yticks(range(len(names)), [_wrap(n) for n in names])
        axes.invert_yaxis()
        if max(medians) > 30 * max(min(medians), 1e-12):
            axes.set_xscale("log")
        axes.set_xlabel(f"{bench['unit']} (median; whiskers min to max, "
                        f"{results['repeat']} runs)")
        axes.set_title(f"{bench['name']}: {bench['verdict']}\ngoal: {_wrap(bench['goal'], 80)}",
                       fontsize=9)
        figure.tight_layout()
        path = img / f"bench-{bench['name']}.png"
        figure.savefig(path, dpi=100)
        pyplot.close(figure)
        written.append(str(path))
    return written


def _wrap(text: str, width: int = 28) -> str:
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join([*lines, line])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--img", type=Path, default=Path("docs/img"))
    args = parser.parse_args()
    reason = missing()
    if reason:
        raise SystemExit(reason)
    for path in render(json.loads(args.results.read_text()), args.img):
        print(path)


if __name__ == "__main__":
    main()
