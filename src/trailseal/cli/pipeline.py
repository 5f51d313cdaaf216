"""``trailseal outbox install``, ``trailseal capture install`` and ``trailseal relay``:
the outbox in a producer's database, trigger capture into it, and its relay."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Annotated, TypeVar

import psycopg
import typer

from trailseal.cli.common import console, fail, stopped_by_signals
from trailseal.errors import ConfigurationError, TrailsealError
from trailseal.pipeline.brokers import broker_transport
from trailseal.pipeline.capture import install_capture
from trailseal.pipeline.outbox import TABLE, install_outbox, outbox_exists
from trailseal.pipeline.relay import KEEP_DAYS, HttpTransport, Relay
from trailseal.pipeline.transport import Transport, TransportError

T = TypeVar("T")

outbox_app = typer.Typer(help="The transactional outbox in a producer's database.",
                         no_args_is_help=True)
capture_app = typer.Typer(help="Capture a table's row changes into the outbox.",
                          no_args_is_help=True)

Dsn = Annotated[
    str, typer.Option("--dsn", help="The producer's database (a PostgreSQL URL or DSN)")
]
Schema = Annotated[str, typer.Option("--schema", help="Schema of the outbox table")]


def register(app: typer.Typer) -> None:
    app.add_typer(outbox_app, name="outbox")
    app.add_typer(capture_app, name="capture")
    app.command("relay")(relay_command)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _with_connection(dsn: str, work: Callable[[psycopg.Connection], T]) -> T:
    """Run ``work`` on an autocommit connection to the producer's database; errors
    become one-line messages."""
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
            return work(conn)
    except (TrailsealError, psycopg.Error) as exc:
        raise fail(_one_line(exc)) from None


@outbox_app.command("install")
def outbox_install(dsn: Dsn, schema: Schema = "public") -> None:
    """Create the outbox table (and the UUIDv7 function the triggers use); idempotent."""
    _with_connection(dsn, lambda conn: install_outbox(conn, schema))
    console.print(f"outbox ready: {schema}.{TABLE}")


@capture_app.command("install")
def capture_install(
    dsn: Dsn,
    table: Annotated[str, typer.Option("--table", help="SCHEMA.TABLE to capture")],
    exclude_columns: Annotated[
        str, typer.Option("--exclude-columns", help="Comma-separated columns never recorded")
    ] = "",
    schema: Schema = "public",
) -> None:
    """Record every INSERT, UPDATE and DELETE of TABLE as an event in the outbox;
    installing again replaces the trigger."""
    excluded = [c.strip() for c in exclude_columns.split(",") if c.strip()]
    keys = _with_connection(
        dsn, lambda conn: install_capture(conn, table, excluded, schema=schema)
    )
    console.print(f"capturing {table} (key {', '.join(keys)}) into {schema}.{TABLE}"
                  + (f", never recording {', '.join(excluded)}" if excluded else ""))


def _transport(
    url: str | None,
    token: str | None,
    broker: str | None = None,
    *,
    tenant: str | None = None,
    queue: str | None = None,
    subject: str | None = None,
) -> Transport:
    """Where the relay sends events: the service over HTTP, or a broker."""
    if broker:
        if not (tenant or queue or subject):
            raise fail("with --broker, name the tenant (--tenant) or the --queue/--subject")
        try:
            return broker_transport(broker, tenant=tenant or "", queue=queue, subject=subject)
        except ConfigurationError as exc:
            raise fail(str(exc)) from None
    if not url:
        raise fail("no service URL: pass --url or set TRAILSEAL_URL")
    if not token:
        raise fail("no API key: pass --token or set TRAILSEAL_TOKEN")
    return HttpTransport(url, token)


def relay_command(
    dsn: Dsn,
    url: Annotated[
        str | None, typer.Option("--url", envvar="TRAILSEAL_URL", help="The service's URL")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option("--token", envvar="TRAILSEAL_TOKEN", help="An API key with scope ingest"),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Rows per batch")] = 500,
    once: Annotated[bool, typer.Option("--once", help="Ship what is waiting, then exit")] = False,
    schema: Schema = "public",
    broker: Annotated[
        str | None,
        typer.Option("--broker", help="Publish to RabbitMQ (amqp://) or NATS (nats://) instead"),
    ] = None,
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="With --broker: the tenant's default queue")
    ] = None,
    queue: Annotated[str | None, typer.Option("--queue", help="With --broker: queue")] = None,
    subject: Annotated[
        str | None, typer.Option("--subject", help="With --broker: NATS subject")
    ] = None,
    keep_days: Annotated[int, typer.Option(
        "--keep-days", min=0,
        help="Keep delivered events this many days in trailseal_outbox_history for "
        "`trailseal selfaudit` (0: keep none)")] = KEEP_DAYS,
) -> None:
    """Forward the outbox to the service, or to a broker that `trailseal consume` reads.
    Several relays may run at once; SIGTERM or SIGINT stops one cleanly after its current
    batch."""
    transport = _transport(url, token, broker, tenant=tenant, queue=queue, subject=subject)
    relay = Relay(dsn, transport, batch_size=batch_size, schema=schema, keep_days=keep_days)
    try:
        # A wrong DSN or a missing outbox fails now, not in the retry loop.
        if not outbox_exists(relay.connect(), schema):
            raise fail(f"no outbox in schema {schema}: run `trailseal outbox install` first")
        stop = threading.Event()
        with stopped_by_signals(stop):
            if once:
                while not stop.is_set() and relay.run_once() == batch_size:
                    pass
            else:
                relay.run(stop)
    except (TransportError, psycopg.Error) as exc:
        raise fail(_one_line(exc)) from None
    finally:
        relay.close()
    stats = relay.stats
    console.print(f"relayed {stats.delivered} event(s)"
                  + (f"; {stats.dead} refused and kept as dead" if stats.dead else ""))
