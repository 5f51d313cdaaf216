"""``trailseal archiver`` (seal each tenant's log into segments in the write-once
store), ``trailseal retention`` (policies, tier moves) and ``trailseal hold`` (legal
holds)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import psycopg
import typer
from psycopg import AsyncConnection
from rich.table import Table

from trailseal.archive.archiver import system_clock
from trailseal.archive.holds import Hold, add_hold, list_holds, parse_target, release_hold
from trailseal.archive.policy import HOT_DAYS, WARM_DAYS, Policy, set_policy
from trailseal.archive.policy import preset as make_preset
from trailseal.archive.retention import RetentionReport, run_retention
from trailseal.archive.worm import WormStore
from trailseal.cli.common import DataDir, console, fail, run_with_connection, runtime, settings
from trailseal.errors import InvalidInput, TrailsealError
from trailseal.runtime import archive_store, build_archiver, freeze_startup
from trailseal.settings import Settings
from trailseal.store import create_pool
from trailseal.store.migrate import check


def register(app: typer.Typer) -> None:
    app.command("archiver")(archiver)
    app.add_typer(retention_app, name="retention")
    app.add_typer(hold_app, name="hold")


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
    freeze_startup()
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


retention_app = typer.Typer(help="Retention policies and tier moves.", no_args_is_help=True)
hold_app = typer.Typer(help="Legal holds.", no_args_is_help=True)


def _store_and_run(data_dir: Path | None, work: Callable[[AsyncConnection, WormStore], Any]) -> Any:
    values = settings(data_dir)
    store = archive_store(values)
    return run_with_connection(values, lambda conn: work(conn, store))


@retention_app.command("set")
def retention_set(
    tenant: Annotated[str, typer.Option(help="Tenant")],
    preset: Annotated[str, typer.Option(help="soc2 (1 year), hipaa (6), finance (7) or custom")],
    retain_days: Annotated[int | None, typer.Option(help="With custom: days kept in all")]
    = None,
    hot_days: Annotated[int, typer.Option(help="Days kept in PostgreSQL")] = HOT_DAYS,
    warm_days: Annotated[int | None, typer.Option(
        help="Days in the store's standard class before the cold tier [default: two years, "
        "at most the retention]")] = None,
    data_dir: DataDir = None,
) -> None:
    """Set a tenant's retention policy (kept as history; the newest applies)."""
    try:
        if preset == "custom":
            if retain_days is None:
                raise fail("--preset custom needs --retain-days")
            policy = Policy("custom", retain_days, hot_days,
                            min(WARM_DAYS, retain_days) if warm_days is None else warm_days)
        else:
            policy = make_preset(preset, hot_days=hot_days, warm_days=warm_days)
    except InvalidInput as exc:
        raise fail(str(exc)) from None
    run_with_connection(settings(data_dir),
                        lambda conn: set_policy(conn, tenant, policy, system_clock()))
    console.print(f"{tenant}: {policy.preset}, {policy.retain_days} days retained, "
                  f"{policy.hot_days} hot, {policy.warm_days} warm")


@retention_app.command("run")
def retention_run(data_dir: DataDir = None) -> None:
    """Move data between tiers now: drop months of the log that the database agrees to
    drop, move old segments to the cold tier, delete segments whose retention has ended
    (never under a legal hold)."""
    preset_name = settings(data_dir).retention_preset
    report: RetentionReport = _store_and_run(
        data_dir, lambda conn, store: run_retention(conn, store, system_clock(),
                                                    default_preset=preset_name))
    for name in report.dropped:
        console.print(f"dropped {name}")
    for name, why in report.kept:
        console.print(f"kept {name}: {why}", style="yellow")
    console.print(f"{report.cold} segment(s) to the cold tier, {report.expired} deleted at "
                  f"the end of retention, {report.held} kept under a legal hold")
    for problem in report.problems:
        console.print(problem, style="red")


@hold_app.command("add")
def hold_add(
    tenant: Annotated[str, typer.Option(help="Tenant")],
    reason: Annotated[str, typer.Option(help="Why (recorded in the tenant's log)")],
    target: Annotated[str | None, typer.Option(
        help="Only this target, as type:id [default: the whole tenant]")] = None,
    data_dir: DataDir = None,
) -> None:
    """Place a legal hold: no deletion it covers happens until it is released."""
    try:
        covered = parse_target(target)
    except InvalidInput as exc:
        raise fail(str(exc)) from None
    hold: Hold = _store_and_run(
        data_dir, lambda conn, store: add_hold(conn, store, tenant, covered, reason,
                                               system_clock()))
    console.print(f"hold {hold.id} on {target or 'the whole tenant'} of {tenant}")


@hold_app.command("release")
def hold_release(
    hold_id: Annotated[str, typer.Argument(help="The hold's id")],
    tenant: Annotated[str, typer.Option(help="Tenant")],
    reason: Annotated[str, typer.Option(help="Why (recorded in the tenant's log)")],
    data_dir: DataDir = None,
) -> None:
    """Release a legal hold."""
    try:
        ident = uuid.UUID(hold_id)
    except ValueError:
        raise fail(f"{hold_id!r} is not a hold id") from None
    _store_and_run(data_dir, lambda conn, store: release_hold(conn, store, tenant, ident,
                                                              reason, system_clock()))
    console.print(f"released hold {ident} of {tenant}")


@hold_app.command("list")
def hold_list(
    tenant: Annotated[str, typer.Option(help="Tenant")],
    data_dir: DataDir = None,
) -> None:
    """A tenant's holds, released ones too."""
    holds: list[Hold] = run_with_connection(settings(data_dir),
                                            lambda conn: list_holds(conn, tenant))
    table = Table("id", "covers", "reason", "placed", "released")
    for h in holds:
        covers = "tenant" if h.target is None else f"{h.target[0]}:{h.target[1]}"
        table.add_row(str(h.id), covers, h.reason, h.created_at.isoformat(),
                      h.released_at.isoformat() if h.released_at else "")
    console.print(table)
