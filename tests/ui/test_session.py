"""Console sessions without a browser: the sign-in flow and its cookies, CSRF on every
POST, revocation, security headers, static files, reads meta-audited like the API's."""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid

import httpx
import psycopg
import pytest
from starlette.requests import Request

from tests.support import Tenant, make_tenant, run
from tests.ui.conftest import Seeded, sign_in_cookies
from trailseal.tenants import revoke_key
from trailseal.web import sessions
from trailseal.web.console import CSP, diff_rows, static_files
from trailseal.web.ui import _safe_next

STATIC = "/ui/static"


def _key_id(database_url: str, tenant: Tenant, name: str) -> uuid.UUID:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("SELECT id FROM trailseal.api_keys WHERE tenant = %s AND name = %s",
                           (tenant.name, name)).fetchone()
    assert row is not None
    return row[0]


def _csrf(page: httpx.Response) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, page.text
    return match[1]


def test_pages_carry_the_security_headers(service_url):
    r = httpx.get(f"{service_url}/ui/sign-in")
    assert r.status_code == 200
    assert r.headers["content-security-policy"] == CSP
    assert "script-src 'self'" in CSP and "frame-ancestors 'none'" in CSP
    assert "unsafe-inline" not in CSP and "unsafe-eval" not in CSP
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["cache-control"] == "no-store"
    # No inline script or style anywhere: everything comes from /ui/static.
    assert not re.search(r"<script(?![^>]*\bsrc=)", r.text)
    assert "<style" not in r.text and " style=" not in r.text
    assert not re.search(r"<[^>]*\son[a-z]+\s*=", r.text)  # no inline event handlers


def test_signing_in_sets_a_session_cookie_that_does_not_hold_the_token(service_url, tenant):
    client = httpx.Client(base_url=service_url, timeout=30)
    form = client.get("/ui/sign-in")
    pre = form.headers["set-cookie"]
    assert "HttpOnly" in pre and "SameSite=strict" in pre and "Path=/ui" in pre
    r = client.post("/ui/sign-in", data={"token": tenant.tokens["read"],
                                         "csrf_token": _csrf(form), "next": "/ui/log"})
    assert r.status_code == 303 and r.headers["location"] == "/ui/log"
    cookie = next(c for c in r.headers.get_list("set-cookie")
                  if c.startswith(sessions.COOKIE + "="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    assert "Max-Age=28800" in cookie  # TRAILSEAL_CONSOLE_SESSION_HOURS, 8 by default
    assert "Secure" not in cookie  # plain HTTP here, and no proxy is trusted
    assert tenant.tokens["read"] not in cookie
    assert tenant.tokens["read"][4:20] not in cookie
    assert client.get("/ui/log").status_code == 200


def test_every_post_needs_its_csrf_token(service_url, tenant):
    anonymous = httpx.Client(base_url=service_url, timeout=30)
    form = anonymous.get("/ui/sign-in")
    for data in ({"token": tenant.token}, {"token": tenant.token, "csrf_token": "forged"}):
        r = anonymous.post("/ui/sign-in", data=data)
        assert r.status_code == 403, r.text
        assert sessions.COOKIE not in r.headers.get("set-cookie", "")
    # A token from another browser's form (another nonce) does not do either.
    other = httpx.get(f"{service_url}/ui/sign-in")
    r = anonymous.post("/ui/sign-in", data={"token": tenant.token, "csrf_token": _csrf(other)})
    assert r.status_code == 403
    assert anonymous.post("/ui/sign-in", data={"token": tenant.token,
                                               "csrf_token": _csrf(form)}).status_code == 303

    signed_in = sign_in_cookies(service_url, tenant.token)
    assert signed_in.post("/ui/sign-out").status_code == 403
    assert signed_in.post("/ui/sign-out", data={"csrf_token": "x"}).status_code == 403
    assert signed_in.get("/ui/").status_code == 200  # still signed in
    page = signed_in.get("/ui/")
    token = re.search(r'"X-CSRF-Token": "([^"]+)"', page.text)
    assert token
    r = signed_in.post("/ui/sign-out", headers={"X-CSRF-Token": token[1]})
    assert r.status_code == 303 and r.headers["location"] == "/ui/sign-in?ended=signed-out"
    assert r.headers["clear-site-data"] == '"cache"'
    assert signed_in.get("/ui/").status_code == 303


def test_bad_keys_are_refused_at_sign_in(service_url, tenant):
    client = httpx.Client(base_url=service_url, timeout=30)
    for token, status, message in [
        ("tsk_" + "x" * 43, 401, "unknown or revoked"),
        (tenant.tokens["ingest"], 403, "lacks the read scope"),
    ]:
        r = client.post("/ui/sign-in", data={"token": token,
                                             "csrf_token": _csrf(client.get("/ui/sign-in"))})
        assert r.status_code == status
        assert message in r.text


def test_revoking_the_key_ends_its_sessions(service_url, database_url):
    tenant = make_tenant(database_url, "rv")
    client = sign_in_cookies(service_url, tenant.tokens["read"])
    assert client.get("/ui/").status_code == 200

    async def revoke() -> None:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            await revoke_key(conn, tenant.name, _key_id(database_url, tenant, "read"))

    run(revoke())
    r = client.get("/ui/?q=anything")
    assert r.status_code == 303
    assert r.headers["location"] == "/ui/sign-in?next=%2Fui%2F%3Fq%3Danything&ended=revoked"


def test_a_forged_or_expired_cookie_is_no_session(service_url, tenant, settings):
    key = b"k" * 32
    session = sessions.new_session(tenant.name, uuid.uuid4(), 60)
    value = sessions.seal(key, session)
    assert sessions.unseal(key, value) == session
    assert sessions.unseal(b"j" * 32, value) is None
    assert sessions.unseal(key, value[:-2] + ("A" if value[-2] != "A" else "B") + value[-1]) is None
    assert sessions.unseal(key, value, now=time.time() + 61) is None
    assert sessions.unseal(key, "not-a-cookie") is None
    # Signed with another key than the service's: the service refuses it.
    r = httpx.get(f"{service_url}/ui/", cookies={sessions.COOKIE: value})
    assert r.status_code == 303
    assert "ended=expired" in r.headers["location"]


def _request(headers: dict[str, str], scheme: str = "http") -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "GET", "path": "/ui/", "headers": raw,
                    "scheme": scheme, "server": ("audit.example", 443), "query_string": b""})


def test_secure_cookies_follow_https_and_trust_a_proxy_only_when_told():
    forwarded = _request({"X-Forwarded-Proto": "https"})
    assert not sessions.is_https(forwarded, behind_proxy=False)
    assert sessions.is_https(forwarded, behind_proxy=True)
    assert sessions.is_https(_request({}, "https"), behind_proxy=False)
    assert not sessions.is_https(_request({"X-Forwarded-Proto": "http"}, "https"),
                                 behind_proxy=True)


def test_after_sign_in_the_console_goes_to_console_paths_only():
    assert _safe_next("/ui/events/x?y=1") == "/ui/events/x?y=1"
    for bad in ("https://evil.example/", "//evil.example/ui/", "/v1/events", "/ui\\evil",
                None, ""):
        assert _safe_next(bad) == "/ui/"


def test_static_files_are_served_from_the_package_with_a_long_cache(service_url):
    digest, data = static_files()["verify.js"]
    r = httpx.get(f"{service_url}{STATIC}/{digest}/verify.js")
    assert r.status_code == 200 and r.content == data
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert r.headers["content-type"].startswith("text/javascript")
    assert httpx.get(f"{service_url}{STATIC}/{'0' * 16}/verify.js").status_code == 404
    assert httpx.get(f"{service_url}{STATIC}/{digest}/app.py").status_code == 404
    assert digest == hashlib.sha256(data).hexdigest()[:16]


def test_console_reads_are_meta_audited_as_the_apis(service_url, database_url, acme: Seeded):
    client = sign_in_cookies(service_url, acme.tenant.tokens["read"])
    event_id = acme.first("user.role.updated", "u_2002")
    assert client.get("/ui/?action=auth.login.failed&outcome=failure").status_code == 200
    assert client.get(f"/ui/events/{event_id}").status_code == 200
    assert client.get(f"/ui/events/{event_id}/receipt").status_code == 200
    assert client.get("/ui/targets/user/u_4004").status_code == 200
    assert client.get("/ui/state/user/u_4004").status_code == 200
    key = str(_key_id(database_url, acme.tenant, "read"))
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT canonical FROM trailseal.inbox WHERE tenant = %s AND action LIKE 'audit.%%'"
            " UNION ALL SELECT canonical FROM trailseal.events WHERE tenant = %s"
            " AND action LIKE 'audit.%%'", (acme.tenant.name, acme.tenant.name)).fetchall()
    mine = [json.loads(bytes(r[0])) for r in rows]
    # (Per-request records; the key's per-minute log-read tallies carry no filters.)
    mine = [e for e in mine if e["actor"]["id"] == key and "filters" in e["metadata"]]
    seen = {(e["action"], json.dumps(e["metadata"]["filters"], sort_keys=True)) for e in mine}
    assert ("audit.events.queried", json.dumps(
        {"action": ["auth.login.failed"], "outcome": "failure"}, sort_keys=True)) in seen
    assert ("audit.events.read", json.dumps({"id": event_id})) in seen
    assert ("audit.events.receipt_read", json.dumps({"id": event_id})) in seen
    actions = {e["action"] for e in mine}
    assert {"audit.target.timeline_read", "audit.target.state_read"} <= actions
    timeline = next(e for e in mine if e["action"] == "audit.target.timeline_read")
    assert timeline["target"] == {"type": "user", "id": "u_4004"}


def test_a_receipt_from_the_console_is_the_apis(service_url, acme: Seeded):
    client = sign_in_cookies(service_url, acme.tenant.tokens["read"])
    event_id = acme.first("user.role.updated", "u_2002")
    mine = client.get(f"/ui/events/{event_id}/receipt").json()
    api = httpx.get(f"{service_url}/v1/events/{event_id}/receipt",
                    headers=acme.tenant.auth("read")).json()
    assert mine["event"] == api["event"]
    assert mine["inclusion_proof"]["index"] == api["inclusion_proof"]["index"]


@pytest.mark.parametrize(("path", "scope"), [("/ui/export", "export"), ("/ui/meta", "admin")])
def test_pages_need_their_scope(service_url, tenant, path, scope):
    reader = sign_in_cookies(service_url, tenant.tokens["read"])
    r = reader.get(path)
    assert r.status_code == 403
    assert f"needs a key with the {scope!r} scope" in r.text.replace("&#39;", "'")
    assert sign_in_cookies(service_url, tenant.token).get(path).status_code == 200


def test_invalid_filters_are_shown_on_the_form(service_url, tenant):
    client = sign_in_cookies(service_url, tenant.token)
    r = client.get("/ui/?ip=not-an-address")
    assert r.status_code == 422
    assert 'id="f-ip"' in r.text and 'aria-invalid="true"' in r.text
    assert "is not an IP address" in r.text


def test_empty_fields_are_left_out_of_the_url(service_url, tenant):
    client = sign_in_cookies(service_url, tenant.token)
    r = client.get("/ui/?q=&actor_id=u_1&outcome=&range=")
    assert r.status_code == 303 and r.headers["location"] == "/ui/?actor_id=u_1"


def test_the_diff_tells_added_removed_and_changed_fields():
    rows = diff_rows({
        "email": {"before": "a@x", "after": "b@x"},
        "phone": {"before": None, "after": "+1"},
        "nickname": {"before": "dd", "after": None},
        "plan": {"after": {"seats": 5}},
        "same": {"before": 1, "after": 1},
    })
    assert [(r.field, r.kind) for r in rows] == [
        ("email", "changed"), ("nickname", "removed"), ("phone", "added"),
        ("plan", "added"), ("same", "unchanged"),
    ]
    assert rows[3].after == '{\n  "seats": 5\n}'
