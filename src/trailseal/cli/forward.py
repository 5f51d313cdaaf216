"""``trailseal forward``: ship the SIEM feed to syslog or an HTTPS collector."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated, Literal

import typer

from trailseal.cli.common import errors, fail, stopped_by_signals
from trailseal.errors import ConfigurationError
from trailseal.forward import (
    FatalForwardError,
    Feed,
    Forwarder,
    ForwardError,
    State,
    target_for,
)


def register(app: typer.Typer) -> None:
    app.command("forward")(forward)


def _headers(values: list[str] | None) -> dict[str, str]:
    found: dict[str, str] = {}
    for value in values or ():
        name, colon, text = value.partition(":")
        if not colon or not name.strip():
            raise fail(f"--header takes 'Name: value', not {value!r}")
        found[name.strip()] = text.strip()
    return found


def forward(
    to: Annotated[str, typer.Option(
        "--to", help="syslog://host[:514] (TCP), syslog+udp://host[:514], or https://...")],
    state: Annotated[Path, typer.Option(
        "--state", help="File holding the position; written after each delivered batch")],
    url: Annotated[str | None, typer.Option(
        "--url", envvar="TRAILSEAL_URL", help="The service's URL")] = None,
    token: Annotated[str | None, typer.Option(
        "--token", envvar="TRAILSEAL_TOKEN", help="An API key with scope read")] = None,
    format: Annotated[Literal["ocsf", "syslog"] | None, typer.Option(
        "--format", help="ocsf or syslog [default: syslog for syslog targets, else ocsf]",
    )] = None,
    batch_size: Annotated[int, typer.Option(
        "--batch-size", min=1, max=1000, help="Events per batch")] = 500,
    interval: Annotated[float, typer.Option(
        "--interval", min=0.1, help="Seconds between polls once caught up")] = 5.0,
    once: Annotated[bool, typer.Option(
        "--once", help="Deliver what is there, then exit")] = False,
    allow_private: Annotated[bool, typer.Option(
        "--allow-private",
        help="Allow targets on loopback, private and other non-public addresses")] = False,
    header: Annotated[list[str] | None, typer.Option(
        "--header", help="Extra HTTP header for an https target, 'Name: value' "
        "(repeatable)")] = None,
) -> None:
    """Tail the SIEM feed (GET /v1/stream) and deliver it to a collector, in seq order, at
    least once: the position in --state moves only after the target took a batch, so a
    crash re-sends at most one batch and never skips one. SIGTERM or SIGINT stops it."""
    if not url:
        raise fail("no service URL: pass --url or set TRAILSEAL_URL")
    if not token:
        raise fail("no API key: pass --token or set TRAILSEAL_TOKEN")
    scheme = to.split(":", 1)[0].lower()
    fmt = format or ("syslog" if scheme.startswith("syslog") else "ocsf")
    try:
        target = target_for(to, fmt, allow_private=allow_private, headers=_headers(header))
        target.check()
        position = State.load(state, url.rstrip("/"))
    except (ConfigurationError, FatalForwardError, ForwardError) as exc:
        raise fail(str(exc)) from None
    feed = Feed(url, token, fmt, batch_size)
    forwarder = Forwarder(feed, target, position,
                          report=lambda m: errors.print(f"[yellow]{m}[/yellow]", highlight=False))
    stop = threading.Event()
    try:
        with stopped_by_signals(stop):
            if once:
                forwarder.drain(stop)
            else:
                forwarder.run(stop, interval)
    except (ForwardError, FatalForwardError, OSError) as exc:
        raise fail(f"{exc} (delivered {forwarder.delivered} event(s) before)") from None
    finally:
        feed.close()
        target.close()
    errors.print(f"forwarded {forwarder.delivered} event(s) to {to}", highlight=False)
