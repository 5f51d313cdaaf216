"""The health of every tenant's log, and the conditions an operator is woken for.

One call to ``trailseal.log_health()`` (migration 0008) reads, per tenant, the inbox's
depth and oldest arrival, the log head, the newest checkpoint and verify run, and how far
the archive reaches: counts and times, never an event. :class:`HealthReader` keeps a
reading for a few seconds, so ``/metrics`` and ``/readyz`` scraped by several monitors
cost one query. :func:`alerts` turns a reading into the conditions below; each is a
failure of the logging itself (PCI DSS v4 10.7), not of a producer:

``sequencer_stalled``
    an accepted event has waited in the inbox longer than the threshold: nothing is
    moving events into the log (no sequencer, or it fails every batch);
``checkpoint_stale``
    a tenant has events waiting and its newest checkpoint is older than the threshold
    (or there is none): the log head is not moving;
``witness_unreachable``
    the last checkpoint this process published did not reach the witness folder or URL;
``verify_failed``
    the newest recorded ``trailseal verify`` of a tenant found its log altered.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from psycopg_pool import AsyncConnectionPool

from trailseal.store import Role, scoped

CONDITIONS = ("sequencer_stalled", "checkpoint_stale", "witness_unreachable", "verify_failed")


@dataclass(frozen=True)
class TenantHealth:
    """One tenant's row of ``trailseal.log_health()``."""

    tenant: str
    inbox_depth: int
    inbox_oldest: datetime | None
    log_size: int | None
    head_moved_at: datetime | None
    checkpoint_size: int | None
    checkpoint_at: datetime | None
    verified_at: datetime | None
    verified_ok: bool | None
    archived_size: int | None
    lease_holder: str | None
    lease_expires_at: datetime | None

    def inbox_age(self, now: datetime) -> float:
        """Seconds the oldest waiting event has waited; 0 with an empty inbox."""
        if self.inbox_oldest is None:
            return 0.0
        return max((now - self.inbox_oldest).total_seconds(), 0.0)

    def checkpoint_age(self, now: datetime) -> float | None:
        """Seconds since the newest checkpoint was signed; None without one."""
        if self.checkpoint_at is None:
            return None
        return max((now - self.checkpoint_at).total_seconds(), 0.0)

    @property
    def archive_backlog(self) -> int:
        """Events in the log not yet sealed into a segment."""
        return max((self.log_size or 0) - (self.archived_size or 0), 0)


@dataclass(frozen=True)
class Health:
    """A reading of every tenant's health, with the database's time it was taken."""

    at: datetime
    tenants: tuple[TenantHealth, ...]


@dataclass(frozen=True)
class Thresholds:
    """When a condition fires, in seconds."""

    inbox_age: float
    checkpoint_age: float


async def read_health(pool: AsyncConnectionPool) -> Health:
    """Read ``trailseal.log_health()`` once, as the reader role."""
    async with pool.connection(timeout=5) as conn, scoped(conn, Role.READER):
        cur = await conn.execute("SELECT now()")
        row = await cur.fetchone()
        assert row is not None
        cur = await conn.execute("SELECT * FROM trailseal.log_health()")
        rows = await cur.fetchall()
    return Health(row[0], tuple(TenantHealth(*r) for r in rows))


class HealthReader:
    """:func:`read_health`, reused for ``ttl`` seconds; one reading at a time."""

    def __init__(self, pool: AsyncConnectionPool, ttl: float,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.pool = pool
        self.ttl = ttl
        self.monotonic = monotonic
        self._lock = asyncio.Lock()
        self._last: tuple[float, Health] | None = None

    async def get(self) -> Health:
        async with self._lock:
            if self._last is None or self.monotonic() - self._last[0] >= self.ttl:
                self._last = (self.monotonic(), await read_health(self.pool))
            return self._last[1]


def alerts(health: Health, thresholds: Thresholds, *, witness_failing: bool = False
           ) -> dict[str, list[str]]:
    """Each condition of :data:`CONDITIONS` and the tenants it fires for (the witness
    condition is the process's, so it names no tenant but ``*``)."""
    now = health.at
    fired: dict[str, list[str]] = {name: [] for name in CONDITIONS}
    for t in health.tenants:
        if t.inbox_depth and t.inbox_age(now) > thresholds.inbox_age:
            fired["sequencer_stalled"].append(t.tenant)
        age = t.checkpoint_age(now)
        if t.inbox_depth and (age is None or age > thresholds.checkpoint_age):
            fired["checkpoint_stale"].append(t.tenant)
        if t.verified_ok is False:
            fired["verify_failed"].append(t.tenant)
    if witness_failing:
        fired["witness_unreachable"].append("*")
    return fired
