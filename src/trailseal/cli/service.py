"""``trailseal serve`` and ``trailseal sequencer``."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Annotated

import psycopg
import typer
import uvicorn
from psycopg import AsyncConnection

from trailseal.cli.common import DataDir, console, fail, runtime, settings
from trailseal.demo import seed
from trailseal.errors import TrailsealError
from trailseal.runtime import build_sequencer, freeze_startup, load_signer
from trailseal.settings import Settings
from trailseal.store import create_pool
from trailseal.store.migrate import check
from trailseal.web.app import create_app
from trailseal.web.logs import json_log_config


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("sequencer")(sequencer)


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    data_dir: DataDir = None,
    demo: Annotated[bool, typer.Option(help="Create a demo tenant, key and events")] = False,
) -> None:
    """Run the API and the sequencer in one process. Without TRAILSEAL_DATABASE_URL an
    embedded PostgreSQL is started in the data directory."""
    values = settings(data_dir)
    target = runtime(values)
    try:
        if not target.embedded:
            check(target.database_url)
        if demo:
            key = asyncio.run(_seed(target.database_url))
            _announce_demo(host, port, key.token)
        if values.run_sequencer:
            console.print("checkpoints are signed by the verifier key:", style="bold")
            print(f"  {load_signer(values).verifier_key()}")  # unwrapped, to copy whole
    except (TrailsealError, psycopg.Error) as exc:
        raise fail(str(exc)) from None
    app = create_app(values, target.database_url, target.cursor_key)
    freeze_startup()  # the process's own choice, not the app's (tests make many apps)
    log_config = json_log_config() if values.log_json else uvicorn.config.LOGGING_CONFIG
    uvicorn.run(app, host=host, port=port, log_level="info", proxy_headers=False,
                log_config=log_config)


async def _seed(url: str):  # type: ignore[no-untyped-def]
    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        return await seed(conn)


def _announce_demo(host: str, port: int, token: str) -> None:
    base = f"http://{host}:{port}"
    console.print("[bold]demo tenant[/bold] demo, key with scopes ingest,read,export,admin:")
    print(f"  TOKEN={token}")
    console.print("try:", style="bold")
    print(f"  curl -s -H \"Authorization: Bearer $TOKEN\" {base}/v1/events | python3 -m json.tool")
    print(
        f"  curl -s -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' "
        f"'{base}/v1/events?wait=sequenced' -d '{{\"actor\": {{\"type\": \"user\", \"id\": "
        f"\"u_1\"}}, \"action\": \"user.login.succeeded\", \"target\": {{\"type\": \"user\", "
        f"\"id\": \"u_1\"}}}}'"
    )
    print(f"  open {base}/docs")
    console.print("the console:", style="bold")
    print(f"  open {base}/ui/ and sign in with the token")


def sequencer(
    data_dir: DataDir = None,
    once: Annotated[bool, typer.Option(help="Sequence what is waiting, then exit")] = False,
) -> None:
    """Run a standalone sequencer. Several may run at once: each tenant is sequenced by one
    of them at a time."""
    values = settings(data_dir)
    target = runtime(values)
    try:
        if not target.embedded:
            check(target.database_url)
        total = asyncio.run(_sequence(target.database_url, values, once))
    except (TrailsealError, psycopg.Error) as exc:
        raise fail(str(exc)) from None
    if once:
        console.print(f"sequenced {total} event(s)")


async def _sequence(url: str, values: Settings, once: bool) -> int:
    pool = create_pool(url, min_size=1, max_size=2)
    await pool.open(wait=True)
    try:
        worker = build_sequencer(pool, values)
        if once:
            return await worker.run_once()
        freeze_startup()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await worker.run(stop)
        return 0
    finally:
        await pool.close()
