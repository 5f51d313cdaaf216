"""An event is never more than a day ahead of its receipt (migration 0011): the database
refuses such a row in the inbox and in the log whoever writes it, and a question with
``since`` relies on that to leave out the partitions received before ``since`` less a
day, without losing an event that was received up to a day before it occurred."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg import AsyncConnection, sql

from tests.support import an_event, fresh_database, make_tenant, run
from trailseal import ingest
from trailseal.integrity import GENESIS_CHAIN_HASH, chain_hash
from trailseal.model import FUTURE_TOLERANCE, format_time
from trailseal.reading.export import count_events
from trailseal.reading.query import EventFilter, select_events
from trailseal.runtime import build_sequencer
from trailseal.store import Role, create_pool, migrate, scoped
from trailseal.tenants import create_tenant

NOW = ingest.now()
EARLY = NOW - timedelta(days=40)  # received in an earlier month's partition
MS = timedelta(milliseconds=1)


def _ahead(tenant: str, received_at: Any, by: timedelta) -> list[ingest.Prepared]:
    """One event that occurred ``by`` after ``received_at`` (prepared as if received
    later, so ingest's own check lets it through)."""
    occurred = received_at + by
    return ingest.prepare([an_event(occurred_at=format_time(occurred))], tenant, occurred)


def test_the_inbox_refuses_an_event_ahead_of_its_receipt(database_url):
    tenant = make_tenant(database_url, "times").name

    async def write(by: timedelta) -> None:
        async with await AsyncConnection.connect(database_url, autocommit=True) as conn:
            await ingest.write_inbox(conn, tenant, _ahead(tenant, NOW, by), NOW)

    with pytest.raises(psycopg.errors.CheckViolation, match="inbox_occurred_by_received"):
        run(write(FUTURE_TOLERANCE + MS))
    with psycopg.connect(database_url) as conn:  # the batch wrote nothing, its id neither
        assert conn.execute("SELECT count(*) FROM trailseal.event_ids WHERE tenant = %s",
                            (tenant,)).fetchone() == (0,)
    run(write(FUTURE_TOLERANCE))  # exactly a day ahead: allowed


def test_the_log_refuses_an_event_ahead_of_its_receipt_even_from_a_superuser(su):
    event = _ahead("nobody", NOW, FUTURE_TOLERANCE + MS)[0]
    with pytest.raises(psycopg.errors.CheckViolation, match="events_occurred_by_received"):
        su.execute(
            "INSERT INTO trailseal.events (tenant, seq, id, occurred_at, received_at,"
            " actor_type, actor_id, action, target_type, target_id, outcome, canonical,"
            " leaf_hash, chain_hash) VALUES ('nobody', 0, %s, %s, %s, 'user', 'u_1',"
            " 'user.login.succeeded', 'user', 'u_1', 'success', %s, %s, %s)",
            (event.id, NOW + FUTURE_TOLERANCE + MS, NOW, event.canonical, event.leaf_hash,
             chain_hash(GENESIS_CHAIN_HASH, event.leaf_hash)))


async def _populate(url: str, settings: Any) -> None:
    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        await create_tenant(conn, "times")
    pool = create_pool(url, min_size=1, max_size=2)
    await pool.open(wait=True)
    try:
        batches = [  # (received_at, how far ahead each event occurred)
            (EARLY, [FUTURE_TOLERANCE, timedelta(hours=12), -timedelta(days=3)]),
            (NOW, [timedelta(0), -timedelta(hours=1), -timedelta(days=45)]),
        ]
        for received_at, offsets in batches:
            raw = [an_event(occurred_at=format_time(received_at + by)) for by in offsets]
            async with pool.connection() as conn:
                prepared = ingest.prepare(raw, "times", received_at)
                await ingest.write_inbox(conn, "times", prepared, received_at)
        await build_sequencer(pool, settings).sequence_tenant("times")
    finally:
        await pool.close()


def _relations(url: str, flt: EventFilter) -> set[str]:
    """The relations the API's page statement for ``flt`` reads, as planned."""
    statement, params = select_events("times", flt, limit=101)

    async def go() -> Any:
        async with (await AsyncConnection.connect(url, autocommit=True) as conn,
                    scoped(conn, Role.READER, "times")):
            cur = await conn.execute(sql.SQL("EXPLAIN (FORMAT JSON) {}").format(statement),
                                     params, prepare=False)
            return (await cur.fetchone())[0]  # type: ignore[index]

    found = run(go())
    plan = (json.loads(found) if isinstance(found, str) else found)[0]["Plan"]
    names, stack = set(), [plan]
    while stack:
        node = stack.pop()
        if "Relation Name" in node:
            names.add(node["Relation Name"])
        stack.extend(node.get("Plans", []))
    return names


def test_since_leaves_out_earlier_partitions_and_loses_no_event(database_url, settings):
    with fresh_database(database_url, "trailseal_times") as url:
        migrate.migrate(url)
        run(_populate(url, settings))

        async def count(since: Any) -> int:
            async with await AsyncConnection.connect(url, autocommit=True) as conn:
                return await count_events(conn, "times", EventFilter(since=since))

        early, current = f"events_{EARLY:%Y_%m}", f"events_{NOW:%Y_%m}"
        early_end = (EARLY.replace(day=1) + timedelta(days=32)).replace(
            day=1, hour=0, minute=0, second=0, microsecond=0)
        for since in (EARLY + FUTURE_TOLERANCE, EARLY + timedelta(hours=12),
                      EARLY + FUTURE_TOLERANCE + MS, EARLY - timedelta(days=5),
                      NOW - timedelta(hours=2), NOW - timedelta(days=50)):
            with psycopg.connect(url, autocommit=True) as conn:  # every match, no bound
                expected = conn.execute(
                    "SELECT count(*) FROM trailseal.events WHERE tenant = 'times'"
                    " AND occurred_at >= %s", (since,)).fetchone()
            assert (run(count(since)),) == expected, since
            relations = _relations(url, EventFilter(since=since))
            assert current in relations
            # The early month is read only while since less a day falls before its end.
            assert (early in relations) == (since - FUTURE_TOLERANCE < early_end), (
                since, relations)
        # The event received early that occurred a day later is found from its own time.
        assert run(count(EARLY + FUTURE_TOLERANCE)) == 3  # it, and the two received now
