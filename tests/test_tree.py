"""The tree over HTTP, read as a C2SP tlog-tiles client would: signed checkpoints, tiles
and entry bundles that recompute the root, proofs that verify, receipts, witness copies."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import stat

import psycopg
import pytest

from tests.support import an_event
from trailseal.integrity import leaf_hash
from trailseal.integrity.checkpoint import open_checkpoint
from trailseal.integrity.notes import Verifier
from trailseal.integrity.proofs import verify_consistency, verify_inclusion
from trailseal.integrity.receipt import ReceiptError, verify_receipt
from trailseal.integrity.tiles import (
    TreeState,
    entries_path,
    partial_tiles,
    subtree_root,
    tile_path,
)
from trailseal.reading.tree import FullTile, TileCache, inclusion_plan, open_tree
from trailseal.store import Role, scoped
from trailseal.witness import WormFolder, checkpoint_name


def _post(client, tenant, n: int, batch: int = 250) -> list[dict]:
    sent = []
    for start in range(0, n, batch):
        events = [an_event() for _ in range(min(batch, n - start))]
        r = client.post("/v1/events?wait=sequenced", json={"events": events},
                        headers=tenant.auth("ingest"))
        assert r.status_code == 201, r.text
        sent += events
    return sent


def _verifiers(client, tenant) -> list[Verifier]:
    r = client.get("/v1/log/key", headers=tenant.auth("read"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return [Verifier.from_key(line) for line in r.text.splitlines()]


def _checkpoint(client, tenant):
    r = client.get("/v1/log/checkpoint", headers=tenant.auth("read"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return r.text, open_checkpoint(r.text, _verifiers(client, tenant))


@pytest.fixture
def grown(client, tenant):
    """A log of 700 events: two full level-0 tiles, partials at levels 0 and 1."""
    return tenant, _post(client, tenant, 700)


def _get_bytes(client, tenant, path: str) -> bytes:
    r = client.get(f"/v1/log/{path}", headers=tenant.auth("read"))
    assert r.status_code == 200, (path, r.text)
    assert r.headers["content-type"] == "application/octet-stream"
    return r.content


def test_a_tiles_client_recomputes_the_signed_root(client, grown):
    tenant, sent = grown
    _, checkpoint = _checkpoint(client, tenant)
    assert checkpoint.size == 700
    assert checkpoint.origin.endswith(f"/trailseal/{tenant.name}")
    # Entry bundles: uint16 big-endian length, then canonical bytes hashing to the leaf.
    leaves, ids = [], []
    for index, width in ((0, None), (1, None), (2, 700 - 512)):
        data = _get_bytes(client, tenant, entries_path(index, width))
        while data:
            length = int.from_bytes(data[:2], "big")
            entry, data = data[2 : 2 + length], data[2 + length :]
            leaves.append(leaf_hash(entry))
            ids.append(json.loads(entry)["id"])
    assert ids == [e["id"] for e in sent]
    # Level-0 tiles hold exactly those leaf hashes.
    level0 = _get_bytes(client, tenant, tile_path(0, 0))
    level0 += _get_bytes(client, tenant, tile_path(0, 1))
    level0 += _get_bytes(client, tenant, tile_path(0, 2, 700 - 512))
    assert [level0[i : i + 32] for i in range(0, len(level0), 32)] == leaves
    # The right edge (partial tiles) alone gives the signed root.
    edge = {level: _get_bytes(client, tenant, tile_path(level, index, width))
            for level, index, width in partial_tiles(700)}
    tree = TreeState()
    tree.extend(b"".join(leaves))
    assert tree.root() == checkpoint.root_hash
    assert edge[0] == b"".join(tree.edge[0]) and edge[1] == b"".join(tree.edge[1])


@pytest.mark.parametrize("path", [
    "tile/0/003", "tile/0/002.p/189", "tile/1/000", "tile/1/001.p/1", "tile/entries/002.p/189",
    "tile/0/x001/000", "tile/0/2", "tile/0/000.p/0", "tile/9/000", "tile/entries/003",
])
def test_tiles_the_log_does_not_have_are_404(client, grown, path):
    tenant, _ = grown
    r = client.get(f"/v1/log/{path}", headers=tenant.auth("read"))
    assert r.status_code == 404, path
    assert r.headers["content-type"] == "application/problem+json"


def test_inclusion_and_consistency_proofs_verify(client, grown):
    tenant, sent = grown
    _, checkpoint = _checkpoint(client, tenant)
    for index in (0, 1, 255, 256, 511, 699):
        r = client.get("/v1/log/proof/inclusion", params={"index": index, "size": 700},
                       headers=tenant.auth("read"))
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["index"], body["size"]) == (index, 700)
        event = client.get(f"/v1/events/{sent[index]['id']}", headers=tenant.auth()).json()
        proof = [base64.b64decode(h) for h in body["hashes"]]
        verify_inclusion(bytes.fromhex(event["leaf_hash"]), index, 700, proof,
                         checkpoint.root_hash)
    # Consistency from an older checkpoint (the log after its first batch of 250).
    old = TreeState()
    for e in sent[:250]:
        got = client.get(f"/v1/events/{e['id']}", headers=tenant.auth()).json()
        old.append(bytes.fromhex(got["leaf_hash"]))
    r = client.get("/v1/log/proof/consistency", params={"from": 250, "to": 700},
                   headers=tenant.auth("read"))
    assert r.status_code == 200, r.text
    assert (r.json()["from"], r.json()["to"]) == (250, 700)
    verify_consistency(250, 700, [base64.b64decode(h) for h in r.json()["hashes"]],
                       old.root(), checkpoint.root_hash)


@pytest.mark.parametrize(("path", "params"), [
    ("inclusion", {"index": 700, "size": 700}),
    ("inclusion", {"index": 0, "size": 701}),
    ("inclusion", {"index": -1, "size": 10}),
    ("inclusion", {"index": 0, "size": 0}),
    ("consistency", {"from": 0, "to": 10}),
    ("consistency", {"from": 20, "to": 10}),
    ("consistency", {"from": 1, "to": 701}),
    ("inclusion", {"index": 0, "size": 2**63}),  # past PostgreSQL's bigint: still a 400
    ("consistency", {"from": 1, "to": 2**70}),
])
def test_out_of_range_proofs_are_400(client, grown, path, params):
    tenant, _ = grown
    r = client.get(f"/v1/log/proof/{path}", params=params, headers=tenant.auth("read"))
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["type"].endswith("/out-of-range") and body["detail"]


def test_receipt_verifies_offline_and_catches_edits(client, grown):
    tenant, sent = grown
    r = client.get(f"/v1/events/{sent[300]['id']}/receipt", headers=tenant.auth("read"))
    assert r.status_code == 200, r.text
    receipt = r.json()
    keys = client.get("/v1/log/key", headers=tenant.auth("read")).text.split()
    checked = verify_receipt(receipt, keys)
    assert (checked.seq, checked.size) == (300, 700)
    forged = dict(receipt, event=dict(receipt["event"], action="user.deleted.everything"))
    with pytest.raises(ReceiptError):
        verify_receipt(forged, keys)
    moved = dict(receipt, inclusion_proof=dict(receipt["inclusion_proof"], index=301))
    with pytest.raises(ReceiptError):
        verify_receipt(moved, keys)
    other = client.get(f"/v1/events/{sent[300]['id']}/receipt", headers={"Authorization": "x"})
    assert other.status_code == 401


def test_every_checkpoint_is_witnessed_write_once(client, grown, settings):
    tenant, _ = grown
    note, checkpoint = _checkpoint(client, tenant)
    folder = WormFolder(settings.data_dir / "witness")
    path = folder.root / checkpoint_name(tenant.name, checkpoint.size)
    assert path.read_text() == note
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert folder.put(checkpoint_name(tenant.name, checkpoint.size), note.encode()) is False
    with pytest.raises(FileExistsError):
        folder.put(checkpoint_name(tenant.name, checkpoint.size), b"another root\n")
    sizes = [int(n.rsplit("/", 1)[1]) for n in folder.names(f"{tenant.name}/checkpoints")]
    # Past 700 only if a minute ended meanwhile and the meta-audit recorded these reads.
    assert [s for s in sizes if s <= 700] == [250, 500, 700]
    assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(note.encode()).digest()


def test_empty_log_has_no_checkpoint_yet(client, other_tenant):
    r = client.get("/v1/log/checkpoint", headers=other_tenant.auth("read"))
    assert r.status_code == 404
    assert client.get("/v1/log/tile/0/000.p/1", headers=other_tenant.auth()).status_code == 404


def _verified_inclusion(client, tenant, sent, index: int, size: int, root: bytes) -> None:
    r = client.get("/v1/log/proof/inclusion", params={"index": index, "size": size},
                   headers=tenant.auth("read"))
    assert r.status_code == 200, r.text
    event = client.get(f"/v1/events/{sent[index]['id']}", headers=tenant.auth()).json()
    assert event["seq"] == index
    verify_inclusion(bytes.fromhex(event["leaf_hash"]), index, size,
                     [base64.b64decode(h) for h in r.json()["hashes"]], root)


def test_proofs_from_kept_full_tiles_verify_and_stay_per_tenant(client, grown, other_tenant):
    tenant, sent = grown
    # Both tenants have a full tile 0/0, with different hashes: a cache keyed without the
    # tenant would hand one tenant's tile to the other, and its proof would not verify.
    # Each read is meta-audited into the tenant's log, so the roots are taken first.
    mine = _checkpoint(client, tenant)[1]
    others = _post(client, other_tenant, 300)
    theirs = _checkpoint(client, other_tenant)[1]
    assert (mine.size, theirs.size) == (700, 300)
    for _ in range(2):  # the second time from the kept tiles
        _verified_inclusion(client, tenant, sent, 3, 700, mine.root_hash)
        _verified_inclusion(client, tenant, sent, 650, 700, mine.root_hash)
        _verified_inclusion(client, other_tenant, others, 3, 300, theirs.root_hash)


def test_the_tile_cache_drops_the_least_recently_used():
    a, b, c = FullTile(b"a"), FullTile(b"b"), FullTile(b"c")
    cache = TileCache(capacity=2)
    cache.put(("t", 0, 0), a)
    cache.put(("t", 0, 1), b)
    assert cache.get(("t", 0, 0)) is a  # now the most recent
    cache.put(("t", 0, 2), c)
    assert ("t", 0, 1) not in cache and len(cache) == 2
    assert cache.get(("t", 0, 0)) is a and cache.get(("t", 0, 2)) is c


def test_a_full_tiles_nodes_are_the_subtree_roots():
    hashes = [leaf_hash(bytes([i])) for i in range(256)]
    tile = FullTile(b"".join(hashes))
    for count in (1, 2, 4, 32, 128, 256):
        for offset in range(0, 256, count):
            assert tile.node(offset, count) == subtree_root(hashes[offset:offset + count])


@pytest.mark.parametrize("path", [
    "/v1/log/checkpoint", "/v1/log/key", "/v1/log/tile/0/000.p/1",
    "/v1/log/proof/inclusion?index=0&size=1", "/v1/log/proof/consistency?from=1&to=2",
    "/v1/events",
])
def test_reads_in_the_keys_own_transaction_still_demand_a_live_read_key(client, grown, path):
    # These reads authenticate the key in the reader transaction they then read in.
    tenant, _ = grown
    assert client.get(path, headers=tenant.auth("read")).status_code == 200
    assert client.get(path, headers=tenant.auth("ingest")).status_code == 403
    assert client.get(path, headers={"Authorization": "Bearer ts_unknown"}).status_code == 401
    assert client.get(path).status_code == 401


def test_a_proof_reads_its_tiles_with_the_head_in_one_statement(client, grown, database_url):
    tenant, sent = grown
    root = _checkpoint(client, tenant)[1].root_hash
    cache = TileCache()

    async def proof(index: int) -> tuple[list[bytes], int]:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            statements = 0
            execute = conn.execute

            async def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
                nonlocal statements
                statements += 1
                return await execute(*args, **kwargs)

            async with scoped(conn, Role.READER, tenant.name):
                conn.execute = counted  # type: ignore[method-assign]
                tree = await open_tree(conn, tenant.name, cache, plan=inclusion_plan(index, 700))
                hashes = await tree.inclusion_proof(index, 700)
                conn.execute = execute  # type: ignore[method-assign]
            return hashes, statements

    event = client.get(f"/v1/events/{sent[3]['id']}", headers=tenant.auth()).json()
    for _ in range(2):  # full tile 0/0 read with the head, then from the cache
        hashes, statements = asyncio.run(proof(3))
        assert statements == 1
        assert ((tenant.name, 0, 0) in cache) is True
        verify_inclusion(bytes.fromhex(event["leaf_hash"]), 3, 700, hashes, root)
