"""Legal holds: a hold stops every deletion it covers, in PostgreSQL and in the store,
until released; holds and releases are audit events in the tenant's own log."""

from __future__ import annotations

from datetime import timedelta

import psycopg
from psycopg import AsyncConnection
from typer.testing import CliRunner

from tests.archive.support import archiver, fill, month_end, retention, seal, sequence, verify
from tests.support import run
from trailseal.archive.holds import add_hold, list_holds, release_hold
from trailseal.cli import app

FIRST = "acme/segments/00000000000000000000-00000000000000000009.parquet"
SECOND = "acme/segments/00000000000000000010-00000000000000000019.parquet"


async def _hold(url, store, target, clock):
    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        return await add_hold(conn, store, "acme", target, "litigation 2026-17", clock())


async def _release(url, store, hold_id, clock):
    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        return await release_hold(conn, store, "acme", hold_id, "case closed", clock())


def _actions(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        conn.execute("SELECT set_config('trailseal.tenant', 'acme', false)")
        return [r[0] for r in conn.execute(
            "SELECT action FROM trailseal.events WHERE tenant = 'acme' AND action LIKE"
            " 'audit.hold.%' ORDER BY seq")]


def _sealed_log(url, signer, store, clock):
    run(fill(url, signer, "acme", 10, clock(), target={"type": "document", "id": "d_1"}))
    run(fill(url, signer, "acme", 10, clock(), target={"type": "document", "id": "d_2"}))
    run(seal(url, archiver(store, signer, clock, max_events=10), "acme"))


def test_a_tenant_hold_keeps_the_partition_and_the_segments(own_database, signer, store, clock):
    _sealed_log(own_database, signer, store, clock)
    start = clock.now
    hold = run(_hold(own_database, store, None, clock))
    assert store.legal_hold(FIRST) and store.legal_hold(SECOND)
    clock.now = month_end(start) + timedelta(days=91)
    report = run(retention(own_database, store, clock))
    assert any("legal hold" in why for _, why in report.kept)
    clock.now = start + timedelta(days=366)
    assert run(retention(own_database, store, clock)).expired == 0
    assert store.get(FIRST)
    # Released: the next run drops the month and deletes what has reached its end.
    run(_release(own_database, store, hold.id, clock))
    assert not store.legal_hold(FIRST)
    report = run(retention(own_database, store, clock))
    assert report.expired == 2 and report.dropped
    assert run(verify(own_database, signer, "acme", archive=store)).ok


def test_a_target_hold_keeps_only_the_segments_holding_that_target(own_database, signer, store,
                                                                    clock):
    _sealed_log(own_database, signer, store, clock)
    start = clock.now
    run(_hold(own_database, store, ("document", "d_2"), clock))
    assert not store.legal_hold(FIRST) and store.legal_hold(SECOND)
    clock.now = month_end(start) + timedelta(days=91)
    report = run(retention(own_database, store, clock))
    assert any("legal hold" in why for _, why in report.kept)  # d_2's events are there
    clock.now = start + timedelta(days=366)
    report = run(retention(own_database, store, clock))
    assert (report.expired, report.held) == (1, 1)
    assert store.get(SECOND)


def test_holds_and_releases_are_audit_events(own_database, signer, store, clock):
    _sealed_log(own_database, signer, store, clock)
    hold = run(_hold(own_database, store, ("document", "d_1"), clock))
    run(_release(own_database, store, hold.id, clock))
    run(sequence(own_database, signer, "acme"))
    assert _actions(own_database) == ["audit.hold.added", "audit.hold.released"]

    async def holds():
        async with await AsyncConnection.connect(own_database, autocommit=True) as conn:
            return await list_holds(conn, "acme")

    [listed] = run(holds())
    assert listed.target == ("document", "d_1") and listed.released_at is not None


def test_hold_commands(own_database, signer, tmp_path, clock):
    run(fill(own_database, signer, "acme", 1, clock()))
    env = {"TRAILSEAL_DATABASE_URL": own_database, "TRAILSEAL_DATA_DIR": str(tmp_path),
           "TRAILSEAL_ARCHIVE_URL": f"file://{tmp_path / 'worm'}"}
    runner = CliRunner()
    added = runner.invoke(app, ["hold", "add", "--tenant", "acme", "--target", "user:u_1",
                                "--reason", "subpoena"], env=env)
    assert added.exit_code == 0, added.output
    hold_id = added.output.split()[1]
    listed = runner.invoke(app, ["hold", "list", "--tenant", "acme"], env=env)
    assert "user:u_1" in listed.output
    bad = runner.invoke(app, ["hold", "add", "--tenant", "acme", "--target", "nocolon",
                              "--reason", "x"], env=env)
    assert bad.exit_code == 1
    released = runner.invoke(app, ["hold", "release", hold_id, "--tenant", "acme",
                                   "--reason", "withdrawn"], env=env)
    assert released.exit_code == 0, released.output
    again = runner.invoke(app, ["hold", "release", hold_id, "--tenant", "acme",
                                "--reason", "twice"], env=env)
    assert again.exit_code == 1
