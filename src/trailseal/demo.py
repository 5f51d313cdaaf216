"""Demo data for ``trailseal serve --demo``: a tenant, a key, and two weeks of a small
company's audit trail, varied enough that the console and the API are worth exploring
on first run.

The cast: Alice (an admin, office network), Bob (an engineer, from home), Carol (support),
Dave (a contractor whose account is attacked from one network), the billing,
provisioning and notification services, a CI deploy key, and the system's retention job.
It holds the questions an auditor asks first: changes to a user, who changed a setting
and when, failed logins from an address range, data exports people made, and one
correlated action that crosses four services (a plan upgrade).

:func:`events` is a pure function of the moment it is given, so the same moment gives
the same events (the ids are left to the server).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection

from trailseal import ingest
from trailseal.tenants import SCOPES, NewKey, create_key, create_tenant

TENANT = "demo"

ALICE = {"type": "user", "id": "u_1001", "name": "Alice Admin"}
BOB = {"type": "user", "id": "u_2002", "name": "Bob Builder"}
CAROL = {"type": "user", "id": "u_3003", "name": "Carol Chen"}
DAVE = {"type": "user", "id": "u_4004", "name": "Dave Diaz"}
BILLING = {"type": "service", "id": "billing", "name": "Billing"}
PROVISIONING = {"type": "service", "id": "provisioning", "name": "Provisioning"}
NOTIFIER = {"type": "service", "id": "notifier", "name": "Notifications"}
DEPLOY_KEY = {"type": "api_key", "id": "key_ci_deploy", "name": "CI deploy"}
SYSTEM = {"type": "system", "id": "retention", "name": "Retention job"}

_BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/124.0 Safari/537.36"
_ATTACKER = "python-requests/2.31"


def events(now: datetime) -> list[dict[str, Any]]:
    """The demo events, timed in the two weeks before ``now`` (oldest first)."""

    def at(days: float, hour: int = 0, minute: int = 0) -> str:
        moment = (now - timedelta(days=days)).replace(hour=hour, minute=minute, second=0,
                                                      microsecond=0)
        moment = min(moment, now - timedelta(minutes=1))
        return moment.isoformat().replace("+00:00", "Z")

    office = {"ip": "203.0.113.7", "user_agent": _BROWSER, "service": "web",
              "region": "eu-west-1"}
    carol_desk = {"ip": "203.0.113.12", "user_agent": _BROWSER, "service": "web",
                  "region": "eu-west-1"}
    home = {"ip": "198.51.100.23", "user_agent": _BROWSER, "service": "web",
            "region": "eu-west-1"}
    v6 = {"ip": "2001:db8:5::17", "user_agent": _BROWSER, "service": "web",
          "region": "us-east-1"}

    def ctx(base: dict[str, str], n: int, session: str) -> dict[str, str]:
        return {**base, "request_id": f"req_{n:04x}", "session_id": session}

    found: list[dict[str, Any]] = [
        {"occurred_at": at(13, 8, 2), "actor": ALICE, "action": "auth.login.succeeded",
         "target": ALICE, "context": ctx(office, 0x1a01, "sess_a1")},
        {"occurred_at": at(13, 8, 9), "actor": ALICE, "action": "user.created",
         "target": DAVE, "context": ctx(office, 0x1a02, "sess_a1"),
         "changes": {"email": {"before": None, "after": "dave@contractor.example"},
                     "role": {"before": None, "after": "viewer"}}},
        {"occurred_at": at(13, 8, 15), "actor": ALICE, "action": "setting.updated",
         "target": {"type": "setting", "id": "mfa.required", "name": "Require MFA"},
         "context": ctx(office, 0x1a03, "sess_a1"),
         "changes": {"value": {"before": False, "after": True}}},
        {"occurred_at": at(12, 9, 30), "actor": BOB, "action": "auth.login.succeeded",
         "target": BOB, "context": ctx(home, 0x2b01, "sess_b1")},
        {"occurred_at": at(12, 9, 41), "actor": BOB, "action": "document.viewed",
         "target": {"type": "document", "id": "doc_311", "name": "Q3 pricing plan"},
         "context": ctx(home, 0x2b02, "sess_b1")},
        {"occurred_at": at(11, 14, 5), "actor": ALICE, "action": "user.role.updated",
         "target": BOB, "context": ctx(office, 0x1a10, "sess_a2"),
         "changes": {"role": {"before": "viewer", "after": "editor"}},
         "metadata": {"ticket": "OPS-412", "reason": "joins the pricing project"}},
        {"occurred_at": at(10, 10, 0), "actor": BOB, "action": "data.export.created",
         "target": {"type": "export", "id": "exp_9001", "name": "customers.csv"},
         "context": ctx(home, 0x2b10, "sess_b2"),
         "metadata": {"format": "csv", "rows": 1200, "table": "customers"}},
        {"occurred_at": at(10, 10, 2), "actor": BOB, "action": "data.export.downloaded",
         "target": {"type": "export", "id": "exp_9001", "name": "customers.csv"},
         "context": ctx(home, 0x2b11, "sess_b2")},
        {"occurred_at": at(9, 16, 20), "actor": CAROL, "action": "auth.login.succeeded",
         "target": CAROL, "context": ctx(carol_desk, 0x3c01, "sess_c1")},
        {"occurred_at": at(9, 16, 31), "actor": CAROL, "action": "user.profile.updated",
         "target": DAVE, "context": ctx(carol_desk, 0x3c02, "sess_c1"),
         "changes": {"email": {"before": "dave@contractor.example",
                               "after": "dave.diaz@contractor.example"},
                     "phone": {"before": None, "after": "+44 20 7946 0958"},
                     "nickname": {"before": "dd", "after": None}},
         "metadata": {"ticket": "SUP-88"}},
        {"occurred_at": at(8, 11, 0), "actor": DEPLOY_KEY, "action": "deploy.release.created",
         "target": {"type": "release", "id": "v2.14.0", "name": "api v2.14.0"},
         "context": {"ip": "192.0.2.200", "service": "ci", "request_id": "req_ci77"},
         "metadata": {"commit": "4f9c2e1", "environment": "production"}},
    ]
    # Someone tries Dave's password from one network, then gets locked out.
    for n, minute in enumerate((3, 4, 4, 5, 6)):
        found.append({
            "occurred_at": at(7, 2, minute), "actor": DAVE,
            "action": "auth.login.failed", "target": DAVE,
            "context": {"ip": f"192.0.2.{44 + n % 2}", "user_agent": _ATTACKER,
                        "service": "web", "request_id": f"req_ff{n:02x}"},
            "outcome": {"status": "failure", "error_code": "bad_password",
                        "reason": "password did not match"},
        })
    found += [
        {"occurred_at": at(7, 2, 7), "actor": SYSTEM, "action": "user.locked",
         "target": DAVE, "context": {"service": "auth"},
         "changes": {"locked": {"before": False, "after": True}},
         "metadata": {"failed_attempts": 5, "window_minutes": 5}},
        {"occurred_at": at(6, 9, 12), "actor": CAROL, "action": "user.unlocked",
         "target": DAVE, "context": ctx(carol_desk, 0x3c10, "sess_c2"),
         "changes": {"locked": {"before": True, "after": False}},
         "metadata": {"ticket": "SUP-91", "verified_by": "phone call"}},
        {"occurred_at": at(5, 15, 45), "actor": BOB, "action": "document.deleted",
         "target": {"type": "document", "id": "doc_204", "name": "Vendor contract 2024"},
         "context": ctx(v6, 0x2b20, "sess_b3"),
         "outcome": {"status": "failure", "error_code": "permission_denied",
                     "reason": "editors cannot delete signed contracts"}},
        {"occurred_at": at(5, 16, 0), "actor": CAROL, "action": "data.export.created",
         "target": {"type": "export", "id": "exp_9002", "name": "tickets.ndjson"},
         "context": ctx(carol_desk, 0x3c20, "sess_c3"),
         "outcome": {"status": "failure", "error_code": "quota_exceeded",
                     "reason": "export limit of 5 per day reached"}},
        {"occurred_at": at(4, 12, 0), "actor": ALICE, "action": "setting.updated",
         "target": {"type": "setting", "id": "sso.enforced", "name": "Enforce SSO"},
         "context": ctx(office, 0x1a20, "sess_a3"),
         "changes": {"value": {"before": False, "after": True},
                     "exempt": {"before": None, "after": ["u_1001"]}}},
    ]
    # One action across four services: Carol upgrades the plan; billing, provisioning and
    # notifications follow, all under one correlation id.
    upgrade = "corr_7f3a9c"
    found += [
        {"occurred_at": at(3, 10, 15), "actor": CAROL, "action": "setting.updated",
         "target": {"type": "setting", "id": "billing.plan", "name": "Billing plan"},
         "context": {**ctx(carol_desk, 0x3c30, "sess_c4"), "correlation_id": upgrade},
         "changes": {"value": {"before": "team", "after": "business"},
                     "seats": {"before": 10, "after": 50}},
         "metadata": {"approved_by": "u_1001"}},
        {"occurred_at": at(3, 10, 15), "actor": BILLING, "action": "invoice.created",
         "target": {"type": "invoice", "id": "inv_2291", "name": "Pro-rata upgrade"},
         "context": {"service": "billing", "region": "eu-west-1", "correlation_id": upgrade,
                     "request_id": "req_b1ll"},
         "metadata": {"amount_cents": 48000, "currency": "EUR"}},
        {"occurred_at": at(3, 10, 16), "actor": PROVISIONING,
         "action": "organization.quota.updated",
         "target": {"type": "organization", "id": "org_1", "name": "Acme"},
         "context": {"service": "provisioning", "region": "eu-west-1",
                     "correlation_id": upgrade, "request_id": "req_pr0v"},
         "changes": {"max_seats": {"before": 10, "after": 50},
                     "storage_gb": {"before": 100, "after": 1000}}},
        {"occurred_at": at(3, 10, 17), "actor": NOTIFIER, "action": "email.sent",
         "target": ALICE,
         "context": {"service": "notifier", "correlation_id": upgrade, "request_id": "req_n0t1"},
         "metadata": {"template": "plan_upgraded"}},
        {"occurred_at": at(2, 9, 5), "actor": BOB, "action": "auth.login.succeeded",
         "target": BOB, "context": ctx(v6, 0x2b30, "sess_b4")},
        {"occurred_at": at(2, 9, 20), "actor": BOB, "action": "data.export.created",
         "target": {"type": "export", "id": "exp_9003", "name": "invoices.json"},
         "context": ctx(v6, 0x2b31, "sess_b4"),
         "metadata": {"format": "json", "rows": 310, "table": "invoices"}},
        {"occurred_at": at(1, 3, 0), "actor": SYSTEM, "action": "retention.policy.applied",
         "target": {"type": "organization", "id": "org_1", "name": "Acme"},
         "context": {"service": "retention"},
         "metadata": {"policy": "SOC 2, 1 year", "segments_sealed": 4}},
        {"occurred_at": at(0.5, 8, 58), "actor": ALICE, "action": "user.role.updated",
         "target": DAVE, "context": ctx(office, 0x1a30, "sess_a4"),
         "changes": {"role": {"before": "viewer", "after": "editor"},
                     "expires_at": {"before": None, "after": "2026-12-31"}},
         "metadata": {"ticket": "OPS-430"}},
        {"occurred_at": at(0, 0, 0), "actor": BILLING, "action": "invoice.paid",
         "target": {"type": "invoice", "id": "inv_2291", "name": "Pro-rata upgrade"},
         "context": {"service": "billing", "region": "eu-west-1"},
         "changes": {"status": {"before": "open", "after": "paid"}}},
    ]
    return sorted(found, key=lambda e: e["occurred_at"])


async def seed(conn: AsyncConnection, *, now: datetime | None = None) -> NewKey:
    """Create the demo tenant and its events the first time, and a fresh all-scopes key
    every time."""
    created = await create_tenant(conn, TENANT)
    key = await create_key(conn, TENANT, SCOPES, name="demo")
    if created:
        received_at = ingest.now()
        prepared = ingest.prepare(events(now or received_at), TENANT, received_at)
        await ingest.write_inbox(conn, TENANT, prepared, received_at)
    return key
