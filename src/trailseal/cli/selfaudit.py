"""``trailseal selfaudit``: sample the producer's recent changes and check that the log
holds each one, accurately and provably. Exit 0 all found, 1 a miss, 2 could not run."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import psycopg
import typer
from psycopg import AsyncConnection
from rich.table import Table

from trailseal.cli.common import DataDir, console, errors, settings
from trailseal.errors import TrailsealError
from trailseal.integrity.notes import NoteError, Signer, Verifier
from trailseal.runtime import resolve
from trailseal.selfaudit import Change, Finding, Source, check, sample, signed_report
from trailseal.settings import Settings

EXIT_OK, EXIT_MISS, EXIT_ERROR = 0, 1, 2


def register(app: typer.Typer) -> None:
    app.command("selfaudit")(selfaudit)


def _signer(values: Settings) -> Signer:
    """The log key, which must already exist: a self-audit never makes a new one."""
    path = values.signing_key_file or values.data_dir / "log.key"
    if not path.exists():
        raise TrailsealError(f"no signing key at {path}: set TRAILSEAL_SIGNING_KEY_FILE")
    return Signer.from_key(path.read_text().strip())


def selfaudit(
    dsn: Annotated[str, typer.Option("--dsn", help="The producer's database")],
    tenant: Annotated[str, typer.Option(help="The tenant the producer's events go to")],
    source: Annotated[str, typer.Option(
        help="outbox (delivered events, from trailseal_outbox_history) or table:<name> "
        "(rows with a recent updated_at)")] = "outbox",
    size: Annotated[int, typer.Option("--sample", min=1, help="Changes to draw")] = 20,
    target_type: Annotated[str | None, typer.Option(
        help="With table:<name>: the rows' target type [default: the name]")] = None,
    id_column: Annotated[str, typer.Option(
        help="With table:<name>: the column that is the target id")] = "id",
    schema: Annotated[str, typer.Option(help="Schema of the outbox tables")] = "public",
    window_hours: Annotated[float, typer.Option(
        min=0, help="Draw from changes of this many recent hours")] = 24.0,
    min_age: Annotated[float, typer.Option(
        min=0, help="Skip changes younger than this many seconds (still on their way)")
    ] = 60.0,
    skew: Annotated[float, typer.Option(
        min=0, help="With table:<name>: seconds an event may follow the row's updated_at")
    ] = 2.0,
    key: Annotated[list[str] | None, typer.Option(
        "--key", help="Verifier key to trust (repeatable) [default: the log key's]")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="The signed report")] = Path(
        "selfaudit-report.txt"),
    database_url: Annotated[str | None, typer.Option(
        help="trailseal's database [default: TRAILSEAL_DATABASE_URL]")] = None,
    data_dir: DataDir = None,
) -> None:
    """Draw random recent changes from the producer's database and check that each has
    its event in the log (action, target, before/after) with a valid inclusion proof
    under a signed checkpoint; print a table and write a report signed with the log key.
    Exit 0 all found, 1 a miss, 2 could not run."""
    values = settings(data_dir)
    if database_url:
        values = values.model_copy(update={"database_url": database_url})
    try:
        where = Source.parse(source, target_type=target_type, id_column=id_column,
                             schema=schema)
        signer = _signer(values)
        verifiers = [Verifier.from_key(k).verifier_key() for k in key] if key else [
            signer.verifier_key()]
        with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
            changes = sample(conn, where, size, window_hours=window_hours,
                             min_age_seconds=min_age)
        url = resolve(values).database_url
        findings = asyncio.run(_check(url, tenant, changes, verifiers, skew))
        output.write_text(signed_report(signer, tenant, where, findings))
    except (TrailsealError, NoteError, psycopg.Error, OSError) as exc:
        errors.print(f"[red]could not self-audit:[/red] {exc}", highlight=False)
        raise typer.Exit(EXIT_ERROR) from None
    _print(findings)
    missed = sum(1 for f in findings if not f.ok)
    console.print(f"{len(findings)} change(s) sampled from {where.describe()}, {missed} "
                  f"missed; report signed and written to {output}", highlight=False)
    if not findings:
        console.print("nothing to sample in the window", style="yellow")
    if missed:
        raise typer.Exit(EXIT_MISS)


async def _check(
    url: str, tenant: str, changes: list[Change], verifiers: list[str], skew: float
) -> list[Finding]:
    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        return await check(conn, tenant, changes, verifiers, skew_seconds=skew)


def _print(findings: list[Finding]) -> None:
    table = Table("change", "event id", "seq", "checks", "result")
    for f in findings:
        result = "[green]ok[/green]" if f.ok else f"[red]miss[/red]: {f.problem}"
        table.add_row(f.change.label, f.event_id or "-", "-" if f.seq is None else str(f.seq),
                      ", ".join(f.checks), result)
    console.print(table)
