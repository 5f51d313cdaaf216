"""Producer gap detection: numbered events reach ``GET /v1/sources`` as a high water mark
and the gaps below the highest number seen."""

from __future__ import annotations

import psycopg
import pytest

from tests.support import Tenant, an_event
from trailseal.gaps import MAX_RUNS


def _send(client, tenant: Tenant, source: str, numbers: list[int]) -> None:
    events = [an_event(context={"source": source, "source_seq": n}) for n in numbers]
    r = client.post(
        "/v1/events?wait=sequenced", json={"events": events}, headers=tenant.auth("ingest")
    )
    assert r.status_code == 201, r.text


def _sources(client, tenant: Tenant, **params: object) -> list[dict]:
    r = client.get("/v1/sources", params=params, headers=tenant.auth("admin"))
    assert r.status_code == 200, r.text
    return r.json()["sources"]


def _one(client, tenant: Tenant, source: str) -> dict:
    found = _sources(client, tenant, source=source)
    assert [s["source"] for s in found] == [source]
    return found[0]


def _summary(found: dict) -> tuple[int, int, int, list[list[int]]]:
    return found["high_water"], found["max_seen"], found["missing"], found["gaps"]


def test_contiguous_numbers_show_no_gap(client, tenant):
    _send(client, tenant, "spool-1", [0, 1, 2])
    _send(client, tenant, "spool-1", [3, 4])
    found = _one(client, tenant, "spool-1")
    assert _summary(found) == (4, 4, 0, [])
    assert (found["written_off"], found["repeated"]) == (0, 0)
    assert found["first_seen_at"] <= found["last_seen_at"]
    assert found["last_seen_at"].endswith("Z")


def test_lost_numbers_show_as_gaps_until_they_arrive(client, tenant):
    _send(client, tenant, "web-1:4242", [0, 1, 2, 5, 6, 9])
    assert _summary(_one(client, tenant, "web-1:4242")) == (2, 9, 4, [[3, 4], [7, 8]])
    _send(client, tenant, "web-1:4242", [4, 3])  # late, and out of order
    assert _summary(_one(client, tenant, "web-1:4242")) == (6, 9, 2, [[7, 8]])


def test_a_missing_zero_leaves_the_high_water_below_it(client, tenant):
    _send(client, tenant, "s", [1, 2])
    assert _summary(_one(client, tenant, "s")) == (-1, 2, 1, [[0, 0]])


def test_numbers_arriving_across_batches_in_any_order(client, tenant):
    _send(client, tenant, "s", [7])
    _send(client, tenant, "s", [2, 0])
    assert _summary(_one(client, tenant, "s")) == (0, 7, 5, [[1, 1], [3, 6]])
    _send(client, tenant, "s", [6, 5, 1, 3, 4])
    assert _summary(_one(client, tenant, "s")) == (7, 7, 0, [])


def test_sources_are_independent_and_sorted(client, tenant):
    events = [
        an_event(context={"source": source, "source_seq": n})
        for source, n in (("b", 0), ("a", 0), ("b", 2), ("a", 1), ("c", 1))
    ]
    r = client.post("/v1/events?wait=sequenced", json={"events": events}, headers=tenant.auth())
    assert r.status_code == 201, r.text
    found = {s["source"]: _summary(s) for s in _sources(client, tenant)}
    assert list(found) == ["a", "b", "c"]
    assert found == {
        "a": (1, 1, 0, []),
        "b": (0, 2, 1, [[1, 1]]),
        "c": (-1, 1, 1, [[0, 0]]),
    }
    assert [s["source"] for s in _sources(client, tenant, only_gaps="true")] == ["b", "c"]
    assert _sources(client, tenant, source="zzz") == []


def test_events_without_a_source_leave_no_trace(client, tenant):
    r = client.post("/v1/events?wait=sequenced", json=an_event(), headers=tenant.auth())
    assert r.status_code == 201, r.text
    assert _sources(client, tenant) == []


def test_a_repeated_number_under_a_new_id_changes_nothing_but_its_count(client, tenant):
    _send(client, tenant, "s", [0, 1, 1])
    _send(client, tenant, "s", [0, 3])
    found = _one(client, tenant, "s")
    assert _summary(found) == (1, 3, 1, [[2, 2]])
    assert found["repeated"] == 2


def test_pages_follow_the_cursor(client, tenant):
    events = [an_event(context={"source": f"s{i}", "source_seq": 0}) for i in range(5)]
    r = client.post("/v1/events?wait=sequenced", json={"events": events}, headers=tenant.auth())
    assert r.status_code == 201, r.text
    seen, cursor = [], None
    while True:
        params = {"limit": 2} if cursor is None else {"limit": 2, "cursor": cursor}
        r = client.get("/v1/sources", params=params, headers=tenant.auth("admin"))
        assert r.status_code == 200, r.text
        seen += [s["source"] for s in r.json()["sources"]]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == ["s0", "s1", "s2", "s3", "s4"]


def test_the_numbers_are_stored_and_hashed_with_the_event(client, tenant, database_url):
    _send(client, tenant, "s", [0])
    r = client.get("/v1/events", headers=tenant.auth("read"))
    assert r.json()["events"][0]["context"] == {"source": "s", "source_seq": 0}
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT source, source_seq FROM trailseal.events WHERE tenant = %s", (tenant.name,)
        ).fetchone()
    assert row == ("s", 0)


def test_a_tenant_sees_only_its_own_sources(client, tenant, other_tenant):
    _send(client, tenant, "shared-name", [0, 2])
    _send(client, other_tenant, "shared-name", [0])
    assert _summary(_one(client, other_tenant, "shared-name")) == (0, 0, 0, [])
    assert _summary(_one(client, tenant, "shared-name")) == (0, 2, 1, [[1, 1]])
    _send(client, tenant, "only-mine", [0])
    assert [s["source"] for s in _sources(client, other_tenant)] == ["shared-name"]


@pytest.mark.parametrize("scope", ["ingest", "read", "export"])
def test_sources_need_the_admin_scope(client, tenant, scope):
    r = client.get("/v1/sources", headers=tenant.auth(scope))
    assert r.status_code == 403, r.text
    assert client.get("/v1/sources", headers=tenant.auth("admin")).status_code == 200
    assert client.get("/v1/sources").status_code == 401


_INVALID = {
    "source without source_seq": ({"source": "s"}, "context"),
    "source_seq without source": ({"source_seq": 0}, "context"),
    "negative source_seq": ({"source": "s", "source_seq": -1}, "context.source_seq"),
    "source_seq past 2**53-1": ({"source": "s", "source_seq": 2**53}, "context.source_seq"),
    "source_seq as a string": ({"source": "s", "source_seq": "1"}, "context.source_seq"),
    "source_seq as a float": ({"source": "s", "source_seq": 1.5}, "context.source_seq"),
    "source_seq as a boolean": ({"source": "s", "source_seq": True}, "context.source_seq"),
    "space in source": ({"source": "web 1", "source_seq": 0}, "context.source"),
    "slash in source": ({"source": "web/1", "source_seq": 0}, "context.source"),
    "empty source": ({"source": "", "source_seq": 0}, "context.source"),
    "source of 129 characters": ({"source": "s" * 129, "source_seq": 0}, "context.source"),
    "newline after source": ({"source": "s\n", "source_seq": 0}, "context.source"),
}


@pytest.mark.parametrize(("context", "path"), _INVALID.values(), ids=_INVALID.keys())
def test_invalid_numbering_is_refused(client, tenant, context, path):
    r = client.post("/v1/events", json=an_event(context=context), headers=tenant.auth())
    assert r.status_code == 422, r.text
    assert path in [e["path"] for e in r.json()["errors"]], r.json()


def test_the_widest_valid_numbering_is_accepted(client, tenant):
    source = "A-z0.9_:" + "x" * 120
    _send(client, tenant, source, [2**53 - 1])
    found = _one(client, tenant, source)
    assert (found["high_water"], found["max_seen"], found["gaps"]) == (
        -1, 2**53 - 1, [[0, 2**53 - 2]]
    )


def test_a_bad_source_filter_is_refused(client, tenant):
    r = client.get("/v1/sources", params={"source": "a b"}, headers=tenant.auth("admin"))
    assert r.status_code == 422, r.text


def test_past_the_cap_the_lowest_gaps_are_written_off(client, tenant):
    # Every odd number: each is a run of its own, two more than the sequencer keeps.
    odd = [2 * k + 1 for k in range(MAX_RUNS + 2)]
    for start in range(0, len(odd), 1000):
        _send(client, tenant, "leaky", odd[start : start + 1000])
    found = _one(client, tenant, "leaky")
    assert (found["high_water"], found["max_seen"]) == (3, odd[-1])
    assert found["written_off"] == 2  # 0 and 2, no longer listed but still missing
    assert found["missing"] == MAX_RUNS + 2
    assert found["gaps"][:2] == [[4, 4], [6, 6]] and len(found["gaps"]) == 100
