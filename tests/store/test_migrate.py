"""Migrations: versioned, forward-only, checked against what was applied; and the schema
they build has the partitioning and indexes the log's questions need."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from importlib import resources
from typing import Any

import psycopg
import pytest

from tests.store.conftest import TwoLogs
from tests.store.scoping import rows
from tests.support import fresh_database
from trailseal.errors import MigrationError
from trailseal.store.migrate import available, check, migrate

MIGRATIONS = resources.files("trailseal.store").joinpath("migrations")


@pytest.fixture
def empty_url(database_url: str) -> Iterator[str]:
    """A database of its own on the same server, not migrated, dropped afterwards."""
    with fresh_database(database_url, "trailseal_scratch") as url:
        yield url


@pytest.fixture
def scratch_url(empty_url: str) -> str:
    """A migrated database of its own: for tests that must break the record of what was
    applied."""
    assert [m.version for m in migrate(empty_url)] == [m.version for m in available()]
    return empty_url


def _applied(url: str) -> list[Any]:
    with psycopg.connect(url) as conn:
        return rows(conn, "SELECT * FROM trailseal.schema_migrations ORDER BY version")


# -- The record of what was applied -----------------------------------------------------------


def test_every_migration_file_is_named_nnnn_name_sql() -> None:
    # available() skips any other name, so a misnamed file would silently never run.
    names = [entry.name for entry in MIGRATIONS.iterdir() if entry.name != "__pycache__"]
    assert names
    for name in names:
        assert re.fullmatch(r"\d{4}_[a-z0-9_]+\.sql", name), name
    assert len(names) == len(available())


def test_the_foundation_is_recorded_with_the_checksum_of_its_text(database_url: str) -> None:
    text = MIGRATIONS.joinpath("0001_foundation.sql").read_bytes()
    applied = [row[:3] for row in _applied(database_url)]
    assert applied[0] == (1, "foundation", hashlib.sha256(text).hexdigest())
    assert applied == [(m.version, m.name, m.checksum) for m in available()]


def _census(url: str, logs: TwoLogs) -> list[Any]:
    """What a migration must not disturb: both tenants' logs, heads, ids and keys, and
    the record of applied migrations."""
    tenants = [logs.a.name, logs.b.name]
    with psycopg.connect(url) as conn:
        return [
            rows(
                conn,
                "SELECT tenant, seq, id, leaf_hash, chain_hash FROM trailseal.events"
                " WHERE tenant = ANY(%s) ORDER BY tenant, seq",
                (tenants,),
            ),
            rows(conn, "SELECT * FROM trailseal.log_heads WHERE tenant = ANY(%s)", (tenants,)),
            rows(
                conn, "SELECT count(*) FROM trailseal.event_ids WHERE tenant = ANY(%s)", (tenants,)
            ),
            rows(
                conn, "SELECT count(*) FROM trailseal.api_keys WHERE tenant = ANY(%s)", (tenants,)
            ),
            rows(conn, "SELECT * FROM trailseal.schema_migrations ORDER BY version"),
        ]


def test_migrating_a_populated_database_again_changes_nothing(
    database_url: str, logs: TwoLogs
) -> None:
    before = _census(database_url, logs)
    assert len(before[0]) == len(logs.a_ids) + len(logs.b_ids)
    assert migrate(database_url) == []
    check(database_url)
    assert _census(database_url, logs) == before


def test_an_applied_migration_that_was_altered_is_refused(scratch_url: str) -> None:
    with psycopg.connect(scratch_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE trailseal.schema_migrations SET checksum = %s WHERE version = 1",
            ("0" * 64,),
        )
    before = _applied(scratch_url)
    with pytest.raises(MigrationError, match="0001_foundation was changed after it was applied"):
        migrate(scratch_url)
    with pytest.raises(MigrationError, match="changed after it was applied"):
        check(scratch_url)
    assert _applied(scratch_url) == before


def test_a_database_newer_than_the_code_is_refused(scratch_url: str) -> None:
    newer = len(available()) + 1
    with psycopg.connect(scratch_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO trailseal.schema_migrations (version, name, checksum)"
            " VALUES (%s, 'from_the_future', %s)",
            (newer, "0" * 64),
        )
    with pytest.raises(MigrationError, match=rf"migrations \[{newer}\] that this version"):
        migrate(scratch_url)


def test_a_fresh_database_migrates_then_stands_still(scratch_url: str) -> None:
    # The fixture applied everything; the roles already existed on the server, which the
    # migration must take in its stride, and a second run has nothing to do.
    assert [row[0] for row in _applied(scratch_url)] == [m.version for m in available()]
    assert migrate(scratch_url) == []
    check(scratch_url)


# The roles are the server's, shared by every database on it, so the migration may find
# them already there. Each change below is made and undone inside one transaction, which
# no other session ever sees.
_UNSAFE_ROLES = {
    "reader-bypasses-rls": "ALTER ROLE trailseal_reader BYPASSRLS",
    "owner-logs-in": "ALTER ROLE trailseal_owner LOGIN",
    "sequencer-becomes-owner": "GRANT trailseal_owner TO trailseal_sequencer",
}


@pytest.mark.parametrize("change", _UNSAFE_ROLES.values(), ids=_UNSAFE_ROLES.keys())
def test_existing_roles_that_would_void_the_rules_are_refused(empty_url: str, change: str) -> None:
    foundation = available()[0]
    with (
        psycopg.connect(empty_url) as conn,
        pytest.raises(psycopg.errors.RaiseException, match=r"the existing role \w+ is unsafe"),
        conn.transaction(force_rollback=True),
    ):
        conn.execute(change)
        conn.execute(foundation.sql.encode())


def test_existing_safe_roles_are_taken_as_they_are(empty_url: str) -> None:
    # The counterpart of the refusals above: the same transaction, minus the change.
    with psycopg.connect(empty_url) as conn, conn.transaction(force_rollback=True):
        conn.execute(available()[0].sql.encode())


# -- What the migration built --------------------------------------------------------------------


def test_events_are_partitioned_by_range_of_received_at(su: psycopg.Connection) -> None:
    assert rows(
        su,
        "SELECT p.partstrat, pg_get_partkeydef(p.partrelid) FROM pg_partitioned_table p"
        " WHERE p.partrelid = 'trailseal.events'::regclass",
    ) == [("r", "RANGE (received_at)")]
    # A month partition stands ready for now and for next month.
    covering = rows(
        su,
        "SELECT count(DISTINCT c.relname) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid,"
        " LATERAL (VALUES (now()), (now() + interval '1 month')) AS t(at)"
        " WHERE i.inhparent = 'trailseal.events'::regclass"
        " AND c.relname = 'events_' || to_char(t.at AT TIME ZONE 'UTC', 'YYYY_MM')",
    )
    assert covering == [(2,)]


def _indexes(conn: psycopg.Connection, table: str) -> dict[str, tuple[str, list[str], bool]]:
    """Index name -> (access method, key columns in order, valid) for ``table``."""
    found = rows(
        conn,
        "SELECT i.relname, am.amname, x.indisvalid,"
        " array_agg(a.attname ORDER BY k.ord) FILTER (WHERE k.ord <= x.indnkeyatts)"
        " FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
        " JOIN pg_am am ON am.oid = i.relam,"
        " unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)"
        " JOIN pg_attribute a ON a.attnum = k.attnum"
        " WHERE x.indrelid = %s::regclass AND a.attrelid = x.indrelid"
        " GROUP BY i.relname, am.amname, x.indisvalid",
        (table,),
    )
    return {name: (method, columns, valid) for name, method, valid, columns in found}


@pytest.mark.parametrize(
    "leading",
    [
        ["tenant", "target_type", "target_id", "occurred_at"],
        ["tenant", "actor_id", "occurred_at"],
        ["tenant", "action", "occurred_at"],
        ["tenant", "seq"],
    ],
    ids=lambda columns: ",".join(columns[1:]),
)
def test_an_index_serves_each_common_question(su: psycopg.Connection, leading: list[str]) -> None:
    indexes = _indexes(su, "trailseal.events")
    serving = [
        name
        for name, (method, columns, valid) in indexes.items()
        if method == "btree" and valid and columns[: len(leading)] == leading
    ]
    assert serving, indexes


def test_time_has_a_brin_index(su: psycopg.Connection) -> None:
    indexes = _indexes(su, "trailseal.events")
    assert ("brin", ["received_at"], True) in indexes.values(), indexes


def test_every_partition_has_every_index_of_events(su: psycopg.Connection) -> None:
    parent = {(m, tuple(c)) for m, c, _ in _indexes(su, "trailseal.events").values()}
    partitions = rows(
        su,
        "SELECT inhrelid::regclass::text FROM pg_inherits"
        " WHERE inhparent = 'trailseal.events'::regclass",
    )
    assert partitions
    for (partition,) in partitions:
        own = {(m, tuple(c)) for m, c, _ in _indexes(su, partition).values()}
        assert own == parent, partition
