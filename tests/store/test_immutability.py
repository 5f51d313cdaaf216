"""Immutability: UPDATE, DELETE and TRUNCATE of the log fail for every role, for the owner
and for a superuser, on the parent table and on a partition, and with
``session_replication_role = replica`` too; afterwards every row is as it was.

The runtime roles hold no such privilege, so PostgreSQL stops them first ("permission
denied"); the owner and a superuser hold it, so there the append-only trigger must fire.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

from tests.store.conftest import TwoLogs
from tests.store.scoping import (
    INGEST,
    OWNER,
    READER,
    ROLES,
    SEQUENCER,
    SUPERUSER,
    acting,
    by_trigger,
    refusal,
    rows,
)
from tests.support import an_event, make_tenant

ACTORS = [*ROLES, SUPERUSER]
ACTOR_IDS = [*ROLES, "superuser"]
OPERATIONS = ("UPDATE", "DELETE", "TRUNCATE")
REPLICA = "SET LOCAL session_replication_role = replica"

# A change that would alter the tenant's rows in each append-only table.
_CHANGES = {
    "events": "SET actor_id = 'mallory', outcome = 'failure'",
    "event_ids": "SET received_at = received_at - interval '1 day'",
    "tiles": "SET root = sha256(root)",
    "checkpoints": "SET note = note || 'forged'",
}


def _change(op: str, table: str, partition: str | None = None) -> sql.Composed:
    """``op`` on the tenant's rows of ``table`` (or on ``partition`` of it)."""
    target = sql.Identifier("trailseal", partition or table)
    if op == "TRUNCATE":
        return sql.SQL("TRUNCATE {}").format(target)
    if op == "DELETE":
        return sql.SQL("DELETE FROM {} WHERE tenant = %s").format(target)
    return sql.SQL("UPDATE {} " + _CHANGES[table] + " WHERE tenant = %s").format(target)


def _params(op: str, tenant: str) -> tuple[str, ...] | None:
    return None if op == "TRUNCATE" else (tenant,)


def _snapshot(conn: psycopg.Connection, logs: TwoLogs) -> list[Any]:
    """Every stored row of both tenants' logs, read as the superuser."""
    tenants = [logs.a.name, logs.b.name]
    return [
        rows(
            conn,
            "SELECT e.tableoid::regclass::text, e.* FROM trailseal.events e"
            " WHERE tenant = ANY(%s) ORDER BY tenant, seq",
            (tenants,),
        ),
        rows(
            conn, "SELECT * FROM trailseal.event_ids WHERE tenant = ANY(%s) ORDER BY id", (tenants,)
        ),
        rows(
            conn,
            "SELECT * FROM trailseal.log_heads WHERE tenant = ANY(%s) ORDER BY tenant",
            (tenants,),
        ),
    ]


def _partition(conn: psycopg.Connection, tenant: str) -> str:
    """The name of the events partition that holds ``tenant``'s rows."""
    found = rows(
        conn,
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'trailseal.events'::regclass"
        " AND c.oid IN (SELECT tableoid FROM trailseal.events WHERE tenant = %s)",
        (tenant,),
    )
    assert len(found) == 1, found
    name: str = found[0][0]
    assert re.fullmatch(r"events_\d{4}_\d{2}", name), name
    return name


def _assert_refused(error: psycopg.Error, op: str, *, by: str) -> None:
    message = error.diag.message_primary or ""
    assert error.sqlstate == "42501", message
    if by == "trigger":
        assert by_trigger(error), message
        assert message.startswith(f"trailseal: {op} on trailseal."), message
    else:
        assert message.startswith("permission denied for table"), message


def _stopped_by(actor: str | None) -> str:
    # The owner and a superuser may change any table they own or see; only the trigger
    # stands in their way. The runtime roles were never granted the change at all.
    return "trigger" if actor in (OWNER, SUPERUSER) else "privilege"


def test_the_test_connection_is_a_superuser(su: psycopg.Connection) -> None:
    # Otherwise the "as a superuser" cases below would prove nothing.
    assert rows(su, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user") == [(True,)]


@pytest.mark.parametrize("op", OPERATIONS)
@pytest.mark.parametrize("actor", ACTORS, ids=ACTOR_IDS)
@pytest.mark.parametrize("table", ["events", "event_ids"])
def test_nobody_changes_the_log(
    su: psycopg.Connection, logs: TwoLogs, table: str, actor: str | None, op: str
) -> None:
    before = _snapshot(su, logs)
    # With the tenant set, row-level security lets the owner reach the rows, so it is the
    # trigger, not an empty match, that stops it.
    error = refusal(su, actor, logs.a.name, _change(op, table), _params(op, logs.a.name))
    _assert_refused(error, op, by=_stopped_by(actor))
    assert _snapshot(su, logs) == before


@pytest.mark.parametrize("op", OPERATIONS)
def test_a_partition_refuses_changes_made_to_it_directly(
    su: psycopg.Connection, logs: TwoLogs, op: str
) -> None:
    before = _snapshot(su, logs)
    partition = _partition(su, logs.a.name)
    error = refusal(su, SUPERUSER, None, _change(op, "events", partition), _params(op, logs.a.name))
    _assert_refused(error, op, by="trigger")
    assert partition in (error.diag.message_primary or "")
    assert _snapshot(su, logs) == before


@pytest.mark.parametrize("op", ["UPDATE", "DELETE"])
def test_a_partition_shows_the_owner_no_rows(
    su: psycopg.Connection, logs: TwoLogs, op: str
) -> None:
    # A partition has row-level security forced and no policy, so reached directly it
    # admits nobody but a superuser; the owner's change matches nothing.
    before = _snapshot(su, logs)
    partition = _partition(su, logs.a.name)
    with acting(su, OWNER, logs.a.name):
        changed = su.execute(_change(op, "events", partition), (logs.a.name,))
        assert changed.rowcount == 0
    assert _snapshot(su, logs) == before


@pytest.mark.parametrize(
    ("table", "op", "actor"),
    [
        *[
            (t, op, a)
            for t in ("events", "event_ids")
            for op in OPERATIONS
            for a in (SUPERUSER, OWNER)
        ],
        *[("events partition", op, SUPERUSER) for op in OPERATIONS],
        ("events partition", "TRUNCATE", OWNER),
    ],
    ids=lambda v: "superuser" if v is None else v,
)
def test_replica_mode_does_not_switch_the_triggers_off(
    su: psycopg.Connection, logs: TwoLogs, table: str, op: str, actor: str | None
) -> None:
    before = _snapshot(su, logs)
    partition = _partition(su, logs.a.name) if table == "events partition" else None
    statement = _change(op, table.split()[0], partition)
    error = refusal(su, actor, logs.a.name, statement, _params(op, logs.a.name), setup=REPLICA)
    _assert_refused(error, op, by="trigger")
    assert _snapshot(su, logs) == before


# Other statements that update or delete rows, each of which must meet the same trigger.
_OTHER_ROUTES = {
    "upsert": (
        "INSERT INTO trailseal.event_ids (tenant, id, received_at)"
        " SELECT tenant, id, received_at FROM trailseal.event_ids WHERE tenant = %(tenant)s"
        " ON CONFLICT (tenant, id)"
        " DO UPDATE SET received_at = excluded.received_at - interval '1 day'"
    ),
    "merge-update": (
        "MERGE INTO trailseal.events e USING (SELECT %(tenant)s::text AS tenant) s"
        " ON e.tenant = s.tenant WHEN MATCHED THEN UPDATE SET actor_id = 'mallory'"
    ),
    "merge-delete": (
        "MERGE INTO trailseal.events e USING (SELECT %(tenant)s::text AS tenant) s"
        " ON e.tenant = s.tenant WHEN MATCHED THEN DELETE"
    ),
    "move-partition": (
        "UPDATE trailseal.events SET received_at = received_at + interval '1 month'"
        " WHERE tenant = %(tenant)s"
    ),
    "writable-cte": (
        "WITH gone AS (DELETE FROM trailseal.events WHERE tenant = %(tenant)s RETURNING seq)"
        " SELECT count(*) FROM gone"
    ),
}


@pytest.mark.parametrize("statement", _OTHER_ROUTES.values(), ids=_OTHER_ROUTES.keys())
def test_other_routes_to_a_change_meet_the_same_trigger(
    su: psycopg.Connection, logs: TwoLogs, statement: str
) -> None:
    before = _snapshot(su, logs)
    error = refusal(su, SUPERUSER, None, statement, {"tenant": logs.a.name})
    assert by_trigger(error), error.diag.message_primary
    assert _snapshot(su, logs) == before


@pytest.mark.parametrize("op", ["DELETE", "TRUNCATE"])
@pytest.mark.parametrize(
    ("actor", "setup"),
    [
        (SUPERUSER, None),
        (SUPERUSER, REPLICA),
        (OWNER, None),
        (OWNER, REPLICA),
        (INGEST, None),
        (SEQUENCER, None),
        (READER, None),
    ],
    ids=["superuser", "superuser-replica", OWNER, f"{OWNER}-replica", INGEST, SEQUENCER, READER],
)
def test_log_heads_are_never_deleted(
    su: psycopg.Connection, logs: TwoLogs, actor: str | None, setup: str | None, op: str
) -> None:
    before = _snapshot(su, logs)
    statement = (
        "TRUNCATE trailseal.log_heads"
        if op == "TRUNCATE"
        else "DELETE FROM trailseal.log_heads WHERE tenant = %s"
    )
    params = None if op == "TRUNCATE" else (logs.a.name,)
    error = refusal(su, actor, logs.a.name, statement, params, setup=setup)
    _assert_refused(error, op, by=_stopped_by(actor))
    assert _snapshot(su, logs) == before


def _append_only_triggers(conn: psycopg.Connection) -> dict[str, dict[str, str]]:
    """Table name -> {trigger name: tgenabled} for the append-only tables."""
    found: dict[str, dict[str, str]] = {}
    for table, trigger, enabled in conn.execute(
        "SELECT c.relname, t.tgname, t.tgenabled FROM pg_trigger t"
        " JOIN pg_class c ON c.oid = t.tgrelid"
        " WHERE c.relnamespace = 'trailseal'::regnamespace"
        " AND t.tgfoid = 'trailseal.refuse_change()'::regprocedure"
    ):
        found.setdefault(table, {})[trigger] = enabled
    return found


def test_every_partition_carries_the_triggers_enabled_always(su: psycopg.Connection) -> None:
    # Including one created now, the way the sequencer creates them (rolled back after).
    with acting(su, SEQUENCER):
        created = su.execute(
            "SELECT trailseal.create_events_partition('2001-02-03T04:05:06Z')"
        ).fetchone()
        assert created == ("events_2001_02",)
        partitions = [
            name
            for (name,) in su.execute(
                "SELECT inhrelid::regclass::text FROM pg_inherits"
                " WHERE inhparent = 'trailseal.events'::regclass"
            )
        ]
        found = _append_only_triggers(su)
    assert "trailseal.events_2001_02" in partitions
    append_only = {"events_append_only": "A", "events_no_truncate": "A"}
    assert found["events"] == append_only
    for partition in partitions:
        assert found[partition.removeprefix("trailseal.")] == append_only, partition
    assert found["event_ids"] == {"event_ids_append_only": "A", "event_ids_no_truncate": "A"}
    assert found["log_heads"] == {"log_heads_no_delete": "A", "log_heads_no_truncate": "A"}


@pytest.fixture(scope="module")
def tree_log(database_url: str, service_url: str) -> str:
    """A tenant with 300 sequenced events: one full tile and a checkpoint per batch."""
    tenant = make_tenant(database_url, "tree")
    with httpx.Client(base_url=service_url, timeout=30) as http:
        for _ in range(2):
            events = [an_event() for _ in range(150)]
            r = http.post("/v1/events?wait=sequenced", json={"events": events},
                          headers=tenant.auth())
            assert r.status_code == 201, r.text
    return tenant.name


@pytest.mark.parametrize("op", OPERATIONS)
@pytest.mark.parametrize("actor", ACTORS, ids=ACTOR_IDS)
@pytest.mark.parametrize("table", ["tiles", "checkpoints"])
def test_nobody_changes_the_tree(
    su: psycopg.Connection, tree_log: str, table: str, actor: str | None, op: str
) -> None:
    query = sql.SQL("SELECT * FROM {} WHERE tenant = %s ORDER BY 2, 3").format(
        sql.Identifier("trailseal", table)
    )
    before = rows(su, query, (tree_log,))
    assert before, "the tree must have rows for the refusal to mean anything"
    error = refusal(su, actor, tree_log, _change(op, table), _params(op, tree_log))
    _assert_refused(error, op, by=_stopped_by(actor))
    assert rows(su, query, (tree_log,)) == before
