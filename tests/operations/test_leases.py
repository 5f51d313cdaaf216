"""Sequencer leases spread tenants over processes, and hand them over on release."""

from __future__ import annotations

from tests.support import make_tenant, run
from trailseal.leases import Leases
from trailseal.store import create_pool


def test_leases_share_the_tenants_fairly_and_hand_over(own_database):
    tenants = {make_tenant(own_database, "lease").name for _ in range(4)}

    async def go() -> None:
        pool = create_pool(own_database, min_size=1, max_size=4)
        await pool.open(wait=True)
        try:
            first, second = Leases(pool, 30, "one"), Leases(pool, 30, "two")
            assert await first.refresh() == tenants  # alone: every tenant
            assert await second.refresh() == frozenset()  # none expired yet
            assert len(await first.refresh()) == 2  # two members: gives half back
            assert len(await second.refresh()) == 2
            assert first.held | second.held == tenants
            assert not first.held & second.held
            await first.release()
            # The member that left is no longer counted, so the other takes everything.
            assert await second.refresh() == tenants
        finally:
            await pool.close()

    run(go())
