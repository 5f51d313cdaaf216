"""Sequencer leases: several ``trailseal sequencer`` processes share the tenants.

Each process has a holder name and, every sweep, beats its heartbeat in
``sequencer_members``, renews the leases it holds in ``sequencer_leases``, and then
either takes expired leases up to its fair share (the tenants divided by the processes
seen alive within one lease duration, rounded up) or gives back what it holds beyond
that share, so a newly started process gets work. A process killed without warning
stops renewing; its leases expire after the lease duration and the others take them.

A lease says who *should* sequence a tenant; it is not what makes sequencing safe. Each
batch still takes the tenant's advisory lock and its ``log_heads`` row lock inside its
own transaction, so a holder whose lease ran out while it was paused (a GC pause, a
stopped VM) and another that took over can never both extend the log: one of them
waits or passes by, and the second batch starts from the first one's head.
"""

from __future__ import annotations

import math
import os
import secrets
import socket
from datetime import timedelta

from psycopg_pool import AsyncConnectionPool

from trailseal.store import Role, scoped

_BEAT = """
INSERT INTO trailseal.sequencer_members (holder, seen_at) VALUES (%(me)s, now())
ON CONFLICT (holder) DO UPDATE SET seen_at = now()
"""

_RENEW = """
UPDATE trailseal.sequencer_leases SET expires_at = now() + %(ttl)s
WHERE holder = %(me)s AND expires_at > now()
RETURNING tenant
"""

_SHARE = """
SELECT (SELECT count(*) FROM trailseal.tenants),
       (SELECT count(*) FROM trailseal.sequencer_members
        WHERE seen_at > now() - %(ttl)s OR holder = %(me)s)
"""

# Every tenant has a lease row, so takeover is one UPDATE of expired rows.
_ENSURE = """
INSERT INTO trailseal.sequencer_leases (tenant, holder, acquired_at, expires_at)
SELECT name, '-', now(), '-infinity' FROM trailseal.tenants
ON CONFLICT (tenant) DO NOTHING
"""

_TAKE = """
UPDATE trailseal.sequencer_leases l
SET holder = %(me)s, acquired_at = now(), expires_at = now() + %(ttl)s
WHERE l.tenant IN (
    SELECT tenant FROM trailseal.sequencer_leases
    WHERE expires_at <= now() ORDER BY random() LIMIT %(wanted)s
    FOR UPDATE SKIP LOCKED)
  AND l.expires_at <= now()
RETURNING l.tenant
"""

_GIVE_BACK = """
UPDATE trailseal.sequencer_leases SET expires_at = '-infinity'
WHERE holder = %(me)s AND tenant = ANY(%(tenants)s)
"""

_LEAVE = """
WITH gone AS (DELETE FROM trailseal.sequencer_members WHERE holder = %(me)s)
UPDATE trailseal.sequencer_leases SET expires_at = '-infinity' WHERE holder = %(me)s
"""


def holder_name() -> str:
    """A name for this process: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Leases:
    """The tenants one sequencer process holds."""

    def __init__(self, pool: AsyncConnectionPool, duration: float,
                 holder: str | None = None) -> None:
        self.pool = pool
        self.duration = timedelta(seconds=duration)
        self.holder = holder or holder_name()
        self.held: frozenset[str] = frozenset()

    async def refresh(self) -> frozenset[str]:
        """Beat, renew, then take or give back towards a fair share; the tenants held."""
        args: dict[str, object] = {"me": self.holder, "ttl": self.duration}
        async with self.pool.connection() as conn, scoped(conn, Role.SEQUENCER):
            await conn.execute(_BEAT, args)
            cur = await conn.execute(_RENEW, args)
            held = {row[0] for row in await cur.fetchall()}
            cur = await conn.execute(_SHARE, args)
            row = await cur.fetchone()
            tenants, members = (row[0], max(row[1], 1)) if row else (0, 1)
            fair = math.ceil(tenants / members)
            if len(held) < fair:
                await conn.execute(_ENSURE)
                cur = await conn.execute(_TAKE, args | {"wanted": fair - len(held)})
                held |= {row[0] for row in await cur.fetchall()}
            elif len(held) > fair:
                extra = sorted(held)[fair:]
                await conn.execute(_GIVE_BACK, args | {"tenants": extra})
                held -= set(extra)
        self.held = frozenset(held)
        return self.held

    async def release(self) -> None:
        """Give every lease back and leave, so others take over at once (shutdown)."""
        async with self.pool.connection() as conn, scoped(conn, Role.SEQUENCER):
            await conn.execute(_LEAVE, {"me": self.holder})
        self.held = frozenset()
