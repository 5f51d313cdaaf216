"""``GET /v1/events?correlation_id=...&request_id=...``: filters, pages, and the indexes
of migration 0004 that serve them."""

from __future__ import annotations

import secrets

import psycopg
import pytest

from tests.support import an_event
from trailseal.reading.query import EventFilter


def test_cursors_of_earlier_versions_stay_valid():
    # The fingerprint of a query without the new filters is what it always was.
    assert EventFilter(action="user.*").fingerprint() == (
        '{"action":"user.*","actor_id":null,"outcome":null,"since":null,'
        '"target_id":null,"target_type":null,"until":null}'
    )
    assert EventFilter(correlation_id="c").fingerprint() != EventFilter().fingerprint()


def test_filter_by_correlation_and_request_id_in_pages(client, tenant):
    flow = f"flow-{secrets.token_hex(4)}"
    events = [an_event(context={"correlation_id": flow, "request_id": f"r-{i % 2}"})
              for i in range(5)]
    events += [an_event(context={"correlation_id": "other", "request_id": "r-0"})]
    answer = client.post("/v1/events?wait=sequenced", json={"events": events},
                         headers=tenant.auth("ingest"))
    assert answer.status_code == 201, answer.text
    seen, cursor = [], None
    while True:
        params = {"correlation_id": flow, "limit": "2", **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/events", params=params, headers=tenant.auth("read")).json()
        seen += [e["id"] for e in page["events"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(e["id"] for e in events[:5])
    both = client.get("/v1/events", params={"correlation_id": flow, "request_id": "r-0"},
                      headers=tenant.auth("read")).json()["events"]
    assert sorted(e["id"] for e in both) == sorted(e["id"] for e in events[:5:2])
    too_long = client.get("/v1/events", params={"correlation_id": "x" * 257},
                          headers=tenant.auth("read"))
    assert too_long.status_code == 422


@pytest.mark.parametrize("column", ["correlation_id", "request_id"])
def test_an_index_serves_each_filter(database_url, column):
    with psycopg.connect(database_url) as conn:
        conn.execute("SET LOCAL enable_seqscan = off")
        conn.execute("SET LOCAL enable_bitmapscan = off")
        plan = "\n".join(r[0] for r in conn.execute(
            psycopg.sql.SQL(
                "EXPLAIN SELECT seq FROM trailseal.events WHERE tenant = %s AND {} = %s"
                " ORDER BY occurred_at DESC, seq DESC LIMIT 10"
            ).format(psycopg.sql.Identifier(column)),
            ("t", "x"),
        ))
    # Each partition's copy of the index, named after its columns, read newest first.
    assert "Index Only Scan Backward using events_" in plan, plan
    assert f"_tenant_{column}_occurred_at_seq_idx" in plan, plan
