"""``trailseal migrate``, ``trailseal tenant ...`` and ``trailseal key ...``."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Annotated

import psycopg
import typer
from rich.table import Column, Table

from trailseal.cli.common import DataDir, console, fail, run_with_connection, settings
from trailseal.errors import TrailsealError
from trailseal.integrity.notes import NoteError
from trailseal.model import event_json_schema
from trailseal.runtime import key_name, write_signing_key
from trailseal.store import embedded, migrate
from trailseal.tenants import (
    create_key,
    create_tenant,
    list_keys,
    list_tenants,
    parse_scopes,
    revoke_key,
)

tenant_app = typer.Typer(help="Create and list tenants.", no_args_is_help=True)
key_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("migrate")(migrate_command)
    app.command("schema")(schema_command)
    app.command("keygen")(keygen_command)
    app.add_typer(tenant_app, name="tenant")
    app.add_typer(key_app, name="key")


def migrate_command(data_dir: DataDir = None) -> None:
    """Bring the database schema to this version (forward-only)."""
    values = settings(data_dir)
    try:
        url = values.database_url or embedded.start(values.data_dir)
        done = migrate.migrate(url)
    except (TrailsealError, psycopg.Error, OSError) as exc:
        raise fail(str(exc)) from None
    for step in done:
        console.print(f"applied {step.version:04d}_{step.name}")
    console.print("schema is up to date" if not done else f"{len(done)} migration(s) applied")


def keygen_command(
    output: Annotated[Path, typer.Option("--output", "-o", help="File for the private key")],
    name: Annotated[
        str | None,
        typer.Option(help="Key name [default: <TRAILSEAL_LOG_ORIGIN or host>/trailseal]"),
    ] = None,
) -> None:
    """Create a checkpoint signing key (C2SP PRIVATE+KEY+... in OUTPUT, mode 0600) and
    print its verifier key. Point TRAILSEAL_SIGNING_KEY_FILE at the file."""
    try:
        verifier = write_signing_key(output, name or key_name(settings()))
    except FileExistsError:
        raise fail(f"{output} exists; a signing key is never overwritten") from None
    except (NoteError, OSError) as exc:
        raise fail(str(exc)) from None
    console.print(f"signing key written to {output}")
    print(verifier)


def schema_command() -> None:
    """Print the JSON Schema of events (schema version 1)."""
    print(json.dumps(event_json_schema(), indent=2, ensure_ascii=False))


@tenant_app.command("create")
def tenant_create(name: str, data_dir: DataDir = None) -> None:
    """Create tenant NAME."""
    created = run_with_connection(settings(data_dir), lambda conn: create_tenant(conn, name))
    console.print(f"tenant {name} " + ("created" if created else "already exists"))


@tenant_app.command("list")
def tenant_list(data_dir: DataDir = None) -> None:
    """List tenants."""
    for name in run_with_connection(settings(data_dir), list_tenants):
        console.print(name)


@key_app.command("create")
def key_create(
    tenant: Annotated[str, typer.Option(help="Tenant the key acts for")],
    scopes: Annotated[str, typer.Option(help="Comma-separated: ingest,read,export,admin")],
    name: Annotated[str, typer.Option(help="A label for the key")] = "default",
    data_dir: DataDir = None,
) -> None:
    """Create an API key; its token is printed once and stored only as a hash."""
    try:
        wanted = parse_scopes(scopes)
    except TrailsealError as exc:
        raise fail(str(exc)) from None
    key = run_with_connection(
        settings(data_dir), lambda conn: create_key(conn, tenant, wanted, name)
    )
    console.print(f"key {key.key_id} for tenant {key.tenant}, scopes {','.join(key.scopes)}")
    console.print("token (shown once; store it now):", style="bold")
    print(key.token)


@key_app.command("list")
def key_list(
    tenant: Annotated[str, typer.Option(help="Tenant whose keys to list")],
    data_dir: DataDir = None,
) -> None:
    """List a tenant's keys (never their tokens)."""
    keys = run_with_connection(settings(data_dir), lambda conn: list_keys(conn, tenant))
    table = Table(Column("id", no_wrap=True), "name", "token", "scopes", "created", "revoked")
    for k in keys:
        table.add_row(str(k.key_id), k.name, k.token_hint, ",".join(k.scopes),
                      f"{k.created_at:%Y-%m-%d %H:%M}",
                      f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "")
    console.print(table)


@key_app.command("revoke")
def key_revoke(
    key_id: str,
    tenant: Annotated[str, typer.Option(help="Tenant the key belongs to")],
    data_dir: DataDir = None,
) -> None:
    """Revoke key KEY_ID; it stops working at once."""
    try:
        parsed = uuid.UUID(key_id)
    except ValueError:
        raise fail(f"{key_id!r} is not a key id (a UUID)") from None
    run_with_connection(settings(data_dir), lambda conn: revoke_key(conn, tenant, parsed))
    console.print(f"key {parsed} revoked")
