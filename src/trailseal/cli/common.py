"""What every command shares: settings, the data-dir option, error reporting."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Annotated, TypeVar

import psycopg
import typer
from psycopg import AsyncConnection
from rich.console import Console

from trailseal.errors import TrailsealError
from trailseal.runtime import Runtime, resolve
from trailseal.settings import Settings

T = TypeVar("T")

console = Console()
errors = Console(stderr=True)

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Directory of the embedded PostgreSQL and local secrets "
        "[env TRAILSEAL_DATA_DIR; default ./.trailseal]",
    ),
]


def settings(data_dir: Path | None = None) -> Settings:
    """Settings from the environment, with ``--data-dir`` taking precedence."""
    values = Settings()
    if data_dir is not None:
        values = values.model_copy(update={"data_dir": data_dir})
    return values


def fail(message: str) -> typer.Exit:
    """Print ``message`` as an error; return the exit to raise."""
    errors.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(1)


def runtime(values: Settings) -> Runtime:
    """The resolved database, with errors reported as messages, not tracebacks."""
    try:
        return resolve(values)
    except (TrailsealError, psycopg.Error, OSError) as exc:
        raise fail(str(exc)) from None


def run_with_connection(
    values: Settings, work: Callable[[AsyncConnection], Awaitable[T]]
) -> T:
    """Run ``work`` on one autocommit connection to the service's database."""
    target = runtime(values)

    async def go() -> T:
        async with await AsyncConnection.connect(target.database_url, autocommit=True) as conn:
            return await work(conn)

    try:
        return asyncio.run(go())
    except (TrailsealError, psycopg.Error) as exc:
        raise fail(str(exc)) from None


@contextmanager
def stopped_by_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set ``stop`` while inside; the old handlers come back after."""

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
