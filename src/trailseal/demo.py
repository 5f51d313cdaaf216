"""Demo data for ``trailseal serve --demo``: a tenant, a key and a few realistic events."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from psycopg import AsyncConnection

from trailseal import ingest
from trailseal.tenants import SCOPES, NewKey, create_key, create_tenant

TENANT = "demo"


def _events() -> list[dict[str, Any]]:
    at = ingest.now()

    def when(minutes: int) -> str:
        return (at - timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")

    alice = {"type": "user", "id": "u_1001", "name": "Alice Admin"}
    web = {"ip": "203.0.113.7", "user_agent": "Mozilla/5.0", "service": "web",
           "request_id": "req_8f2c", "session_id": "sess_41"}
    return [
        {"occurred_at": when(50), "actor": alice, "action": "user.login.succeeded",
         "target": {"type": "user", "id": "u_1001", "name": "Alice Admin"}, "context": web},
        {"occurred_at": when(45), "actor": {"type": "user", "id": "u_2002"},
         "action": "user.login.failed", "target": {"type": "user", "id": "u_2002"},
         "context": {"ip": "198.51.100.23", "service": "web"},
         "outcome": {"status": "failure", "error_code": "bad_password",
                     "reason": "password did not match"}},
        {"occurred_at": when(30), "actor": alice, "action": "user.role.updated",
         "target": {"type": "user", "id": "u_2002", "name": "Bob Builder"},
         "changes": {"role": {"before": "viewer", "after": "editor"}},
         "context": {**web, "correlation_id": "corr_51aa"}},
        {"occurred_at": when(20), "actor": alice, "action": "settings.updated",
         "target": {"type": "organization", "id": "org_1", "name": "Acme"},
         "changes": {"mfa_required": {"before": False, "after": True}}, "context": web},
        {"occurred_at": when(10), "actor": {"type": "user", "id": "u_2002", "name": "Bob Builder"},
         "action": "report.exported", "target": {"type": "report", "id": "rpt_q3"},
         "context": {"ip": "198.51.100.23", "service": "web"},
         "metadata": {"format": "csv", "rows": 1200}},
        {"occurred_at": when(5), "actor": {"type": "service", "id": "billing"},
         "action": "invoice.created", "target": {"type": "invoice", "id": "inv_77"},
         "context": {"service": "billing", "region": "eu-west-1"},
         "metadata": {"amount_cents": 4200, "currency": "EUR"}},
    ]


async def seed(conn: AsyncConnection) -> NewKey:
    """Create the demo tenant (if new), a fresh all-scopes key, and the demo events."""
    await create_tenant(conn, TENANT)
    key = await create_key(conn, TENANT, SCOPES, name="demo")
    received_at = ingest.now()
    prepared = ingest.prepare(_events(), TENANT, received_at)
    await ingest.write_inbox(conn, TENANT, prepared, received_at)
    return key
