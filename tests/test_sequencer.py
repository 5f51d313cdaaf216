"""Sequencing: gapless per-tenant seq under concurrent ingest and competing sequencers,
chain links that verify, and no event skipped when transactions commit out of order."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI
from psycopg import AsyncConnection

from tests.support import Tenant, an_event, fresh_database, make_tenant, run
from trailseal import ingest
from trailseal.errors import ConfigurationError
from trailseal.integrity import GENESIS_CHAIN_HASH, chain_hash, leaf_hash
from trailseal.runtime import build_sequencer
from trailseal.sequencer import _LOCK_CLASS, _MOVE, _head_and_inbox
from trailseal.settings import Settings
from trailseal.store import Role, create_pool, migrate, scoped
from trailseal.web.app import create_app


def _log(database_url: str, tenant: str) -> list[tuple[int, str, bytes, bytes, bytes]]:
    with psycopg.connect(database_url) as conn:  # superuser: reads past RLS
        return conn.execute(
            "SELECT seq, id::text, canonical, leaf_hash, chain_hash FROM trailseal.events"
            " WHERE tenant = %s ORDER BY seq",
            (tenant,),
        ).fetchall()


def _assert_log_verifies(database_url: str, tenant: str, expected_ids: set[str]) -> None:
    rows = _log(database_url, tenant)
    assert [r[0] for r in rows] == list(range(len(rows))), "seq must run 0, 1, 2 ... gapless"
    assert {r[1] for r in rows} == expected_ids and len(rows) == len(expected_ids)
    previous = GENESIS_CHAIN_HASH
    for _seq, _id, canonical, leaf, chain in rows:
        assert bytes(leaf) == leaf_hash(bytes(canonical))
        assert bytes(leaf) == hashlib.sha256(b"\x00" + bytes(canonical)).digest()
        previous = chain_hash(previous, bytes(leaf))
        assert bytes(chain) == previous
    with psycopg.connect(database_url) as conn:
        head = conn.execute(
            "SELECT size, chain_hash FROM trailseal.log_heads WHERE tenant = %s", (tenant,)
        ).fetchone()
    assert head is not None and head[0] == len(rows) and bytes(head[1]) == previous


async def _drain(database_url: str, settings: Settings) -> None:
    """Sequence until no tenant has pending events (other sequencers may hold some)."""
    pool = create_pool(database_url, min_size=1, max_size=2)
    await pool.open(wait=True)
    try:
        worker = build_sequencer(pool, settings)
        for _ in range(500):
            await worker.run_once()
            if not await worker.pending_tenants():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("inbox did not drain")
    finally:
        await pool.close()


def test_gapless_under_concurrent_ingest_and_competing_sequencers(client, database_url, settings):
    tenants = [make_tenant(database_url, f"seq{i}") for i in range(3)]
    sent: dict[str, set[str]] = {t.name: set() for t in tenants}
    lock = threading.Lock()

    def produce(t: Tenant, rounds: int) -> None:
        for _ in range(rounds):
            batch = [an_event() for _ in range(25)]
            r = client.post("/v1/events", json={"events": batch}, headers=t.auth("ingest"))
            assert r.status_code == 202, r.text
            with lock:
                sent[t.name].update(r.json()["accepted"])

    stop = threading.Event()

    def extra_sequencers() -> None:
        async def go() -> None:
            pool = create_pool(database_url, min_size=2, max_size=4)
            await pool.open(wait=True)
            halt = asyncio.Event()
            tuned = settings.model_copy(
                update={"sequencer_batch_size": 40, "sequencer_idle_seconds": 0.01}
            )
            workers = [build_sequencer(pool, tuned) for _ in range(2)]
            tasks = [asyncio.create_task(w.run(halt)) for w in workers]
            while not stop.is_set():
                await asyncio.sleep(0.01)
            halt.set()
            await asyncio.gather(*tasks)
            await pool.close()

        asyncio.run(go())

    sequencers = threading.Thread(target=extra_sequencers)
    sequencers.start()
    try:
        with ThreadPoolExecutor(max_workers=6) as pool:
            futures = [pool.submit(produce, t, 8) for t in tenants for _ in range(2)]
            for future in futures:
                future.result()
    finally:
        stop.set()
        sequencers.join()
    run(_drain(database_url, settings))
    for t in tenants:
        assert len(sent[t.name]) == 2 * 8 * 25
        _assert_log_verifies(database_url, t.name, sent[t.name])


def test_late_commit_is_never_skipped(database_url, settings):
    """An event whose transaction took its inbox position first but committed last is
    still sequenced, after the one that committed first."""
    t = make_tenant(database_url, "late")

    async def go() -> list[str]:
        early, late = an_event(), an_event()
        at = ingest.now()
        slow = await AsyncConnection.connect(database_url, autocommit=True)
        fast = await AsyncConnection.connect(database_url, autocommit=True)
        async with slow, fast, slow.transaction():
            # The slow transaction takes its inbox position first and commits last.
            await ingest.write_inbox(slow, t.name, ingest.prepare([early], t.name, at), at)
            await ingest.write_inbox(fast, t.name, ingest.prepare([late], t.name, at), at)
            await _drain(database_url, settings)
            assert [r[1] for r in _log(database_url, t.name)] == [late["id"]]
        await _drain(database_url, settings)
        return [str(early["id"]), str(late["id"])]

    early_id, late_id = run(go())
    assert [r[1] for r in _log(database_url, t.name)] == [late_id, early_id]
    _assert_log_verifies(database_url, t.name, {early_id, late_id})


def test_a_tenant_held_by_another_sequencer_is_passed_by(database_url, settings):
    t = make_tenant(database_url, "held")

    event = an_event()

    async def go() -> None:
        at = ingest.now()
        pool = create_pool(database_url, min_size=1, max_size=2)
        await pool.open(wait=True)
        try:
            worker = build_sequencer(pool, settings)
            async with await AsyncConnection.connect(database_url, autocommit=True) as holder:
                # Held before the event exists, so no sequencer (the service's included)
                # can take the tenant while it is held.
                await holder.execute(
                    "SELECT pg_advisory_lock(%s, hashtext(%s))", (_LOCK_CLASS, t.name)
                )
                async with pool.connection() as conn:
                    prepared = ingest.prepare([event], t.name, at)
                    await ingest.write_inbox(conn, t.name, prepared, at)
                assert await worker.sequence_batch(t.name) is None
                assert _log(database_url, t.name) == []
                await holder.execute(
                    "SELECT pg_advisory_unlock(%s, hashtext(%s))", (_LOCK_CLASS, t.name)
                )
        finally:
            await pool.close()
        await _drain(database_url, settings)

    run(go())
    assert [(r[0], r[1]) for r in _log(database_url, t.name)] == [(0, event["id"])]


async def _fill(database_url: str, tenant: str, count: int) -> None:
    """``count`` events into ``tenant``'s inbox, a thousand a batch, left unsequenced."""
    async with await AsyncConnection.connect(database_url, autocommit=True) as conn:
        for start in range(0, count, 1000):
            at = ingest.now()
            events = [an_event() for _ in range(min(1000, count - start))]
            await ingest.write_inbox(conn, tenant, ingest.prepare(events, tenant, at), at)


@pytest.mark.parametrize("statistics", ["never taken", "taken of other tenants"])
def test_a_batch_is_read_and_moved_without_reading_the_backlog(database_url, statistics):
    """The inbox is a queue, so its statistics are always out of date. Here they were
    never taken, or taken when only other tenants had events waiting, and this tenant
    has 8,000 waiting: reading the head of its inbox and moving it into the log must
    touch pages in proportion to the batch, not to the backlog (which plans made for a
    few rows read whole, for every batch)."""
    batch = 50
    with fresh_database(database_url, "trailseal_backlog") as url:
        migrate.migrate(url)

        with psycopg.connect(url, autocommit=True) as conn:  # statistics stay as set here
            conn.execute("ALTER TABLE trailseal.inbox SET (autovacuum_enabled = off)")
        if statistics == "taken of other tenants":
            for _ in range(3):
                run(_fill(url, make_tenant(url, "other").name, 500))
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("ANALYZE trailseal.inbox")
        tenant = make_tenant(url, "backlog").name
        run(_fill(url, tenant, 8000))

        async def heap_pages_read() -> tuple[int, int, int]:
            """Pages of the inbox's table: those reading the head and moving it read,
            and the table's size."""
            fetched = "SELECT pg_stat_get_xact_blocks_fetched('trailseal.inbox'::regclass)"
            async with await AsyncConnection.connect(url, autocommit=True) as conn:
                async with scoped(conn, Role.SEQUENCER, tenant):
                    start = await (await conn.execute(fetched)).fetchone()
                    _, rows = await _head_and_inbox(conn, tenant, batch)
                    head = await (await conn.execute(fetched)).fetchone()
                    positions = [r[0] for r in rows]
                    assert positions == sorted(positions) and len(positions) == batch
                    await conn.execute(_MOVE, {
                        "tenant": tenant, "pos": positions, "first": positions[0],
                        "last": positions[-1], "seq": list(range(batch)),
                        "chain": [bytes(32)] * batch})
                    moved = await (await conn.execute(fetched)).fetchone()
                size = await (await conn.execute(
                    "SELECT pg_relation_size('trailseal.inbox') / 8192")).fetchone()
            assert start and head and moved and size
            return head[0] - start[0], moved[0] - head[0], size[0]

        read, moved, backlog_pages = run(heap_pages_read())
    assert backlog_pages > 400
    assert read < backlog_pages / 4, (read, backlog_pages)
    assert moved < backlog_pages / 2, (moved, backlog_pages)


# The inbox's table and each of its indexes by name, with a figure of each.
_INBOX_RELATIONS = (
    "SELECT c.relname, {} FROM pg_class c WHERE c.oid = 'trailseal.inbox'::regclass"
    " OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = 'trailseal.inbox'::regclass)"
)


@pytest.mark.parametrize(
    "statistics", ["taken of one tenant's backlog", "taken of a drained queue"]
)
def test_pending_tenants_probes_by_the_primary_key_alone(own_database, statistics):
    """The sweep's question, which tenants have events waiting, is asked tenant by
    tenant, and PL/pgSQL plans the probe once for the session after five tenants, from
    the inbox's statistics. A queue's statistics are whatever the last ANALYZE saw: one
    tenant's backlog filling the inbox (every row matches any tenant, so scanning the
    heap for a first row looks cheap), or a drained queue (a few live rows in a table
    and indexes at their largest, so the primary key looks dear and a scan of the whole
    (id, tenant) index looks cheap; PostgreSQL 18 takes it, here for the tenant with
    rows waiting, on the benchmarks' database for every tenant). Either way a probe
    must read a few pages of the primary key, not the inbox's heap or another index
    whole: seconds a sweep, with a hundred tenants after a burst."""
    with psycopg.connect(own_database, autocommit=True) as conn:  # statistics as set here
        conn.execute("ALTER TABLE trailseal.inbox SET (autovacuum_enabled = off)")
    busy = make_tenant(own_database, "busy").name  # sorts before every idle one
    idle = 12  # past the five probes after which the plan is the generic one
    for _ in range(idle):
        make_tenant(own_database, "idle")
    drained = statistics == "taken of a drained queue"
    run(_fill(own_database, busy, 20000 if drained else 2000))
    with psycopg.connect(own_database, autocommit=True) as conn:
        if drained:  # as the sequencer leaves it: all but the last two rows moved out
            conn.execute(
                "DELETE FROM trailseal.inbox WHERE tenant = %s AND pos < ("
                " SELECT pos FROM trailseal.inbox WHERE tenant = %s"
                " ORDER BY pos DESC OFFSET 1 LIMIT 1)", (busy, busy))
        conn.execute("ANALYZE trailseal.inbox")
        sizes = dict(conn.execute(_INBOX_RELATIONS.format("pg_relation_size(c.oid) / 8192"))
                     .fetchall())

    async def sweeps() -> list[tuple[list[str], dict[str, int]]]:
        """Two sweeps by one session, each in a transaction of its own: which tenants
        are pending, and the pages of the inbox's table and indexes it read (counted
        within the transaction: the counts a session has not yet reported carry
        over from its earlier transactions)."""
        read = _INBOX_RELATIONS.format("pg_stat_get_xact_blocks_fetched(c.oid)")
        done = []
        async with await AsyncConnection.connect(own_database) as conn:
            for _ in range(2):
                async with conn.transaction():
                    before = dict(await (await conn.execute(read)).fetchall())
                    await conn.execute(f"SET LOCAL ROLE {Role.SEQUENCER.value}")
                    cur = await conn.execute("SELECT * FROM trailseal.pending_tenants()")
                    pending = [row[0] for row in await cur.fetchall()]
                    await conn.execute("RESET ROLE")
                    after = dict(await (await conn.execute(read)).fetchall())
                    done.append((pending, {k: after[k] - before[k] for k in after}))
        return done

    (first, first_read), (second, second_read) = run(sweeps())
    assert first == second == [busy]
    assert set(sizes) == {"inbox", "inbox_pkey", "inbox_id_tenant_key"}
    assert sizes["inbox"] > 100, sizes
    # Of the other index the first sweep's planning reads the metapage, and no probe
    # reads more.
    assert first_read["inbox_id_tenant_key"] <= 1, (first_read, sizes)
    assert second_read["inbox_id_tenant_key"] == 0, (second_read, sizes)
    # The first probe of the busy tenant walks its dead entries in the primary key and
    # marks them, as any index scan does; from then on a sweep reads at most those leaf
    # pages and a few pages a tenant.
    assert sum(second_read.values()) < sizes["inbox_pkey"] + 4 * (idle + 1), (
        second_read, sizes)


def _log_size_within(database_url: str, tenant: str, count: int, seconds: float) -> int:
    """The size of ``tenant``'s log once it reaches ``count``, or after ``seconds``,
    waited for without ever handing the calling thread's event loop a turn."""
    deadline = time.monotonic() + seconds
    with psycopg.connect(database_url, autocommit=True) as conn:
        while True:
            row = conn.execute(
                "SELECT count(*) FROM trailseal.events WHERE tenant = %s", (tenant,)
            ).fetchone()
            assert row is not None
            if row[0] >= count or time.monotonic() >= deadline:
                return int(row[0])
            time.sleep(0.01)


def _sequencer_threads() -> set[threading.Thread]:
    return {th for th in threading.enumerate() if th.name == "trailseal-sequencer"}


def _served(settings: Settings, database_url: str, data_dir: Path, **changes: Any) -> FastAPI:
    values = settings.model_copy(update={"database_url": database_url, "data_dir": data_dir,
                                         **changes})
    return create_app(values, database_url, cursor_key=secrets.token_bytes(32))


def test_the_served_sequencer_moves_events_while_the_api_loop_is_held(
    own_database, settings, tmp_path
):
    """`serve`'s sequencer runs on a thread of its own: events waiting in the inbox reach
    the log while the API's event loop is held (here, by a wait that never yields it).
    On the API's loop, it would sequence nothing until the loop was free."""
    t = make_tenant(own_database, "busy")
    events = [an_event() for _ in range(40)]
    app = _served(settings, own_database, tmp_path)
    running = _sequencer_threads()  # the shared service's, if it has started

    async def go() -> int:
        async with app.router.lifespan_context(app):
            at = ingest.now()
            async with await AsyncConnection.connect(own_database, autocommit=True) as conn:
                prepared = ingest.prepare(events, t.name, at)
                await ingest.write_inbox(conn, t.name, prepared, at)
            app.state.sequencer.nudge()
            return _log_size_within(own_database, t.name, len(events), seconds=30)

    assert run(go()) == len(events)
    _assert_log_verifies(own_database, t.name, {str(e["id"]) for e in events})
    assert _sequencer_threads() == running  # its thread ended with the app


def test_a_sequencer_that_cannot_start_stops_the_service_from_starting(
    own_database, settings, tmp_path
):
    bad_key = tmp_path / "log.key"
    bad_key.write_text("not a signing key\n")
    app = _served(settings, own_database, tmp_path, signing_key_file=bad_key)
    running = _sequencer_threads()

    async def go() -> None:
        async with app.router.lifespan_context(app):
            pass  # pragma: no cover - the start must fail

    with pytest.raises(ConfigurationError, match="does not hold a signing key"):
        run(go())
    assert _sequencer_threads() == running
