"""Liveness, readiness, and the alerts of the logging itself."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="The service can take traffic; alerts of the logging itself")
async def readyz(
    request: Request,
    strict: Annotated[bool, Query(
        description="Answer 503 while any alert holds, not only when the database is "
        "unusable (for monitors; leave load balancers on the default).")] = False,
) -> Any:
    """Ready when the database answers and its schema is this version's. ``alerts``
    names each condition of docs/operations.md with the number of tenants it holds for
    (never their names); while one holds the status is ``degraded``, still 200 unless
    ``strict`` is asked for, since events are still accepted safely."""
    checks: dict[str, str] = {}
    fired: dict[str, int] = {}
    try:
        async with request.app.state.pool.connection(timeout=2) as conn:
            cur = await conn.execute("SELECT max(version) FROM trailseal.schema_migrations")
            row = await cur.fetchone()
        checks["database"] = "ok"
        checks["schema"] = "ok" if row and row[0] == request.app.state.schema_version else "stale"
        if checks["schema"] == "ok":
            metrics = request.app.state.metrics
            health = await metrics.reader.get()
            fired = {name: len(tenants) for name, tenants in metrics.alerts(health).items()}
    except Exception as exc:  # any failure to reach the database means "not ready"
        checks["database"] = f"unavailable: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    alerting = any(fired.values())
    status = "not ready" if not ready else "degraded" if alerting else "ready"
    code = 200 if ready and not (strict and alerting) else 503
    return JSONResponse({"status": status, "checks": checks, "alerts": fired}, code)
