"""GET /v1/targets/{type}/{id}/timeline and /state: a target's events, paged like
/v1/events, and its fields as of a moment, rebuilt from the changes of its events."""

from __future__ import annotations

import secrets
from urllib.parse import quote

import pytest

from tests.support import Tenant, an_event


def _change(occurred_at: str, action: str, changes: dict, target_id: str = "u_7",
            **extra: object) -> dict:
    return an_event(occurred_at=occurred_at, action=action, changes=changes,
                    actor={"type": "user", "id": "admin_1", "name": "Ada Admin"},
                    target={"type": "user", "id": target_id, "name": "Uma"}, **extra)


def _post(client, tenant: Tenant, events: list[dict]) -> list[dict]:
    r = client.post("/v1/events?wait=sequenced", json={"events": events}, headers=tenant.auth())
    assert r.status_code == 201, r.text
    seqs = {s["id"]: s["seq"] for s in r.json()["sequenced"]}
    return [dict(e, seq=seqs[e["id"]]) for e in events]


def _history() -> list[dict]:
    return [
        _change("2026-03-01T10:00:00Z", "user.created", {
            "permissions": {"before": None, "after": ["read"]},
            "email": {"before": None, "after": "uma@example.com"}}),
        _change("2026-03-05T08:00:00Z", "user.permissions.updated", {
            "permissions": {"before": ["read"], "after": ["read", "write"]}}),
        _change("2026-03-06T12:00:00Z", "user.profile.updated", {
            "phone": {"before": None, "after": "+44 20 7946 0000"}}),
        _change("2026-03-08T07:00:00Z", "user.login.succeeded", {}),
        _change("2026-03-12T14:30:00Z", "user.permissions.updated", {
            "permissions": {"before": ["read", "write"], "after": ["read", "write", "admin"]},
            "phone": {"before": "+44 20 7946 0000", "after": None}}),
    ]


@pytest.fixture
def history(client, tenant) -> tuple[Tenant, list[dict]]:
    events = _history()
    # Sent newest first: the replay follows occurred_at, not the order of arrival.
    posted = _post(client, tenant, list(reversed(events)))
    return tenant, list(reversed(posted))


def _state(client, tenant: Tenant, at: str | None = None, target: str = "user/u_7"):
    params = {"at": at} if at else {}
    return client.get(f"/v1/targets/{target}/state", params=params, headers=tenant.auth("read"))


def test_permissions_before_the_change_on_march_12th(client, history):
    tenant, events = history
    r = _state(client, tenant, "2026-03-12T14:29:59.999Z")
    assert r.status_code == 200, r.text
    assert r.json() == {
        "target": {"type": "user", "id": "u_7"},
        "at": "2026-03-12T14:29:59.999Z",
        "fields": {"email": "uma@example.com", "permissions": ["read", "write"],
                   "phone": "+44 20 7946 0000"},
        "seq": events[2]["seq"],  # the login changed nothing, so it is not counted
        "events": 3,
    }


def test_the_moment_itself_counts_and_a_null_after_removes_the_field(client, history):
    tenant, events = history
    body = _state(client, tenant, "2026-03-12T15:30:00+01:00").json()
    assert body["at"] == "2026-03-12T14:30:00.000Z"
    assert body["fields"] == {"email": "uma@example.com",
                              "permissions": ["read", "write", "admin"]}
    assert (body["seq"], body["events"]) == (events[4]["seq"], 4)
    assert _state(client, tenant).json()["fields"] == body["fields"]  # at defaults to now


def test_before_the_first_event_there_is_nothing_yet(client, history):
    tenant, _ = history
    r = _state(client, tenant, "2026-02-01T00:00:00Z")
    assert r.status_code == 200
    assert r.json()["fields"] == {} and r.json()["seq"] is None and r.json()["events"] == 0


def test_events_at_the_same_moment_replay_in_seq_order(client, tenant):
    same = "2026-04-01T00:00:00Z"
    events = _post(client, tenant, [
        _change(same, "user.role.updated", {"role": {"before": None, "after": "viewer"}}),
        _change(same, "user.role.updated", {"role": {"before": "viewer", "after": "editor"}}),
    ])
    body = _state(client, tenant, same).json()
    assert body["fields"] == {"role": "editor"}
    assert body["seq"] == events[1]["seq"]


def _timeline(client, tenant: Tenant, target: str = "user/u_7", **params):
    return client.get(f"/v1/targets/{target}/timeline", params=params,
                      headers=tenant.auth("read"))


def test_timeline_pages_in_both_orders(client, history):
    tenant, events = history
    for order, expected in (("desc", list(reversed(events))), ("asc", events)):
        seen, cursor = [], None
        while True:
            params = {"order": order, "limit": 2, **({"cursor": cursor} if cursor else {})}
            r = _timeline(client, tenant, **params)
            assert r.status_code == 200, r.text
            seen += [e["id"] for e in r.json()["events"]]
            cursor = r.json()["next_cursor"]
            if cursor is None:
                break
        assert seen == [e["id"] for e in expected]
    window = _timeline(client, tenant, since="2026-03-05T08:00:00Z", until="2026-03-08T07:00:00Z")
    assert [e["id"] for e in window.json()["events"]] == [events[2]["id"], events[1]["id"]]
    empty = _timeline(client, tenant, since="2027-01-01T00:00:00Z")
    assert empty.status_code == 200 and empty.json() == {"events": [], "next_cursor": None}


def test_a_timeline_is_the_query_with_the_target_fixed(client, history):
    tenant, _ = history
    first = _timeline(client, tenant, limit=2).json()
    same = client.get("/v1/events", headers=tenant.auth("read"), params={
        "target_type": "user", "target_id": "u_7", "limit": 2, "cursor": first["next_cursor"]})
    rest = _timeline(client, tenant, limit=2, cursor=first["next_cursor"])
    assert same.status_code == 200
    assert same.json() == rest.json()
    # ... and a cursor of another target is refused.
    other = _timeline(client, tenant, target="user/u_8", cursor=first["next_cursor"])
    assert other.status_code == 422


def test_ids_with_slashes_and_odd_characters(client, tenant):
    target_id = "org/acme/repo #1?x=%"
    event = an_event(target={"type": "repo", "id": target_id},
                     changes={"visibility": {"before": "private", "after": "public"}})
    _post(client, tenant, [event])
    path = f"repo/{quote(target_id, safe='')}"
    timeline = _timeline(client, tenant, target=path)
    assert [e["id"] for e in timeline.json()["events"]] == [event["id"]]
    state = _state(client, tenant, target=path).json()
    assert state["target"] == {"type": "repo", "id": target_id}
    assert state["fields"] == {"visibility": "public"}


def _not_found(response) -> dict:
    assert response.status_code == 404, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    body.pop("instance")
    return body


def test_another_tenants_target_is_exactly_a_missing_one(client, history, other_tenant):
    tenant, _ = history
    answers = []
    for target in ("user/u_7", "user/u_nobody", "no%20such%20type/x", "user/" + "x" * 300):
        answers.append(_not_found(_timeline(client, other_tenant, target=target)))
        answers.append(_not_found(_state(client, other_tenant, target=target)))
    assert all(a == answers[0] for a in answers), answers
    assert answers[0] == {"type": "https://trailseal.dev/problems/not-found",
                          "title": "Not found", "status": 404, "detail": "no such target"}
    assert _timeline(client, tenant).status_code == 200  # it is there for its own tenant


@pytest.mark.parametrize(
    ("endpoint", "params"),
    [
        ("state", {"at": "March 12th"}),
        ("state", {"at": "2026-03-12T09:00:00"}),
        ("timeline", {"limit": 0}),
        ("timeline", {"order": "up"}),
        ("timeline", {"since": "2026-13-01T00:00:00Z"}),
        ("timeline", {"cursor": "x"}),
    ],
)
def test_bad_parameters_are_422(client, history, endpoint, params):
    tenant, _ = history
    r = client.get(f"/v1/targets/user/u_7/{endpoint}", params=params, headers=tenant.auth("read"))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"


def test_reads_are_meta_audited_with_their_counts(client, history):
    tenant, _ = history
    assert len(_timeline(client, tenant, limit=3).json()["events"]) == 3
    assert _state(client, tenant, "2026-03-06T12:00:00Z").json()["events"] == 3
    # Sequenced after both records were in the inbox, so they are in the log now.
    _post(client, tenant, [an_event()])
    r = client.get("/v1/events", params={"action": "audit.target.*", "order": "asc"},
                   headers=tenant.auth("read"))
    records = r.json()["events"]
    assert [e["action"] for e in records] == ["audit.target.timeline_read",
                                              "audit.target.state_read"]
    timeline, state = records
    assert timeline["metadata"]["count"] == 3
    assert timeline["metadata"]["filters"] == {"target_type": "user", "target_id": "u_7"}
    assert state["metadata"]["count"] == 3
    assert state["metadata"]["filters"] == {
        "target_type": "user", "target_id": "u_7", "at": "2026-03-06T12:00:00+00:00"}
    assert {e["target"]["id"] for e in records} == {"u_7"}
    # The records do not make the target's own timeline longer, nor a new target exist.
    assert len(_timeline(client, tenant, limit=100).json()["events"]) == 5
    fresh = f"u_{secrets.token_hex(3)}"
    assert _timeline(client, tenant, target=f"user/{fresh}").status_code == 404
    _post(client, tenant, [an_event()])
    assert _timeline(client, tenant, target=f"user/{fresh}").status_code == 404
