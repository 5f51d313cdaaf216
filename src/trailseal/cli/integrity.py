"""``trailseal verify``: check every tenant's log (or one) against its records and the
witnessed checkpoints. Exit 0 clean, 1 tampered, 2 could not run. ``trailseal export``
(evidence bundles, and CSV/NDJSON/JSON exports) and ``trailseal verify-bundle``."""

from __future__ import annotations

import asyncio
import os
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

import psycopg
import typer
from psycopg import AsyncConnection
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from trailseal.archive.worm import WormStore
from trailseal.bundle import check_bundle, export_bundle
from trailseal.cli.common import DataDir, console, errors, fail, run_with_connection, settings
from trailseal.errors import InvalidInput, TrailsealError
from trailseal.integrity.checkpoint import log_origin
from trailseal.integrity.notes import NoteError, Verifier
from trailseal.reading.export import Format, count_events, export_chunks
from trailseal.reading.query import EventFilter
from trailseal.reading.warm import Warm
from trailseal.runtime import (
    archive_store,
    build_warm,
    load_signer,
    origin_host,
    resolve,
    witness,
)
from trailseal.settings import Settings
from trailseal.status import record_run
from trailseal.store import Role, scoped
from trailseal.tenants import list_tenants
from trailseal.verify import Report, verify_tenant

EXIT_CLEAN, EXIT_TAMPERED, EXIT_ERROR = 0, 1, 2

Keys = Annotated[
    list[str] | None,
    typer.Option("--key", help="Verifier key to trust (repeatable) [default: the key of "
                 "TRAILSEAL_SIGNING_KEY_FILE or <data dir>/log.key]"),
]


def register(app: typer.Typer) -> None:
    app.command("verify")(verify)
    app.command("export")(export)
    app.command("verify-bundle")(verify_bundle)


def _time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise fail(f"--{name} must be an RFC 3339 time, e.g. 2026-03-12T00:00:00Z") from None
    if parsed.tzinfo is None:
        raise fail(f"--{name} needs a time zone offset, e.g. Z")
    return parsed


def _filter(
    since: datetime | None,
    until: datetime | None,
    action: list[str] | None,
    actor_id: str | None,
    target_type: str | None,
    target_id: str | None,
    outcome: str | None,
) -> EventFilter:
    try:
        return EventFilter(actor_id=actor_id, target_type=target_type, target_id=target_id,
                           action=tuple(action or ()), outcome=outcome, since=since,
                           until=until)
    except InvalidInput as exc:
        raise fail(str(exc)) from None


def export(
    tenant: Annotated[str, typer.Option(help="Tenant to export")],
    bundle: Annotated[
        Path | None, typer.Option(help="Write an offline evidence bundle (zip) here")
    ] = None,
    fmt: Annotated[
        Format | None,
        typer.Option("--format", help="Export the events as csv, ndjson or json (with -o)"),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="With --format: the file to write")
    ] = None,
    since: Annotated[str | None, typer.Option(
        help="RFC 3339; with --bundle: received at or after; with --format: occurred at or "
        "after")] = None,
    until: Annotated[str | None, typer.Option(
        help="RFC 3339; with --bundle: received before; with --format: occurred before")
    ] = None,
    action: Annotated[list[str] | None, typer.Option(
        help="With --format: this action, or a prefix such as user.* (repeatable)")] = None,
    actor_id: Annotated[str | None, typer.Option(help="With --format: actor.id")] = None,
    target_type: Annotated[str | None, typer.Option(help="With --format: target.type")] = None,
    target_id: Annotated[str | None, typer.Option(help="With --format: target.id")] = None,
    outcome: Annotated[
        Literal["success", "failure"] | None, typer.Option(help="With --format: outcome")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Export an offline evidence bundle (--bundle: the events' canonical bytes, the proof
    that ties them to the signed checkpoint, the checkpoint and the verifier key), or the
    events as CSV, NDJSON or JSON (--format with -o: the same bytes as GET /v1/export,
    oldest first, with a progress bar)."""
    start, stop = _time(since, "since"), _time(until, "until")
    if (bundle is None) == (fmt is None):
        raise fail("give exactly one of --bundle FILE or --format csv|ndjson|json with -o FILE")
    if bundle is not None:
        if output is not None:
            raise fail("-o/--output goes with --format; a bundle is written to --bundle")
        if action or actor_id or target_type or target_id or outcome:
            raise fail("--action, --actor-id, --target-type, --target-id and --outcome go "
                       "with --format; a bundle takes --since and --until")
        written = bundle
        manifest = run_with_connection(
            settings(data_dir),
            lambda conn: export_bundle(conn, tenant, written, since=start, until=stop),
        )
        console.print(
            f"wrote {bundle}: seq {manifest['first']} to {manifest['end'] - 1} of {tenant}, "
            f"checkpoint of size {manifest['size']}"
        )
        return
    if fmt is None or output is None:
        raise fail("--format needs -o/--output FILE")
    flt = _filter(start, stop, action, actor_id, target_type, target_id, outcome)
    out, kind = output, fmt
    values = settings(data_dir)
    warm = build_warm(values)
    rows = run_with_connection(
        values, lambda conn: _export_file(conn, tenant, flt, kind, out, warm)
    )
    console.print(f"wrote {output}: {rows} event(s) of {tenant} as {fmt}")


async def _export_file(
    conn: AsyncConnection, tenant: str, flt: EventFilter, fmt: Format, out: Path,
    warm: Warm | None = None,
) -> int:
    """Write the export to ``out`` (aside, then renamed into place) with a progress bar;
    returns the number of events."""
    total = await count_events(conn, tenant, flt)
    rows = 0
    partial = out.with_name(out.name + ".partial")
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=errors, transient=True) as bar:
            task = bar.add_task(f"exporting {tenant}", total=total)

            def advance(count: int) -> None:
                nonlocal rows
                rows = count
                if count % 1000 == 0:
                    bar.update(task, completed=count)

            with open(partial, "wb") as handle:
                async for chunk in export_chunks(conn, tenant, flt, fmt, on_row=advance,
                                                 warm=warm):
                    handle.write(chunk)
            bar.update(task, completed=rows)
        os.replace(partial, out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return rows


def verify_bundle(
    path: Annotated[Path, typer.Argument(help="The bundle (zip)")],
    key: Annotated[list[str], typer.Option("--key", help="Verifier key to trust (repeatable)")],
) -> None:
    """Check a bundle offline (no database, no network) against a verifier key you trust.
    Exit 0 verified, 1 altered or incomplete, 2 could not run."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        errors.print(f"[red]could not read the bundle:[/red] {exc}", highlight=False)
        raise typer.Exit(EXIT_ERROR) from None
    result = check_bundle(data, key)
    if result.ok:
        console.print(f"[green]verified[/green]: {result.events} events of {result.tenant}, "
                      f"seq {result.first} to {result.end - 1}, against the signed checkpoint "
                      f"of size {result.size}")
        return
    for problem in result.problems:
        console.print(f"[red]{problem}[/red]", highlight=False)
    raise typer.Exit(EXIT_TAMPERED)


def _verifiers(values: Settings, keys: list[str] | None) -> list[Verifier]:
    if keys:
        return [Verifier.from_key(k) for k in keys]
    path = values.signing_key_file or values.data_dir / "log.key"
    if not path.exists():
        raise TrailsealError(f"no verifier key: pass --key, or keep the signing key at {path}")
    return [Verifier.from_key(load_signer(values).verifier_key())]


def verify(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant [default: all]")] = None,
    from_seq: Annotated[int, typer.Option("--from", min=0, help="Start at this seq")] = 0,
    key: Keys = None,
    archive: Annotated[bool, typer.Option(
        "--archive", help="Also check every segment file in the write-once store, and "
        "recompute events that left PostgreSQL from them")] = False,
    data_dir: DataDir = None,
) -> None:
    """Recompute canonical bytes, leaf hashes, the chain, the tiles and every checkpoint
    signature; compare with the witnessed checkpoints; name the first bad seq and kind."""
    values = settings(data_dir)
    try:
        verifiers = _verifiers(values, key)
        target = resolve(values)
        store = archive_store(values) if archive else None
        reports = asyncio.run(_run(target.database_url, values, verifiers, tenant, from_seq,
                                   store))
    except (TrailsealError, NoteError, psycopg.Error, OSError) as exc:
        errors.print(f"[red]could not verify:[/red] {exc}", highlight=False)
        raise typer.Exit(EXIT_ERROR) from None
    table = Table("tenant", "events", "checkpoints", "witnessed", "result")
    for r in reports:
        result = "[green]ok[/green]" if r.ok else (
            f"[red]{r.finding.kind} at seq {r.finding.seq}[/red]: {r.finding.detail}"
            if r.finding else ""
        )
        table.add_row(r.tenant, str(r.events), str(r.checkpoints), str(r.witnessed), result)
    console.print(table)
    for r in reports:
        for note in r.notes:
            console.print(f"{r.tenant}: {note}", style="yellow")
    if not all(r.ok for r in reports):
        raise typer.Exit(EXIT_TAMPERED)


async def _run(
    url: str, values: Settings, verifiers: list[Verifier], only: str | None, from_seq: int,
    store: WormStore | None = None,
) -> list[Report]:
    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        tenants = [only] if only is not None else await list_tenants(conn)
        folder = witness(values).folder
        reports = []
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console, transient=True) as bar:
            for tenant in tenants:
                size = await _size(conn, tenant)
                task = bar.add_task(f"verifying {tenant}", total=size)
                reports.append(await verify_tenant(
                    conn, tenant, verifiers,
                    origin=log_origin(origin_host(values), tenant), witness=folder,
                    from_seq=from_seq, database_url=url, archive=store,
                    progress=lambda n, task=task: bar.update(task, completed=n),  # type: ignore[misc]
                ))
                await _record(conn, reports[-1], from_seq)
        return reports


async def _record(conn: AsyncConnection, report: Report, from_seq: int) -> None:
    """Keep the outcome where the service shows it (the console's log status); a
    database that cannot take it does not change the outcome, only a warning says so."""
    try:
        await record_run(conn, report, from_seq=from_seq)
    except psycopg.Error as exc:
        errors.print(f"[yellow]{report.tenant}: the result was not recorded:[/yellow] {exc}",
                     highlight=False)


async def _size(conn: AsyncConnection, tenant: str) -> int:
    async with scoped(conn, Role.OWNER, tenant):
        cur = await conn.execute(
            "SELECT size FROM trailseal.log_heads WHERE tenant = %s", (tenant,))
        row = await cur.fetchone()
    return int(row[0]) if row else 0
