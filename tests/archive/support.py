"""Helpers of the archive tests: an injected clock, and a log filled and sequenced
directly (no HTTP), in a database of the test's own."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import AsyncConnection

from tests.support import an_event
from trailseal import ingest
from trailseal.archive.archiver import Archiver
from trailseal.archive.worm import WormStore
from trailseal.integrity.notes import Signer
from trailseal.sequencer import Sequencer
from trailseal.store import create_pool
from trailseal.tenants import create_tenant

ORIGIN_HOST = "audit.test"


@dataclass
class Clock:
    """A clock the test moves by hand."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def start_clock() -> Clock:
    value = datetime.now(UTC)
    return Clock(value.replace(microsecond=value.microsecond // 1000 * 1000))


async def fill(url: str, signer: Signer, tenant: str, count: int, at: datetime,
               **fields: Any) -> None:
    """Create ``tenant`` if needed and sequence ``count`` events received at ``at``."""
    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        await create_tenant(conn, tenant)
        events = [an_event(**fields) for _ in range(count)]
        prepared = ingest.prepare(events, tenant, at)
        await ingest.write_inbox(conn, tenant, prepared, at)
    pool = create_pool(url, min_size=1, max_size=2)
    await pool.open(wait=True)
    try:
        await Sequencer(pool, signer, origin_host=ORIGIN_HOST).sequence_tenant(tenant)
    finally:
        await pool.close()


def archiver(store: WormStore, signer: Signer, clock: Clock, *, max_events: int = 10,
             preset: str = "soc2") -> Archiver:
    return Archiver(store, signer, max_events=max_events, max_age=timedelta(minutes=1),
                    default_preset=preset, clock=clock)


async def seal(url: str, worker: Archiver, tenant: str) -> int:
    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        return await worker.seal_tenant(conn, tenant)


def month_end(value: datetime) -> datetime:
    """The first instant of the month after ``value``'s (UTC)."""
    first = value.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (first + timedelta(days=32)).replace(day=1)


async def verify(url: str, signer: Signer, tenant: str, *, archive: WormStore | None = None,
                 workers: int = 0) -> Any:
    from trailseal.integrity.checkpoint import log_origin
    from trailseal.verify import verify_tenant

    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        return await verify_tenant(conn, tenant, [signer.verifier()],
                                   origin=log_origin(ORIGIN_HOST, tenant), database_url=url,
                                   workers=workers, archive=archive)


async def retention(url: str, store: WormStore, clock: Clock, preset: str = "soc2") -> Any:
    from trailseal.archive.retention import run_retention

    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        return await run_retention(conn, store, clock(), default_preset=preset)


async def sequence(url: str, signer: Signer, tenant: str) -> None:
    pool = create_pool(url, min_size=1, max_size=2)
    await pool.open(wait=True)
    try:
        await Sequencer(pool, signer, origin_host=ORIGIN_HOST).sequence_tenant(tenant)
    finally:
        await pool.close()
