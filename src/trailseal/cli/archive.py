"""``trailseal archiver``: seal each tenant's log into segments in the write-once store."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Annotated

import psycopg
import typer
from psycopg import AsyncConnection

from trailseal.cli.common import DataDir, console, fail, runtime, settings
from trailseal.errors import TrailsealError
from trailseal.runtime import build_archiver
from trailseal.settings import Settings
from trailseal.store import create_pool
from trailseal.store.migrate import check


def register(app: typer.Typer) -> None:
    app.command("archiver")(archiver)


def archiver(
    data_dir: DataDir = None,
    once: Annotated[bool, typer.Option(help="Seal what is ready, then exit")] = False,
) -> None:
    """Seal each tenant's log into segments (Parquet and a signed manifest) in the
    write-once store (TRAILSEAL_ARCHIVE_URL), closing one at TRAILSEAL_SEGMENT_MAX_EVENTS
    events or TRAILSEAL_SEGMENT_MAX_AGE_SECONDS of age."""
    values = settings(data_dir)
    target = runtime(values)
    try:
        if not target.embedded:
            check(target.database_url)
        total = asyncio.run(_archive(target.database_url, values, once))
    except (TrailsealError, psycopg.Error, OSError) as exc:
        raise fail(str(exc)) from None
    if once:
        console.print(f"sealed {total} segment(s)")


async def _archive(url: str, values: Settings, once: bool) -> int:
    worker = build_archiver(values)
    if once:
        async with await AsyncConnection.connect(url, autocommit=True) as conn:
            return await worker.run_once(conn)
    pool = create_pool(url, min_size=1, max_size=2)
    await pool.open(wait=True)
    try:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await worker.run(pool.connection, stop, values.archiver_idle_seconds)
        return 0
    finally:
        await pool.close()
