"""The time django-auditlog adds to a Django model's save(), on a given PostgreSQL.

The baseline of the SDK's record() (bench/record_latency.py): a model registered with
django-auditlog writes a LogEntry (with its diff) in the same save(). Measures the wall
time of save() of an update that changes one field, in alternating blocks of 200 saves
with the model registered and not registered, and reports p50 and p99 of each and their
difference (what auditlog adds). Runs in a process of its own, because Django is
configured once per process. Needs django-auditlog (the bench extra). Reproduce:
`.venv/bin/python bench/auditlog_baseline.py --url postgresql://... --saves 5000`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:  # run as a script: bench/ is on the path, its parent is not
    sys.path.insert(0, ROOT)

from bench import common

BLOCK = 200


def missing() -> str | None:
    """Why this baseline cannot run here, or None."""
    try:
        import auditlog  # noqa: F401
        import django  # noqa: F401
    except ImportError as exc:
        return (f"{exc.name} is not installed (django-auditlog is in the bench extra: "
                "pip install -e '.[bench]')")
    return None


def _configure(url: str) -> None:
    import django
    import psycopg
    from django.conf import settings

    parts = psycopg.conninfo.conninfo_to_dict(url)
    settings.configure(
        DATABASES={"default": {
            "ENGINE": "django.db.backends.postgresql", "NAME": parts.get("dbname"),
            "USER": parts.get("user", ""), "PASSWORD": parts.get("password", ""),
            "HOST": parts.get("host", ""), "PORT": parts.get("port", ""),
        }},
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "auditlog",
                        "bench.auditlog_app"],
        USE_TZ=True, DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        SECRET_KEY="bench-only",
    )
    django.setup()


def measure(url: str, saves: int) -> dict[str, Any]:
    """p50/p99 of save() with and without auditlog, in microseconds, and the added time."""
    _configure(url)
    from auditlog.registry import auditlog
    from bench.auditlog_app.models import Account
    from django.core.management import call_command

    call_command("migrate", run_syncdb=True, verbosity=0)
    account = Account.objects.create(name="Ann", role="viewer")
    samples: dict[bool, list[float]] = {True: [], False: []}
    clock = time.perf_counter_ns
    roles = ("viewer", "editor")
    for block in range(max(2, 2 * saves // BLOCK)):
        registered = block % 2 == 0
        if registered:
            auditlog.register(Account)
        for i in range(min(BLOCK, saves)):
            account.role = roles[i % 2]
            start = clock()
            account.save()
            samples[registered].append((clock() - start) / 1000)
        if registered:
            auditlog.unregister(Account)
    out: dict[str, Any] = {"saves": len(samples[True])}
    for q, label in ((0.5, "p50"), (0.99, "p99")):
        with_ = common.percentile(samples[True], q)
        without = common.percentile(samples[False], q)
        out[f"{label}_us_with_auditlog"] = with_
        out[f"{label}_us_without"] = without
        out[f"{label}_us_added"] = with_ - without
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True, help="a PostgreSQL URL (a scratch database)")
    parser.add_argument("--saves", type=int, default=5000)
    args = parser.parse_args()
    reason = missing()
    if reason:
        raise SystemExit(reason)
    print(json.dumps(measure(args.url, args.saves)))


if __name__ == "__main__":
    main()
