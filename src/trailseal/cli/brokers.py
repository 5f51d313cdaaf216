"""``trailseal consume``: move events from RabbitMQ or NATS JetStream into the inbox."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Annotated

import psycopg
import typer

from trailseal.cli.common import DataDir, console, fail, runtime, settings
from trailseal.errors import TrailsealError
from trailseal.pipeline.brokers import (
    BROKER_ERRORS,
    DEFAULT_STREAM,
    broker_kind,
    default_destination,
    destination_kind,
    redact,
)
from trailseal.pipeline.consumer import DEFAULT_ACK_WAIT, ConsumeStats, consume, ingest_tenant
from trailseal.store import create_pool
from trailseal.store.migrate import check


def register(app: typer.Typer) -> None:
    app.command("consume")(consume_command)


def consume_command(
    source: Annotated[
        str,
        typer.Option(
            "--from", metavar="URL",
            help="Broker to read: amqp://, amqps:// (RabbitMQ) or nats://, tls:// (NATS)",
        ),
    ],
    token: Annotated[
        str,
        typer.Option(
            envvar="TRAILSEAL_TOKEN", show_envvar=True,
            help="API key with the ingest scope; every event goes to its tenant",
        ),
    ],
    queue: Annotated[
        str | None,
        typer.Option(help="RabbitMQ queue; default trailseal.events.<tenant>"),
    ] = None,
    subject: Annotated[
        str | None,
        typer.Option(help="NATS subject; default trailseal.events.<tenant>"),
    ] = None,
    stream: Annotated[str, typer.Option(help="NATS JetStream stream")] = DEFAULT_STREAM,
    ack_wait: Annotated[
        float,
        typer.Option(min=1.0, help="NATS: seconds before an unacked message is redelivered"),
    ] = DEFAULT_ACK_WAIT,
    data_dir: DataDir = None,
) -> None:
    """Write the events published to a broker into the inbox of the token's tenant,
    acknowledging each message only after it is committed. Invalid messages are
    dead-lettered (RabbitMQ: <queue>.dead; NATS: terminated). SIGTERM or Ctrl-C stops
    after the current batch."""
    try:
        destination_kind(source, queue=queue, subject=subject)
    except TrailsealError as exc:
        raise fail(str(exc)) from None
    values = settings(data_dir)
    target = runtime(values)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("trailseal").setLevel(logging.INFO)
    try:
        if not target.embedded:
            check(target.database_url)
        stats = asyncio.run(
            _consume(target.database_url, source, token, queue, subject, stream, ack_wait)
        )
    except (TrailsealError, psycopg.Error) as exc:
        raise fail(str(exc)) from None
    except BROKER_ERRORS as exc:
        raise fail(f"cannot consume from {redact(source)}: {exc}") from None
    console.print(
        f"consumed {stats.messages} message(s): {stats.written} written, "
        f"{stats.duplicates} duplicate(s), {stats.dead} dead-lettered",
        highlight=False, soft_wrap=True,
    )


async def _consume(
    database_url: str, source: str, token: str, queue: str | None, subject: str | None,
    stream: str, ack_wait: float,
) -> ConsumeStats:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    pool = create_pool(database_url, min_size=1, max_size=2)
    await pool.open(wait=True)
    try:
        tenant = await ingest_tenant(pool, token)
        where = (queue or default_destination(tenant)) if broker_kind(source) == "amqp" else (
            f"{subject or default_destination(tenant)} of stream {stream}"
        )
        console.print(
            f"consuming {where} at {redact(source)} into tenant {tenant}",
            highlight=False, soft_wrap=True,
        )
        return await consume(
            source, pool, tenant, queue=queue, subject=subject, stream=stream,
            ack_wait=ack_wait, stop=stop,
        )
    finally:
        await pool.close()
