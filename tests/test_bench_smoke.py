"""Every benchmark still runs end to end: `bench/run.py --smoke` (tiny sizes, one round)
produces each one's figures and a goal verdict. Speed is never asserted here; it lives in
bench/ and docs/benchmarks.md.

A baseline whose package is not installed (django-auditlog, pymerkle and matplotlib are
in the bench extra, not the dev one) must be left out with its reason recorded.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parent.parent / "bench"
NAMES = {"integrity", "storage", "verify", "export", "proofs", "questions", "record", "ingest",
         "scale"}
OPTIONAL = {
    "integrity": ("pymerkle", "pymerkle InmemoryTree.append_entry"),
    "record": ("auditlog", "django-auditlog"),
}


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _script(name: str, *args: str) -> dict:
    """Run ``bench/<name>`` with ``args``; its JSON report (it must exit 0)."""
    done = subprocess.run([sys.executable, str(BENCH / name), *args],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    report: dict = json.loads(done.stdout)
    return report


def test_every_benchmark_runs_at_tiny_size(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--smoke", "--out", str(tmp_path),
         "--img", str(tmp_path / "img")],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    results = json.loads(Path(done.stdout.strip().splitlines()[-1]).read_text())
    assert results["mode"] == "smoke"
    assert results["finished"] >= results["started"]  # a run cut short has no "finished"
    assert results["machine"]["cpus"] >= 1
    found = {b["name"]: b for b in results["benchmarks"]}
    assert set(found) == NAMES
    for name, bench in found.items():
        assert "error" not in bench, (name, bench)
        for text in ("measures", "baseline", "goal", "reproduce"):
            assert bench[text], (name, text)
        for figure in (bench["subject"], *bench["baselines"].values()):
            assert figure["min"] <= figure["median"] <= figure["max"], (name, figure)
        assert bench["verdict"] in {"met", "NOT met", "report"}
        assert bench["met"] in {True, False, None}
        # A ratio needs its baseline: one not installed here leaves it unset, and says so.
        assert (bench["verdict"] == "report" or isinstance(bench["ratio"], float)
                or any(bench.get("skipped_baselines", {}).values())), (name, bench)
    for name, (module, baseline) in OPTIONAL.items():
        bench = found[name]
        if _installed(module):
            assert baseline in " ".join(bench["baselines"]), (name, bench["baselines"])
        else:
            assert bench["skipped_baselines"][baseline], (name, bench)
    if _installed("matplotlib"):
        assert {Path(p).name for p in results["plots"]} == {f"bench-{n}.png" for n in NAMES}
    else:
        assert "matplotlib" in results["plots_skipped"]
    assert not found["storage"]["segment"]["measured"] or found["storage"]["segment"][
        "bytes_per_event"] > 0
    control = found["record"]["control_p99_us"]
    assert 0 < found["record"]["control_p50_us"]["median"] <= control["median"]


def test_ab_runs_a_checkout_against_itself(tmp_path: Path) -> None:
    report = _script("ab.py", "--before", str(BENCH.parent), "--events", "200", "--asks", "2")
    kinds = [k for k, v in report.items() if isinstance(v, dict) and "before_p50_ms" in v]
    assert len(kinds) == 6  # the four questions and two proofs
    for kind in kinds:
        assert report[kind]["before_p50_ms"] > 0 and report[kind]["after_p50_ms"] > 0


def test_verify_rate_times_a_checkout_beside_this_one(tmp_path: Path) -> None:
    reports = []
    for _ in range(2):  # the second run uses the log the first kept in --data-dir
        reports.append(_script("verify_rate.py", "--before", str(BENCH.parent), "--events",
                               "300", "--repeat", "1", "--data-dir", str(tmp_path)))
    assert [(r["events"], r["loaded"]) for r in reports] == [(300, True), (300, False)]
    for way in ("workers", "in_process"):
        assert reports[0][f"before_{way}_events_per_second"]["median"] > 0
        assert reports[0][f"{way}_after_over_before"] > 0


def test_a_benchmark_script_keeps_its_log_in_a_data_dir(tmp_path: Path) -> None:
    loaded = []
    for _ in range(2):  # the second run asks the log the first kept in --data-dir
        report = _script("four_questions.py", "--events", "200", "--repeat", "1",
                         "--data-dir", str(tmp_path))
        assert report["size"] == 200 and report["verdict"] in ("met", "NOT met")
        loaded.append(report["loaded"])
    assert loaded == [["log200"], []]


def test_write_split_times_each_write() -> None:
    found = _script("write_split.py", "--events", "200", "--repeat", "1")[
        "microseconds_per_event"]
    assert set(found) == {"event_ids insert", "inbox insert", "inbox delete by position",
                          "events insert", "COPY into events"}
    assert all(value > 0 for value in found.values()), found


def test_cpu_split_counts_each_process() -> None:
    found = _script("cpu_split.py", "--events", "200", "--repeat", "1")["medians"]
    assert set(found) == {"serve", "serve, archiver off", "API alone", "sequencer alone",
                          "COPY"}
    for way in ("serve", "serve, archiver off", "API alone"):
        assert set(found[way]["cpu_us_per_event"]) == {"api", "postgres", "clients"}
    assert set(found["sequencer alone"]["cpu_us_per_event"]) == {"sequencer", "postgres"}
    assert set(found["COPY"]["cpu_us_per_event"]) == {"postgres", "clients"}
    # Counts of a process's CPU come in clock ticks (10 ms), so at this size one may be 0;
    # this process's own (the clients', the lone sequencer's) is exact.
    for way in found.values():
        assert way["events_per_second"] > 0
        assert all(value >= 0 for value in way["cpu_us_per_event"].values()), way
        assert sum(way["cpu_us_per_event"].values()) > 0, way


def test_seal_cost_counts_sealing_and_open_sweeps() -> None:
    found = _script("seal_cost.py", "--events", "200", "--repeat", "1")
    assert found["all"][0]["segments_sealed"] == 4  # 200 events: four full segments of 50
    for part in ("sealing_us_per_event", "open_segment_ms_per_sweep"):
        assert set(found["medians"][part]) == {"archiver", "postgres"}
    assert found["medians"]["sealing_us_per_event"]["archiver"] > 0
    assert set(found["zstd_levels"]) == {"3", "6", "9", "19"}
    assert found["read_back_us_per_event"] > 0
    assert all(v["bytes_per_event"] > 0 for v in found["zstd_levels"].values())


def test_ingest_python_times_each_step() -> None:
    found = _script("ingest_python.py", "--events", "200", "--repeat", "2", "--frozen")
    assert set(found["cpu_us_per_event"]) == {"read the body", "prepare", "inbox parameters"}
    assert all(step["best"] > 0 for step in found["cpu_us_per_event"].values()), found
    assert found["total"]["best"] <= found["total"]["median"] and found["frozen"]


def test_spool_sync_times_appends_and_rotations() -> None:
    # 12,000 records of 408 bytes: the first segment (4 MB) fills once.
    found = _script("spool_sync.py", "--records", "12000", "--repeat", "1")
    (round_,) = found["rounds"]
    assert len(round_["rotations_ms"]) == 1
    assert 0 < round_["p50_us"] <= round_["p99_us"] <= round_["p999_us"] <= round_["max_us"]
    assert round_["mean_us"] > 0
    assert set(found["spread"]) == {"mean_us", "p50_us", "p99_us", "p999_us", "max_us",
                                    "rotation_ms"}
