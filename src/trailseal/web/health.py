"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="The service can take traffic")
async def readyz(request: Request) -> Any:
    """Ready when the database answers and its schema is this version's."""
    checks: dict[str, str] = {}
    try:
        async with request.app.state.pool.connection(timeout=2) as conn:
            cur = await conn.execute("SELECT max(version) FROM trailseal.schema_migrations")
            row = await cur.fetchone()
        checks["database"] = "ok"
        checks["schema"] = "ok" if row and row[0] == request.app.state.schema_version else "stale"
    except Exception as exc:  # any failure to reach the database means "not ready"
        checks["database"] = f"unavailable: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks},
                        200 if ready else 503)
