"""Warm reads: once events leave PostgreSQL, the query API's reader and exports read
them from their segments with DuckDB, with the same filters, order and cursors."""

from __future__ import annotations

import secrets
import threading
import time
from datetime import timedelta

import httpx
import psycopg
import pytest
import uvicorn
from psycopg import AsyncConnection

from tests.archive.support import archiver, fill, month_end, retention, seal
from tests.support import free_port, fresh_database, run
from trailseal.reading.export import export_chunks
from trailseal.reading.query import EventFilter, query_events
from trailseal.reading.targets import state_at
from trailseal.reading.warm import Warm
from trailseal.settings import Settings
from trailseal.store import migrate
from trailseal.tenants import create_key
from trailseal.web.app import create_app

KEY = secrets.token_bytes(32)
FILTERS = [
    EventFilter(),
    EventFilter(target_type="document", target_id="d_2"),
    EventFilter(action=("user.*",)),
    EventFilter(actor_id="u_1", outcome="success"),
    EventFilter(ip="10.1.0.0/16"),
    EventFilter(q="lic"),
]


async def _pages(url, flt, order, warm, limit=4):
    found, cursor = [], None
    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        while True:
            page = await query_events(conn, "acme", flt, limit=limit, cursor_key=KEY,
                                      after=cursor, order=order, warm=warm)
            found += [(e["seq"], e["id"]) for e in page.events]
            cursor = page.next_cursor
            if cursor is None:
                return found


async def _export(url, warm):
    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        return b"".join([c async for c in export_chunks(conn, "acme", EventFilter(), "ndjson",
                                                         warm=warm)])


async def _state(url, warm, at):
    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        return await state_at(conn, "acme", "document", "d_2", at, warm=warm)


def _fill_and_move(url, signer, store, clock, max_events=10):
    """Twelve events of acme: ten sealed (in segments of ``max_events``) in a month that
    is then dropped, two hot in a later month. Returns the later time (the clock is left
    there)."""
    run(fill(url, signer, "acme", 5, clock(), target={"type": "document", "id": "d_1"},
             context={"ip": "10.1.2.3"}))
    run(fill(url, signer, "acme", 5, clock(), action="user.role.updated",
             actor={"type": "user", "id": "u_1", "name": "Alice"},
             target={"type": "document", "id": "d_2"},
             changes={"status": {"before": "draft", "after": "final"}}))
    later = month_end(clock.now) + timedelta(days=100)
    run(fill(url, signer, "acme", 2, later, target={"type": "document", "id": "d_2"},
             context={"ip": "10.1.9.9"}))
    run(seal(url, archiver(store, signer, clock, max_events=max_events), "acme"))
    return later


@pytest.fixture
def moved(own_database, signer, store, clock, tmp_path):
    """Twelve events, of which the first ten left PostgreSQL (their month was dropped)
    and two arrived in a later month and are still hot; answers before the move."""
    later = _fill_and_move(own_database, signer, store, clock)
    before = {(i, order): run(_pages(own_database, flt, order, None))
              for i, flt in enumerate(FILTERS) for order in ("asc", "desc")}
    exported = run(_export(own_database, None))
    state = run(_state(own_database, None, later))
    clock.now = later
    report = run(retention(own_database, store, clock))
    assert report.dropped
    return before, exported, Warm(store, tmp_path / "cache"), state


def _marked(url: str) -> list[tuple[int, str]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT first_seq, kind FROM trailseal.segment_events WHERE kind = 'dropped'"
            " ORDER BY 1").fetchall()


def test_dropping_a_month_marks_its_segments_warm_in_the_same_transaction(own_database,
                                                                           moved):
    # The month's one segment (seqs 0..9) is marked; nothing of the kept month is.
    assert _marked(own_database) == [(0, "dropped")]
    with psycopg.connect(own_database) as conn:
        conn.execute("SET ROLE trailseal_archiver")
        for call in ("drop_events_partition_checked(now(), now())", "mark_dropped(now(), now())"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
                conn.execute(f"SELECT trailseal.{call}")


def test_segments_of_a_month_dropped_before_the_marks_existed_are_marked_on_upgrade(
        database_url, signer, store, clock, tmp_path):
    with fresh_database(database_url, "trailseal_warm") as url:
        migrate.migrate(url, target=8)
        clock.now = _fill_and_move(url, signer, store, clock)
        assert run(retention(url, store, clock)).dropped  # as version 8 dropped it
        migrate.migrate(url)
        assert _marked(url) == [(0, "dropped")]
        found = run(_pages(url, EventFilter(), "asc", Warm(store, tmp_path / "cache")))
        assert len(found) == 12


def test_queries_read_warm_segments_with_the_same_results(own_database, moved):
    before, _, warm, _ = moved
    assert before[(0, "asc")] and len(before[(0, "asc")]) == 12
    for (i, order), expected in before.items():
        assert run(_pages(own_database, FILTERS[i], order, warm)) == expected, (FILTERS[i], order)
        hot_only = run(_pages(own_database, FILTERS[i], order, None))
        assert len(hot_only) < len(expected) or not expected


def test_an_export_reads_warm_segments_with_the_same_bytes(own_database, moved):
    # The NDJSON export holds each event's leaf and chain hashes: a segment holds none,
    # and the warm reader computes them.
    _, exported, warm, _ = moved
    assert b'"chain_hash":"' in exported
    assert run(_export(own_database, warm)) == exported


def test_warm_hashes_chain_across_segments(own_database, signer, store, clock, tmp_path):
    # Ten events sealed in segments of four (0-3, 4-7, 8-9): each segment's chain starts
    # from the hash recorded before it, read in any order and through the kept chains.
    later = _fill_and_move(own_database, signer, store, clock, max_events=4)
    exported = run(_export(own_database, None))
    expected = {order: run(_pages(own_database, EventFilter(), order, None))
                for order in ("asc", "desc")}
    clock.now = later
    assert run(retention(own_database, store, clock)).dropped
    warm = Warm(store, tmp_path / "cache")
    for _ in range(2):  # the second time from the chains kept
        assert run(_export(own_database, warm)) == exported
    for order in ("asc", "desc"):
        assert run(_pages(own_database, EventFilter(), order, warm, limit=3)) == expected[order]
    with psycopg.connect(own_database) as conn:
        firsts = [r[0] for r in conn.execute(
            "SELECT first_seq FROM trailseal.segment_events WHERE kind = 'dropped'"
            " ORDER BY 1").fetchall()]
    assert firsts == [0, 4, 8]


@pytest.fixture
def served(own_database, store, tmp_path):
    """The API over ``own_database``, reading warm segments from ``store``, and a token
    of acme's with the read and export scopes."""
    settings = Settings(database_url=own_database, data_dir=tmp_path / "data",
                        log_origin="audit.test", archive_url=store.root.as_uri(),
                        run_sequencer=False, run_archiver=False)
    app = create_app(settings, own_database, cursor_key=secrets.token_bytes(32))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(),
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "service did not start"
        time.sleep(0.02)

    async def key() -> str:
        async with await AsyncConnection.connect(own_database, autocommit=True) as conn:
            return (await create_key(conn, "acme", ("read", "export"))).token

    port = server.config.port
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                      headers={"Authorization": f"Bearer {run(key())}"}) as http:
        yield http
    server.should_exit = True
    thread.join(timeout=10)


def test_the_api_reads_warm_segments_too(moved, served):
    before, exported, _, _ = moved
    r = served.get("/v1/events", params={"order": "asc", "limit": 100})
    assert r.status_code == 200, r.text
    assert [(e["seq"], e["id"]) for e in r.json()["events"]] == before[(0, "asc")]
    r = served.get("/v1/events", params={"target_type": "document", "target_id": "d_2",
                                         "order": "desc", "limit": 3})
    seen = [(e["seq"], e["id"]) for e in r.json()["events"]]
    while (cursor := r.json()["next_cursor"]) is not None:
        r = served.get("/v1/events", params={"target_type": "document", "target_id": "d_2",
                                             "order": "desc", "limit": 3, "cursor": cursor})
        seen += [(e["seq"], e["id"]) for e in r.json()["events"]]
    assert seen == before[(1, "desc")]
    r = served.get("/v1/targets/document/d_1/timeline", params={"limit": 100})
    assert r.status_code == 200 and len(r.json()["events"]) == 5
    r = served.get("/v1/export", params={"format": "ndjson"})
    assert r.status_code == 200 and r.content == exported


def test_warm_rows_stream_in_batches_as_they_read_whole(own_database, moved):
    _, _, warm, _ = moved

    async def both(flt, order):
        async with await AsyncConnection.connect(own_database, autocommit=True) as conn:
            whole = await warm.rows(conn, "acme", flt, order=order)
            streamed = [row async for row in warm.stream(conn, "acme", flt, order=order,
                                                         batch=3)]
            return whole, streamed

    for flt in FILTERS:
        for order in ("asc", "desc"):
            whole, streamed = run(both(flt, order))
            assert streamed == whole, (flt, order)
    assert len(run(both(EventFilter(), "asc"))[0]) == 10


def test_a_target_state_replays_warm_changes_too(own_database, moved, clock):
    _, _, warm, state = moved
    assert state.fields == {"status": "final"} and state.events == 5
    assert run(_state(own_database, warm, clock.now)) == state
    assert run(_state(own_database, None, clock.now)).events == 0  # hot alone has none
