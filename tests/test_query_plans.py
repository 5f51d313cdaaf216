"""Every filter of ``GET /v1/events`` (and of target timelines and states) is served by an
index: the plans PostgreSQL makes for the very SQL the API runs, over tens of thousands
of sequenced events of varied shape, never read ``events`` or one of its partitions with
a Seq Scan. Every month partition holds events, the one made ahead for next month too
(so its events are received "in the future"): a Seq Scan of an empty partition reads
nothing, but it would hide one the planner prefers once the month fills.

The seed's four questions come first, then each other filter alone.
"""

from __future__ import annotations

import json
import random
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import AsyncConnection, sql

from tests.support import fresh_database, run
from trailseal import ingest
from trailseal.ids import uuid7
from trailseal.reading.query import EventFilter, Order, read_page, select_events
from trailseal.reading.targets import state_statement
from trailseal.runtime import build_sequencer
from trailseal.store import Role, create_pool, migrate, scoped
from trailseal.tenants import create_tenant

TENANT, NEIGHBOUR = "plans", "plans-neighbour"
EVENTS = 40_000  # of TENANT; NEIGHBOUR gets a quarter as many
NOW = ingest.now()
NEXT_MONTH = (NOW.replace(day=1) + timedelta(days=32)).replace(day=1, hour=1)
RECEIVED = [NOW - timedelta(days=45), NOW, NEXT_MONTH]  # three month partitions
ACTIONS = [  # (action, weight, outcome)
    ("auth.login.succeeded", 30, "success"),
    ("auth.login.failed", 6, "failure"),
    ("auth.logout", 10, "success"),
    ("user.role.updated", 6, "success"),
    ("user.profile.updated", 8, "success"),
    ("setting.updated", 4, "success"),
    ("document.viewed", 25, "success"),
    ("document.deleted", 3, "failure"),
    ("data.export.created", 2, "success"),
    ("data.export.downloaded", 2, "success"),
    ("project.created", 4, "success"),
]
SERVICES = [f"svc-{n}" for n in range(12)]
SETTINGS = ["billing.plan", "sso.enforced", "mfa.required", "retention.days", "ip.allowlist"]


def _event(rng: random.Random, received_at: datetime) -> dict[str, Any]:
    action, _, outcome = rng.choices(ACTIONS, weights=[a[1] for a in ACTIONS])[0]
    actor_type = rng.choices(["user", "service", "api_key", "system"], [70, 20, 6, 4])[0]
    actor_id = f"{actor_type[:2]}_{rng.randrange(2000)}"
    if action.startswith("setting."):
        target = {"type": "setting", "id": rng.choice(SETTINGS)}
    elif action.startswith(("user.", "auth.")):
        n = rng.randrange(5000)
        target = {"type": "user", "id": f"u_{n}", "name": f"User {n:04d}"}
    elif action.startswith("data.export"):
        target = {"type": "export", "id": f"x_{rng.randrange(10**6)}"}
    else:
        n = rng.randrange(20000)
        target = {"type": rng.choice(["document", "project"]), "id": f"d_{n}",
                  "name": f"Doc {n:05d} {rng.choice(['plan', 'memo', 'deck', 'sheet'])}"}
    if rng.random() < 0.5:
        ip = ".".join(str(rng.randrange(1, 224 if i == 0 else 255)) for i in range(4))
    else:
        ip = f"2001:db8:{rng.randrange(0x10000):x}::{rng.randrange(1, 0x10000):x}"
    occurred_at = received_at - timedelta(seconds=rng.randrange(120 * 86400))
    event: dict[str, Any] = {
        "id": str(uuid7()),
        "occurred_at": occurred_at.isoformat().replace("+00:00", "Z"),
        "actor": {"type": actor_type, "id": actor_id, "name": f"Person {actor_id}"},
        "action": action,
        "target": target,
        "outcome": {"status": outcome},
        "context": {"ip": ip, "request_id": f"r_{secrets.token_hex(6)}"},
    }
    if rng.random() < 0.6:
        event["context"]["service"] = rng.choice(SERVICES)
    if action.endswith("updated"):
        event["changes"] = {"value": {"before": rng.randrange(9), "after": rng.randrange(9)}}
    return event


async def _populate(url: str, settings: Any, received: list[datetime]) -> None:
    rng = random.Random(20260312)
    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        for name in (TENANT, NEIGHBOUR):
            await create_tenant(conn, name)
    pool = create_pool(url, min_size=1, max_size=2)
    await pool.open(wait=True)
    try:
        sequencer = build_sequencer(pool, settings)
        for tenant, count in ((TENANT, EVENTS), (NEIGHBOUR, EVENTS // 4)):
            for start in range(0, count, 1000):
                received_at = received[start * len(received) // count]
                raw = [_event(rng, received_at) for _ in range(min(1000, count - start))]
                batch = ingest.prepare(raw, tenant, received_at)
                async with pool.connection() as conn:
                    await ingest.write_inbox(conn, tenant, batch, received_at)
                await sequencer.sequence_tenant(tenant)
    finally:
        await pool.close()


@pytest.fixture(scope="module")
def plans_url(database_url: str, settings: Any) -> Iterator[str]:
    """A database of this module's own, populated and analysed."""
    with fresh_database(database_url, "trailseal_plans") as url:
        migrate.migrate(url)
        run(_populate(url, settings, RECEIVED))
        with psycopg.connect(url, autocommit=True) as conn:
            # As autovacuum leaves it: statistics, and the GIN pending list merged (until
            # then it holds at most gin_pending_list_limit, 4 MB, of new entries).
            conn.execute("VACUUM (ANALYZE) trailseal.events")
            partitions = conn.execute(
                "SELECT c.relname, c.reltuples FROM pg_inherits i"
                " JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = 'trailseal.events'::regclass"
            ).fetchall()
            assert len(partitions) == len(RECEIVED)
            assert all(tuples > 0 for _, tuples in partitions), partitions
        yield url


def _plan(url: str, statement: sql.Composed, params: list[Any]) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        explain = sql.SQL("EXPLAIN (FORMAT JSON) {}").format(statement)
        # As the API reads: as the reader role, under row-level security.
        async with (
            await AsyncConnection.connect(url, autocommit=True) as conn,
            scoped(conn, Role.READER, TENANT),
        ):
            row = await (await conn.execute(explain, params)).fetchone()
        assert row is not None
        found = row[0]
        plan: dict[str, Any] = (json.loads(found) if isinstance(found, str) else found)[0]
        return plan["Plan"]

    return run(go())


def _parent_indexes(url: str, names: set[str]) -> set[str]:
    """The indexes of ``trailseal.events`` that these (partition) indexes belong to."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT coalesce(p.relname, c.relname) FROM pg_class c"
            " LEFT JOIN pg_inherits i ON i.inhrelid = c.oid"
            " LEFT JOIN pg_class p ON p.oid = i.inhparent"
            " WHERE c.relnamespace = 'trailseal'::regnamespace AND c.relname = ANY(%s)",
            (list(names),),
        ).fetchall()
    return {row[0] for row in rows}


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


def _is_events(relation: str | None) -> bool:
    return relation is not None and (relation == "events" or relation.startswith("events_"))


def _check(url: str, statement: sql.Composed, params: list[Any]) -> set[str]:
    """The indexes the plan reads ``events`` through; fails on any Seq Scan of it."""
    plan = _plan(url, statement, params)
    nodes = list(_nodes(plan))
    scans = [
        n for n in nodes if n["Node Type"] == "Seq Scan" and _is_events(n.get("Relation Name"))
    ]
    assert scans == [], json.dumps(plan, indent=1)
    # The log is read, and only through indexes (a bitmap index scan names no relation).
    indexes = _parent_indexes(url, {n["Index Name"] for n in nodes if "Index Name" in n})
    assert indexes and all(i.startswith("events_") for i in indexes), json.dumps(plan, indent=1)
    return indexes


def _api_plan(url: str, flt: EventFilter, order: Order = "desc",
              after: tuple[datetime, int] | None = None) -> set[str]:
    # Exactly the statement GET /v1/events runs for a page of 100.
    statement, params = select_events(TENANT, flt, order=order, after=after, limit=101)
    return _check(url, statement, params)


QUESTIONS = {
    "changes to a user in the last 30 days": EventFilter(
        target_type="user", target_id="u_42", since=NOW - timedelta(days=30)),
    "who changed this setting and when": EventFilter(
        target_type="setting", target_id="billing.plan", action=("setting.*",)),
    "failed logins from this IP range": EventFilter(
        action=("auth.login.failed",), outcome="failure", ip="10.0.0.0/8"),
    "failed logins (any login action) from an IPv6 range": EventFilter(
        action=("auth.login.*",), outcome="failure", ip="2001:db8:1000::/36"),
    "data exports employees made in Q3": EventFilter(
        action=("data.export.*",), actor_type="user",
        since=datetime(2026, 7, 1, tzinfo=UTC), until=datetime(2026, 10, 1, tzinfo=UTC)),
}

FILTERS = {
    "no filter (meta-audit left out)": EventFilter(),
    "no filter, with the meta-audit": EventFilter(include_meta=True),
    "actor_type": EventFilter(actor_type="api_key"),
    "actor_type, common": EventFilter(actor_type="user"),
    "actor_id": EventFilter(actor_id="us_7"),
    "service": EventFilter(service="svc-3"),
    "q": EventFilter(q="doc 01234"),
    "q, an id": EventFilter(q="u_4321"),
    "ip, one address": EventFilter(ip="10.1.2.3"),
    "ip, IPv4 network": EventFilter(ip="10.20.0.0/16"),
    "ip, IPv6 network": EventFilter(ip="2001:db8:abc::/48"),
    "outcome": EventFilter(outcome="failure"),
    "several actions": EventFilter(action=("auth.logout", "user.role.updated")),
    "actions and a prefix": EventFilter(action=("auth.logout", "data.export.*")),
    "since and until": EventFilter(since=NOW - timedelta(days=2), until=NOW - timedelta(days=1)),
    "correlation_id": EventFilter(correlation_id="c_1"),
    "request_id": EventFilter(request_id="r_1"),
    "target_type": EventFilter(target_type="setting"),
}


@pytest.mark.parametrize("order", ["desc", "asc"])
@pytest.mark.parametrize("question", list(QUESTIONS))
def test_the_four_questions_use_indexes(plans_url, question, order):
    _api_plan(plans_url, QUESTIONS[question], order)


@pytest.mark.parametrize("order", ["desc", "asc"])
@pytest.mark.parametrize("name", list(FILTERS))
def test_each_filter_uses_an_index(plans_url, name, order):
    _api_plan(plans_url, FILTERS[name], order)


def test_a_later_page_uses_an_index(plans_url):
    after = (NOW - timedelta(days=3), 12345)
    _api_plan(plans_url, QUESTIONS["changes to a user in the last 30 days"], "desc", after)
    _api_plan(plans_url, EventFilter(), "asc", after)


@pytest.mark.parametrize(
    ("name", "index"),
    [
        ("q", "events_names"),
        ("q, an id", "events_names"),
        ("ip, one address", "events_ip"),
        ("ip, IPv6 network", "events_ip"),
        ("service", "events_service"),
        ("actor_type", "events_actor_type"),
        ("no filter (meta-audit left out)", "events_time_recorded"),
    ],
)
def test_selective_filters_use_their_own_index(plans_url, name, index):
    assert index in _api_plan(plans_url, FILTERS[name])


@pytest.fixture(scope="module")
def filling_url(database_url: str, settings: Any) -> Iterator[str]:
    """A log as it is most of the month: this month's partition filling up, the next
    one made ahead and still empty; analysed."""
    with fresh_database(database_url, "trailseal_filling") as url:
        migrate.migrate(url)
        run(_populate(url, settings, [NOW]))
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT trailseal.create_events_partition(%s)", (NEXT_MONTH,))
            conn.execute("VACUUM (ANALYZE) trailseal.events")
        yield url


# Questions with many matches: a page must come from walking an index in (occurred_at,
# seq) order and stopping at 101 rows. A Sort above the scans means every match is read
# first, which grows with the log. "Who changed this setting" combines correlated columns
# (a setting is only ever changed by setting.* actions): without the extended statistics
# of migration 0010 the planner expected a row or two, and with a Seq Scan of the empty
# partition the cheapest way to order those was to read every match and sort.
MANY_MATCHES = {
    "who changed this setting and when": QUESTIONS["who changed this setting and when"],
    "failed logins from half of the IPv4 addresses": EventFilter(
        action=("auth.login.*",), outcome="failure", ip="0.0.0.0/1"),
    "every login": EventFilter(action=("auth.login.*",)),
}


@pytest.mark.parametrize("order", ["desc", "asc"])
@pytest.mark.parametrize("name", list(MANY_MATCHES))
def test_a_page_of_many_matches_is_read_in_order_not_sorted(filling_url, name, order):
    statement, params = select_events(TENANT, MANY_MATCHES[name], order=order, limit=101)
    plan = _plan(filling_url, statement, params)
    sorts = [n for n in _nodes(plan) if n["Node Type"] in ("Sort", "Incremental Sort")]
    assert sorts == [], json.dumps(plan, indent=1)


def test_a_page_is_planned_for_its_values_every_time(filling_url):
    # A prepared statement turns to one plan for any values after a few runs, which
    # cannot tell a narrow network from a wide one; the API's page read is never prepared.
    async def go() -> int:
        async with (
            await AsyncConnection.connect(filling_url, autocommit=True) as conn,
            scoped(conn, Role.READER, TENANT),
        ):
            for _ in range(8):  # psycopg prepares a statement on its 5th run by default
                await read_page(conn, TENANT, MANY_MATCHES["every login"], limit=100,
                                cursor_key=b"k" * 32)
            cur = await conn.execute(
                "SELECT count(*) FROM pg_prepared_statements"
                " WHERE statement LIKE '%%FROM trailseal.events WHERE%%'")
            row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    assert run(go()) == 0


def test_a_target_state_uses_an_index(plans_url):
    statement, params = state_statement(TENANT, "setting", "sso.enforced", NOW)
    _check(plans_url, statement, params)


def test_without_a_superuser_text_search_still_answers(database_url, settings):
    # Migrated by a role that may create roles and act as the owner, but is no superuser:
    # no leakproof operator, no trigram index, and q reads the tenant's events instead.
    role = f"trailseal_migrator_{secrets.token_hex(4)}"
    name = f"trailseal_nosuper_{secrets.token_hex(4)}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE").format(sql.Identifier(role)))
        conn.execute(sql.SQL(
            "GRANT trailseal_owner, trailseal_ingest, trailseal_sequencer, trailseal_reader"
            " TO {} WITH ADMIN OPTION").format(sql.Identifier(role)))
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
            sql.Identifier(name), sql.Identifier(role)))
    url = psycopg.conninfo.make_conninfo(database_url, dbname=name)
    try:
        migrate.migrate(psycopg.conninfo.make_conninfo(url, user=role))
        with psycopg.connect(url, autocommit=True) as conn:
            assert conn.execute("SELECT to_regclass('trailseal.events_names')").fetchone() == (
                None,)
            assert conn.execute(
                "SELECT proleakproof FROM pg_proc WHERE proname = 'names_ilike'"
            ).fetchone() == (False,)

        async def search() -> tuple[list[str], list[str]]:
            async with await AsyncConnection.connect(url, autocommit=True) as conn:
                await create_tenant(conn, TENANT)
            pool = create_pool(url, min_size=1, max_size=2)
            await pool.open(wait=True)
            try:
                at = ingest.now()
                raw = [_event(random.Random(n), at) for n in range(20)]
                raw[7]["target"] = {"type": "user", "id": "u_1", "name": "Alice Liddell"}
                batch = ingest.prepare(raw, TENANT, at)
                async with pool.connection() as conn:
                    await ingest.write_inbox(conn, TENANT, batch, at)
                await build_sequencer(pool, settings).sequence_tenant(TENANT)
                statement, params = select_events(TENANT, EventFilter(q="LIDDELL"))
                async with pool.connection() as conn, scoped(conn, Role.READER, TENANT):
                    rows = await (await conn.execute(statement, params)).fetchall()
                return [raw[7]["id"]], [json.loads(bytes(row[2]))["id"] for row in rows]
            finally:
                await pool.close()

        expected, found = run(search())
        assert found == expected
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
