"""Retention policies: how long a tenant's events stay hot (in PostgreSQL), warm (in the
store's standard class) and in all, before deletion.

Presets: ``soc2`` keeps a year, ``hipaa`` six years, ``finance`` seven; every preset keeps
90 days hot and up to two years warm (never longer than the retention itself); ``custom``
sets each number. A tenant's newest policy row applies; a tenant without one has the
service's default preset (``TRAILSEAL_RETENTION_PRESET``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from psycopg import AsyncConnection

from trailseal.errors import InvalidInput
from trailseal.store import Role, scoped

HOT_DAYS = 90
WARM_DAYS = 730
PRESETS = {"soc2": 365, "hipaa": 6 * 365 + 2, "finance": 7 * 365 + 2}  # leap days counted


@dataclass(frozen=True)
class Policy:
    """One tenant's retention."""

    preset: str
    retain_days: int
    hot_days: int = HOT_DAYS
    warm_days: int = WARM_DAYS

    def __post_init__(self) -> None:
        if self.preset not in (*PRESETS, "custom"):
            raise InvalidInput(f"unknown preset {self.preset!r}: soc2, hipaa, finance or custom")
        if not 1 <= self.hot_days <= self.retain_days or self.warm_days < self.hot_days:
            raise InvalidInput("a policy needs 1 <= hot days <= retain days and warm days "
                               ">= hot days")

    @property
    def retain(self) -> timedelta:
        return timedelta(days=self.retain_days)

    @property
    def hot(self) -> timedelta:
        return timedelta(days=self.hot_days)

    @property
    def warm(self) -> timedelta:
        return timedelta(days=self.warm_days)


def preset(name: str, *, hot_days: int = HOT_DAYS, warm_days: int | None = None) -> Policy:
    """The policy of preset ``name`` (warm days default to two years, at most the
    retention)."""
    if name not in PRESETS:
        raise InvalidInput(f"unknown preset {name!r}: soc2, hipaa or finance")
    days = PRESETS[name]
    return Policy(name, days, hot_days, min(WARM_DAYS, days) if warm_days is None else warm_days)


async def policy_for(conn: AsyncConnection, tenant: str, default: str) -> Policy:
    """The policy in force for ``tenant``. Needs a transaction scoped to ``tenant`` by a
    role that may read policies."""
    cur = await conn.execute(
        "SELECT preset, retain_days, hot_days, warm_days FROM trailseal.retention_policies"
        " WHERE tenant = %s ORDER BY set_at DESC LIMIT 1",
        (tenant,),
    )
    row = await cur.fetchone()
    return Policy(*row) if row else preset(default)


async def set_policy(conn: AsyncConnection, tenant: str, policy: Policy, now: datetime) -> None:
    """Record ``policy`` as ``tenant``'s from ``now`` on (as the owner)."""
    async with scoped(conn, Role.OWNER, tenant):
        await conn.execute(
            "INSERT INTO trailseal.retention_policies"
            " (tenant, set_at, preset, retain_days, hot_days, warm_days)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (tenant, now, policy.preset, policy.retain_days, policy.hot_days,
             policy.warm_days),
        )
