"""The tamper suite: each kind of tampering, applied as a superuser with the append-only
triggers switched off, is reported by ``verify`` with the right seq and kind; an untouched
log reports nothing."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import AsyncConnection
from typer.testing import CliRunner

from tests.support import an_event, make_tenant, run
from trailseal.cli import app
from trailseal.integrity import GENESIS_CHAIN_HASH, chain_hash, leaf_hash
from trailseal.integrity.checkpoint import Checkpoint, log_origin, sign_checkpoint
from trailseal.integrity.tiles import TreeState
from trailseal.runtime import load_signer
from trailseal.verify import Kind, Report, verify_tenant
from trailseal.witness import WormFolder, witnessed

BATCH, BATCHES = 64, 4  # checkpoints (and witnessed copies) at 64, 128, 192, 256
TRIGGERS = {
    "events": ["events_append_only"],
    "checkpoints": ["checkpoints_append_only"],
    "tiles": ["tiles_append_only"],
}


_WORKERS = {"count": 0}


@pytest.fixture(autouse=True, params=["in-process", "workers"])
def verify_mode(request, monkeypatch):
    """Every case twice: recomputed in this process, and by worker processes reading
    short runs (which then meet the tampering at a run's edge or inside one)."""
    if request.param == "workers":
        monkeypatch.setattr("trailseal.verify._RUN", 48)
        monkeypatch.setitem(_WORKERS, "count", 2)
    return request.param


@pytest.fixture
def log(client, database_url, settings):
    tenant = make_tenant(database_url, "tamper")
    for _ in range(BATCHES):
        events = [an_event() for _ in range(BATCH)]
        r = client.post("/v1/events?wait=sequenced", json={"events": events},
                        headers=tenant.auth("ingest"))
        assert r.status_code == 201
    # The answer comes once the events are in the log; the sequencer hands each
    # checkpoint to the witness just after its commit, so the last may be on its way.
    folder, deadline = WormFolder(settings.data_dir / "witness"), time.monotonic() + 30
    while len(witnessed(folder, tenant.name)) < BATCHES:
        assert time.monotonic() < deadline, "the witness did not get every checkpoint"
        time.sleep(0.01)
    return tenant


@contextlib.contextmanager
def tampering(database_url: str) -> Iterator[psycopg.Connection]:
    """A superuser connection, with the append-only triggers off while it is open."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        for table, names in TRIGGERS.items():
            for name in names:
                conn.execute(f"ALTER TABLE trailseal.{table} DISABLE TRIGGER {name}")
        try:
            yield conn
        finally:
            for table, names in TRIGGERS.items():
                for name in names:
                    conn.execute(f"ALTER TABLE trailseal.{table} ENABLE ALWAYS TRIGGER {name}")


def _verify(database_url: str, settings, tenant: str) -> Report:
    async def go() -> Report:
        async with await AsyncConnection.connect(database_url, autocommit=True) as conn:
            return await verify_tenant(
                conn, tenant, [load_signer(settings).verifier()],
                origin=log_origin("audit.test", tenant),
                witness=WormFolder(settings.data_dir / "witness"),
                database_url=database_url, workers=_WORKERS["count"],
            )

    return run(go())


def _rows(conn: psycopg.Connection, tenant: str) -> list[tuple[int, bytes]]:
    return [(s, bytes(c)) for s, c in conn.execute(
        "SELECT seq, canonical FROM trailseal.events WHERE tenant = %s ORDER BY seq", (tenant,))]


def _edit(canonical: bytes) -> bytes:
    return canonical.replace(b'"u_1"', b'"u_9"')


def test_untouched_log_verifies(log, database_url, settings):
    report = _verify(database_url, settings, log.name)
    assert report.ok, report.finding
    assert (report.events, report.checkpoints, report.witnessed) == (256, 4, 4)


def test_altered(log, database_url, settings):
    with tampering(database_url) as conn:
        conn.execute(
            "UPDATE trailseal.events SET canonical = %s, leaf_hash = %s"
            " WHERE tenant = %s AND seq = 100",
            (new := _edit(_rows(conn, log.name)[100][1]), leaf_hash(new), log.name),
        )
    finding = _verify(database_url, settings, log.name).finding
    assert finding and (finding.kind, finding.seq) == (Kind.ALTERED, 100)


def test_deleted(log, database_url, settings):
    with tampering(database_url) as conn:
        conn.execute("DELETE FROM trailseal.events WHERE tenant = %s AND seq = 100", (log.name,))
    finding = _verify(database_url, settings, log.name).finding
    assert finding and (finding.kind, finding.seq) == (Kind.DELETED, 100)


def test_deleted_and_renumbered(log, database_url, settings):
    with tampering(database_url) as conn:
        conn.execute("DELETE FROM trailseal.events WHERE tenant = %s AND seq = 100", (log.name,))
        conn.execute("UPDATE trailseal.events SET seq = seq - 1 WHERE tenant = %s AND seq > 100",
                     (log.name,))
    finding = _verify(database_url, settings, log.name).finding
    assert finding and (finding.kind, finding.seq) == (Kind.DELETED, 100)


def test_inserted(log, database_url, settings):
    with tampering(database_url) as conn:
        forged = _edit(_rows(conn, log.name)[100][1])
        conn.execute(
            "INSERT INTO trailseal.events SELECT tenant, seq, gen_random_uuid(), occurred_at,"
            " received_at, actor_type, actor_id, actor_name, action, target_type, target_id,"
            " target_name, outcome, ip, request_id, correlation_id, service, %s, %s, chain_hash"
            " FROM trailseal.events WHERE tenant = %s AND seq = 100",
            (forged, leaf_hash(forged), log.name),
        )
    finding = _verify(database_url, settings, log.name).finding
    assert finding and (finding.kind, finding.seq) == (Kind.INSERTED, 100)


def test_reordered(log, database_url, settings):
    with tampering(database_url) as conn:
        conn.execute(
            "UPDATE trailseal.events SET seq = CASE seq WHEN 100 THEN 101 ELSE 100 END"
            " WHERE tenant = %s AND seq IN (100, 101)", (log.name,))
    finding = _verify(database_url, settings, log.name).finding
    assert finding and (finding.kind, finding.seq) == (Kind.REORDERED, 100)


def test_truncated(log, database_url, settings):
    with tampering(database_url) as conn:
        conn.execute("DELETE FROM trailseal.events WHERE tenant = %s AND seq >= 200", (log.name,))
    finding = _verify(database_url, settings, log.name).finding
    assert finding and (finding.kind, finding.seq) == (Kind.TRUNCATED, 200)


def _rewind(conn: psycopg.Connection, tenant: str, size: int) -> None:
    """Make the database exactly what it was at ``size``, as a restored backup would be."""
    rows = _rows(conn, tenant)[:size]
    tree, chain = TreeState(), GENESIS_CHAIN_HASH
    for _, canonical in rows:
        tree.append(leaf_hash(canonical))
        chain = chain_hash(chain, leaf_hash(canonical))
    conn.execute("DELETE FROM trailseal.events WHERE tenant = %s AND seq >= %s", (tenant, size))
    conn.execute("DELETE FROM trailseal.checkpoints WHERE tenant = %s AND size > %s",
                 (tenant, size))
    conn.execute("DELETE FROM trailseal.tiles WHERE tenant = %s AND (idx + 1) * 256 > %s"
                 " AND level = 0", (tenant, size))
    conn.execute(
        "UPDATE trailseal.log_heads SET size = %s, chain_hash = %s, tree_size = %s, edge = %s"
        " WHERE tenant = %s", (size, chain, size, tree.to_bytes(), tenant))


def test_rolled_back(log, database_url, settings):
    with tampering(database_url) as conn:
        _rewind(conn, log.name, 128)
    report = _verify(database_url, settings, log.name)
    assert report.finding and (report.finding.kind, report.finding.seq) == (Kind.ROLLED_BACK, 128)


def test_forked(log, database_url, settings):
    """An insider with the signing key rewrites history from seq 128 and re-signs every
    checkpoint: internally consistent, caught only by the witnessed checkpoints."""
    signer = load_signer(settings)
    origin = log_origin("audit.test", log.name)
    with tampering(database_url) as conn:
        rows = _rows(conn, log.name)
        tree, chain = TreeState(), GENESIS_CHAIN_HASH
        tiles, checkpoints = [], {}
        for seq, canonical in rows:
            if seq >= 128:
                canonical = _edit(canonical)
                leaf = leaf_hash(canonical)
                chain = chain_hash(chain, leaf)
                conn.execute(
                    "UPDATE trailseal.events SET canonical = %s, leaf_hash = %s, chain_hash = %s"
                    " WHERE tenant = %s AND seq = %s", (canonical, leaf, chain, log.name, seq))
            else:
                leaf = leaf_hash(canonical)
                chain = chain_hash(chain, leaf)
            tiles += tree.append(leaf)
            if tree.size % BATCH == 0 and tree.size > 128:
                checkpoints[tree.size] = tree.root()
        conn.execute("DELETE FROM trailseal.tiles WHERE tenant = %s", (log.name,))
        for t in tiles:
            conn.execute("INSERT INTO trailseal.tiles VALUES (%s, %s, %s, %s, %s)",
                         (log.name, t.level, t.index, t.hashes, t.root))
        conn.execute("DELETE FROM trailseal.checkpoints WHERE tenant = %s AND size > 128",
                     (log.name,))
        for size, root in checkpoints.items():
            note = sign_checkpoint(Checkpoint(origin, size, root), signer)
            conn.execute("INSERT INTO trailseal.checkpoints (tenant, size, root, note)"
                         " VALUES (%s, %s, %s, %s)", (log.name, size, root, note))
        conn.execute("UPDATE trailseal.log_heads SET chain_hash = %s, edge = %s WHERE tenant = %s",
                     (chain, tree.to_bytes(), log.name))
    report = _verify(database_url, settings, log.name)
    assert report.finding and (report.finding.kind, report.finding.seq) == (Kind.FORKED, 128)
    # Without the witness the rewrite is internally consistent: that is what witnesses are for.
    async def unwitnessed() -> Report:
        async with await AsyncConnection.connect(database_url, autocommit=True) as conn:
            return await verify_tenant(conn, log.name, [signer.verifier()], origin=origin)
    assert run(unwitnessed()).ok


def test_cli_exit_codes(log, database_url, settings, monkeypatch):
    monkeypatch.setenv("TRAILSEAL_DATABASE_URL", database_url)
    monkeypatch.setenv("TRAILSEAL_LOG_ORIGIN", "audit.test")
    runner = CliRunner()
    args = ["verify", "--tenant", log.name, "--data-dir", str(settings.data_dir)]
    clean = runner.invoke(app, args)
    assert clean.exit_code == 0, clean.output
    assert "ok" in clean.output
    with tampering(database_url) as conn:
        conn.execute("DELETE FROM trailseal.events WHERE tenant = %s AND seq = 3", (log.name,))
    tampered = runner.invoke(app, args)
    assert tampered.exit_code == 1, tampered.output
    assert "deleted at seq 3" in tampered.output
    broken = runner.invoke(app, [*args, "--key", "not-a-key"])
    assert broken.exit_code == 2 and "could not verify" in broken.output
