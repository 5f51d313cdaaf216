"""``trailseal runbook``: a tenant's runbook and compliance mapping, from the live
database and settings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trailseal.cli.common import DataDir, console, fail, run_with_connection, settings
from trailseal.runbook import build_runbook


def register(app: typer.Typer) -> None:
    app.command("runbook")(runbook)


def runbook(
    tenant: Annotated[str, typer.Option(help="The tenant whose log it describes")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The Markdown file")] = Path(
        "runbook.md"),
    data_dir: DataDir = None,
) -> None:
    """Write the runbook of a tenant's log: event schema, retention and tiers, roles and
    grants, RLS policies and triggers as the catalog has them, signing keys and witnesses,
    the last verification, and the mapping to SOC 2 CC7.2, ISO 27001 A.8.15, HIPAA
    164.312(b) and PCI DSS v4 10.2-10.7 with the evidence for each."""
    values = settings(data_dir)
    text = run_with_connection(values, lambda conn: build_runbook(conn, tenant, values))
    try:
        output.write_text(text)
    except OSError as exc:
        raise fail(str(exc)) from None
    console.print(f"wrote {output}: the runbook of {tenant}", highlight=False)
