"""Reads never reveal another tenant: not through a filter, a cursor, an error message,
a count or a target's existence."""

from __future__ import annotations

import pytest

from tests.support import Tenant, an_event

SECRET = {
    "actor": {"type": "service", "id": "svc-secret", "name": "Secret Service"},
    "action": "vault.secret.read",
    "target": {"type": "vault", "id": "v-secret", "name": "Hidden Vault"},
    "context": {"ip": "2001:db8:5ec::1", "service": "vaultd", "request_id": "req-secret",
                "correlation_id": "corr-secret"},
    "occurred_at": "2026-01-02T03:04:05Z",
}


def _post(client, tenant: Tenant, events: list[dict]) -> None:
    r = client.post("/v1/events?wait=sequenced", json={"events": events}, headers=tenant.auth())
    assert r.status_code == 201, r.text


@pytest.fixture
def two(client, tenant, other_tenant) -> tuple[Tenant, Tenant]:
    """``tenant`` has ordinary events; ``other_tenant`` has the secret one too."""
    _post(client, tenant, [an_event() for _ in range(3)])
    _post(client, other_tenant, [an_event(**SECRET), an_event()])
    return tenant, other_tenant


@pytest.mark.parametrize(
    "params",
    [
        {"actor_id": "svc-secret"},
        {"actor_type": "service"},
        {"target_type": "vault", "target_id": "v-secret"},
        {"action": "vault.secret.read"},
        {"action": "vault.*"},
        {"ip": "2001:db8:5ec::/48"},
        {"ip": "::/0"},
        {"service": "vaultd"},
        {"request_id": "req-secret"},
        {"correlation_id": "corr-secret"},
        {"q": "hidden"},
        {"q": "secret"},
        {"since": "2026-01-02T03:04:05Z", "until": "2026-01-02T03:04:06Z"},
        {"include_meta": "true", "action": "vault.*,audit.*"},
    ],
)
def test_filters_that_match_only_another_tenant_find_nothing(client, two, params):
    mine, theirs = two
    r = client.get("/v1/events", params=params, headers=mine.auth("read"))
    assert r.status_code == 200, r.text
    assert r.json() == {"events": [], "next_cursor": None}
    if "include_meta" not in params:  # the owner does find it
        found = client.get("/v1/events", params=params, headers=theirs.auth("read")).json()
        assert [e["action"] for e in found["events"]] == ["vault.secret.read"]


def test_another_tenants_cursor_says_nothing_about_it(client, two):
    mine, theirs = two
    page = client.get("/v1/events", params={"limit": 1}, headers=theirs.auth("read")).json()
    stolen = page["next_cursor"]
    assert stolen
    used = client.get("/v1/events", params={"limit": 1, "cursor": stolen},
                      headers=mine.auth("read"))
    garbage = client.get("/v1/events", params={"limit": 1, "cursor": "AAAA" + stolen[4:]},
                         headers=mine.auth("read"))
    assert used.status_code == garbage.status_code == 422
    # The same answer as a forged cursor, with nothing of the other tenant in it.
    assert used.json() == garbage.json()
    for secret in (theirs.name, SECRET["actor"]["id"], page["events"][0]["id"]):
        assert secret not in used.text
    timeline = client.get("/v1/targets/vault/v-secret/timeline", params={"cursor": stolen},
                          headers=mine.auth("read"))
    assert timeline.status_code == 422 and theirs.name not in timeline.text


def test_another_tenants_target_does_not_exist_here(client, two):
    mine, theirs = two
    for endpoint in ("timeline", "state"):
        path = f"/v1/targets/vault/v-secret/{endpoint}"
        missing = f"/v1/targets/vault/v-nothing/{endpoint}"
        assert client.get(path, headers=theirs.auth("read")).status_code == 200
        a = client.get(path, headers=mine.auth("read"))
        b = client.get(missing, headers=mine.auth("read"))
        assert a.status_code == b.status_code == 404
        assert a.json()["detail"] == b.json()["detail"] == "no such target"
        assert theirs.name not in a.text


def test_pages_and_counts_hold_only_the_own_tenant(client, two):
    mine, theirs = two
    for who, size in ((mine, 3), (theirs, 2)):
        body = client.get("/v1/events", params={"limit": 1000, "include_meta": "true"},
                          headers=who.auth("read")).json()
        own = [e for e in body["events"] if not e["action"].startswith("audit.")]
        assert len(own) == size
        assert {e["tenant"] for e in body["events"]} == {who.name}
    # The meta-audit's count of a read is what this tenant was shown, never more.
    client.get("/v1/events", params={"q": "secret"}, headers=mine.auth("read"))
    _post(client, mine, [an_event()])
    records = client.get("/v1/events", params={"action": "audit.events.queried"},
                         headers=mine.auth("read")).json()["events"]
    searched = [r for r in records if r["metadata"]["filters"] == {"q": "secret"}]
    assert [r["metadata"]["count"] for r in searched] == [0]
