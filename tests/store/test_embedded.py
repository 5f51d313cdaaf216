"""The embedded PostgreSQL runs with trailseal's WAL settings, set again on every start."""

import shutil
import tempfile
import time
from pathlib import Path

import psycopg

from trailseal.store import embedded


def _shown(url: str, expected: dict[str, str]) -> dict[str, str]:
    """The settings a new session sees, once they equal ``expected`` or after 10 s: a
    reload reaches the server's processes a moment after pg_reload_conf() returns."""
    deadline = time.monotonic() + 10
    while True:
        with psycopg.connect(url) as conn:
            shown = {n: str(conn.execute(f"SHOW {n}").fetchone()[0]) for n in expected}
        if shown == expected or time.monotonic() > deadline:
            return shown
        time.sleep(0.05)


def test_every_start_applies_the_settings():
    data = Path(tempfile.mkdtemp(prefix="trailseal-test-pg-"))
    try:
        url = embedded.start(data)
        wanted = {"max_wal_size": "8GB", "checkpoint_timeout": "15min"}
        assert _shown(url, wanted) == wanted
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM RESET max_wal_size")
            conn.execute("SELECT pg_reload_conf()")
        assert _shown(url, {"max_wal_size": "1GB"}) == {"max_wal_size": "1GB"}  # the default
        assert _shown(embedded.start(data), wanted) == wanted
    finally:
        embedded.stop(data)
        shutil.rmtree(data, ignore_errors=True)
