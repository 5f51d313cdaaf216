"""Tiers and retention with an injected clock (no sleeping): events move hot → warm →
cold → deleted at each preset's thresholds; nothing is deleted before retention ends;
``verify`` is clean after every step, with and without the archive."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest

from tests.archive.support import (
    archiver,
    fill,
    month_end,
    retention,
    seal,
    verify,
)
from tests.support import run
from trailseal.archive.policy import PRESETS, preset, set_policy
from trailseal.archive.worm import ObjectLocked
from trailseal.verify import Kind


def _hot_events(url: str, tenant: str) -> int:
    with psycopg.connect(url) as conn:
        conn.execute("SELECT set_config('trailseal.tenant', %s, false)", (tenant,))
        row = conn.execute("SELECT count(*) FROM trailseal.events WHERE tenant = %s",
                           (tenant,)).fetchone()
    return int(row[0]) if row else 0


def _kinds(url: str, tenant: str) -> set[tuple[int, str]]:
    with psycopg.connect(url) as conn:
        return set(conn.execute(
            "SELECT first_seq, kind FROM trailseal.segment_events WHERE tenant = %s",
            (tenant,)).fetchall())


def _assert_clean(url, signer, tenant, store):
    for archive in (None, store):
        for workers in (0, 2):
            report = run(verify(url, signer, tenant, archive=archive, workers=workers))
            assert report.ok, (archive, workers, report.finding)


async def _policy(url, tenant, name, clock):
    from psycopg import AsyncConnection

    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        await set_policy(conn, tenant, preset(name), clock())


@pytest.mark.parametrize("name", list(PRESETS))
def test_hot_warm_cold_deleted_at_each_presets_thresholds(own_database, signer, store, clock,
                                                          name, monkeypatch):
    monkeypatch.setattr("trailseal.verify._RUN", 4)  # runs meet the segments' edges
    run(fill(own_database, signer, "acme", 12, clock()))
    run(_policy(own_database, "acme", name, clock))
    policy = preset(name)
    worker = archiver(store, signer, clock, max_events=10)
    assert run(seal(own_database, worker, "acme")) == 1
    clock.advance(minutes=1)
    assert run(seal(own_database, worker, "acme")) == 1
    _assert_clean(own_database, signer, "acme", store)
    newest = clock.now - timedelta(minutes=1)
    hot_until = month_end(newest) + policy.hot

    # Hot: the month is kept until the hot days after it ends.
    clock.now = hot_until - timedelta(seconds=1)
    report = run(retention(own_database, store, clock))
    assert any("hot days" in why for _, why in report.kept)
    assert _hot_events(own_database, "acme") == 12
    _assert_clean(own_database, signer, "acme", store)

    # Warm: the partition is dropped; leaf hashes and tiles stay, verify is clean.
    clock.now = hot_until
    report = run(retention(own_database, store, clock))
    assert report.dropped and _hot_events(own_database, "acme") == 0
    _assert_clean(own_database, signer, "acme", store)

    # Cold after the warm days (for soc2 the warm days are the whole retention).
    retain_until = newest + policy.retain
    if policy.warm < policy.retain:
        clock.now = newest + policy.warm - timedelta(seconds=1)
        assert run(retention(own_database, store, clock)).cold == 0
        clock.now = newest + policy.warm + timedelta(seconds=1)
        assert run(retention(own_database, store, clock)).cold == 2
        assert _kinds(own_database, "acme") >= {(0, "cold"), (10, "cold")}
        assert store.is_cold("acme/segments/00000000000000000000-00000000000000000009.parquet")
        _assert_clean(own_database, signer, "acme", store)

    # Nothing is deleted before retention ends, by trailseal or by the store.
    clock.now = retain_until - timedelta(seconds=1)
    assert run(retention(own_database, store, clock)).expired == 0
    key = "acme/segments/00000000000000000010-00000000000000000011.parquet"
    with pytest.raises(ObjectLocked):
        store.delete(key, now=clock.now)

    # Deleted once it ends; verify is still clean from the recorded leaves.
    clock.now = retain_until + timedelta(seconds=1)
    assert run(retention(own_database, store, clock)).expired == 2
    assert _kinds(own_database, "acme") >= {(0, "expired"), (10, "expired")}
    assert not (store.root / "warm" / key).exists() and not (store.root / "cold" / key).exists()
    _assert_clean(own_database, signer, "acme", store)


def test_a_month_with_unsealed_events_is_not_dropped(own_database, signer, store, clock):
    run(fill(own_database, signer, "acme", 12, clock()))
    run(fill(own_database, signer, "other", 3, clock()))
    worker = archiver(store, signer, clock, max_events=10)
    run(seal(own_database, worker, "acme"))  # acme's last two and all of other unsealed
    clock.now = month_end(clock.now) + timedelta(days=400)
    report = run(retention(own_database, store, clock))
    assert any("not in a verified segment" in why for _, why in report.kept)
    assert _hot_events(own_database, "acme") == 12
    assert _hot_events(own_database, "other") == 3


def test_the_archiver_role_cannot_drop_a_partition_directly(own_database, signer, store, clock):
    run(fill(own_database, signer, "acme", 1, clock()))
    with psycopg.connect(own_database) as conn:
        name = conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'trailseal.events'::regclass ORDER BY 1 LIMIT 1").fetchone()
        conn.execute("SET ROLE trailseal_archiver")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"DROP TABLE trailseal.{name[0]}")


def test_verify_archive_reports_a_corrupted_or_missing_segment(own_database, signer, store,
                                                                clock):
    run(fill(own_database, signer, "acme", 12, clock()))
    worker = archiver(store, signer, clock, max_events=10)
    run(seal(own_database, worker, "acme"))
    clock.advance(minutes=1)
    run(seal(own_database, worker, "acme"))
    clock.now = month_end(clock.now) + timedelta(days=91)
    assert run(retention(own_database, store, clock)).dropped
    key = store.root / "warm" / "acme/segments/00000000000000000010-00000000000000000011.parquet"
    data = bytearray(key.read_bytes())
    key.chmod(0o644)
    data[-20] ^= 0xFF
    key.write_bytes(bytes(data))
    assert run(verify(own_database, signer, "acme")).ok  # bodies are not read without it
    for workers in (0, 2):
        finding = run(verify(own_database, signer, "acme", archive=store,
                             workers=workers)).finding
        assert finding and (finding.kind, finding.seq) == (Kind.ARCHIVE_DAMAGED, 10)
        assert "SHA-256" in finding.detail
    key.unlink()
    finding = run(verify(own_database, signer, "acme", archive=store)).finding
    assert finding and (finding.kind, finding.seq) == (Kind.ARCHIVE_DAMAGED, 10)
    assert "missing" in finding.detail


def test_a_sealed_event_deleted_from_a_kept_month_is_still_deleted(own_database, signer, store,
                                                                   clock):
    run(fill(own_database, signer, "acme", 10, clock()))
    run(seal(own_database, archiver(store, signer, clock, max_events=10), "acme"))
    with psycopg.connect(own_database, autocommit=True) as conn:
        conn.execute("ALTER TABLE trailseal.events DISABLE TRIGGER events_append_only")
        try:
            conn.execute("DELETE FROM trailseal.events WHERE tenant = 'acme' AND seq = 4")
        finally:
            conn.execute("ALTER TABLE trailseal.events ENABLE ALWAYS TRIGGER events_append_only")
    finding = run(verify(own_database, signer, "acme", archive=store)).finding
    assert finding and (finding.kind, finding.seq) == (Kind.DELETED, 4)
