"""Segments: sealed by count, by age and at a month's end, contiguous, written once to
the store with a signed manifest that names the checkpoint they fall under."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import stat
from dataclasses import replace
from datetime import timedelta
from typing import Any, ClassVar

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from psycopg import AsyncConnection, AsyncCursor
from typer.testing import CliRunner

from tests.archive.support import ORIGIN_HOST, archiver, fill, seal
from tests.support import run
from trailseal.archive import segments
from trailseal.archive.archiver import _LOCK_CLASS
from trailseal.archive.segments import (
    Sealed,
    SegmentError,
    check_file,
    manifest_key,
    open_manifest,
    range_root,
)
from trailseal.archive.worm import LocalStore, ObjectExists
from trailseal.cli import app
from trailseal.integrity.checkpoint import log_origin, open_checkpoint
from trailseal.integrity.notes import NoteError, Signer, Verifier, generate_key
from trailseal.witness import checkpoint_name


def _segments(url: str, tenant: str) -> list[tuple[int, int, str, str]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT first_seq, last_seq, object_key, manifest FROM trailseal.segments"
            " WHERE tenant = %s ORDER BY first_seq", (tenant,)).fetchall()


def test_segments_close_by_count_then_by_age(own_database, signer, store, clock):
    run(fill(own_database, signer, "acme", 25, clock()))
    worker = archiver(store, signer, clock, max_events=10)
    assert run(seal(own_database, worker, "acme")) == 2
    assert [(s[0], s[1]) for s in _segments(own_database, "acme")] == [(0, 9), (10, 19)]
    clock.advance(seconds=59)
    assert run(seal(own_database, worker, "acme")) == 0  # the last five are not a minute old
    clock.advance(seconds=1)
    assert run(seal(own_database, worker, "acme")) == 1
    assert [(s[0], s[1]) for s in _segments(own_database, "acme")][-1] == (20, 24)
    with psycopg.connect(own_database) as conn:
        verified = conn.execute(
            "SELECT count(*) FROM trailseal.segment_events WHERE tenant = 'acme'"
            " AND kind = 'verified'").fetchone()
    assert verified == (3,)


class _Statements(AsyncCursor):
    """A cursor that keeps every statement it runs (in ``seen``)."""

    seen: ClassVar[list[str]] = []

    async def execute(self, query, params=None, **kwargs):  # type: ignore[no-untyped-def]
        self.seen.append(str(query))
        return await super().execute(query, params, **kwargs)


def test_an_open_segment_is_not_read(own_database, signer, store, clock):
    # Five young events of one month under a checkpoint: the segment is open, and a
    # sweep decides it from the first and last event alone, without reading its rows.
    run(fill(own_database, signer, "acme", 5, clock()))
    worker = archiver(store, signer, clock, max_events=10)

    async def sweep() -> tuple[int, list[str]]:
        _Statements.seen = []
        async with await AsyncConnection.connect(own_database, autocommit=True) as conn:
            conn.cursor_factory = _Statements
            return await worker.seal_tenant(conn, "acme"), _Statements.seen

    sealed, statements = run(sweep())
    assert sealed == 0
    assert statements and not [q for q in statements if "canonical" in q]
    clock.advance(minutes=1)
    sealed, statements = run(sweep())
    assert sealed == 1 and [q for q in statements if "canonical" in q]
    assert [(s[0], s[1]) for s in _segments(own_database, "acme")] == [(0, 4)]


def test_a_segment_ends_with_its_month(own_database, signer, store, clock):
    run(fill(own_database, signer, "acme", 3, clock()))
    later = clock.now.replace(day=1) + timedelta(days=32)
    run(fill(own_database, signer, "acme", 2, later))
    assert run(seal(own_database, archiver(store, signer, clock), "acme")) == 1
    assert [(s[0], s[1]) for s in _segments(own_database, "acme")] == [(0, 2)]


def test_the_file_and_manifest_are_written_once_and_signed(own_database, signer, store, clock):
    run(fill(own_database, signer, "acme", 10, clock()))
    assert run(seal(own_database, archiver(store, signer, clock), "acme")) == 1
    [(_, _, key, note)] = _segments(own_database, "acme")
    path = store.root / "warm" / key
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o444
    manifest = open_manifest(store.get(manifest_key(key)), [signer.verifier()])
    assert open_manifest(note, [signer.verifier()]) == manifest
    assert (manifest.tenant, manifest.first_seq, manifest.last_seq, manifest.count) == (
        "acme", 0, 9, 10)
    rows = check_file(store.get(key), manifest)
    assert [r[0] for r in rows] == list(range(10))
    assert manifest.merkle_root == range_root([r[2] for r in rows]).hex()
    assert manifest.chain_last == rows[-1][3].hex()
    # The checkpoint it falls under is signed, covers the range, and is in the store too.
    stored = store.get(checkpoint_name("acme", manifest.checkpoint_size)).decode()
    checkpoint = open_checkpoint(stored, [signer.verifier()],
                                 origin=log_origin(ORIGIN_HOST, "acme"))
    assert checkpoint.size > manifest.last_seq
    assert checkpoint.root_hash.hex() == manifest.checkpoint_root
    with pytest.raises(ObjectExists):
        store.put_new(key, b"other bytes", retain_until=clock.now)
    assert store.put_new(key, store.get(key), retain_until=clock.now) is False


def test_a_manifest_by_another_key_or_a_changed_file_is_refused(own_database, signer, store,
                                                                 clock):
    run(fill(own_database, signer, "acme", 10, clock()))
    run(seal(own_database, archiver(store, signer, clock), "acme"))
    [(_, _, key, note)] = _segments(own_database, "acme")
    other = generate_key("audit.test/trailseal")[1]
    with pytest.raises(NoteError):
        open_manifest(note, [Verifier.from_key(other)])
    manifest = open_manifest(note, [signer.verifier()])
    data = bytearray(store.get(key))
    data[len(data) // 2] ^= 1
    with pytest.raises(SegmentError, match="SHA-256"):
        check_file(bytes(data), manifest)


def test_the_file_holds_no_hashes_and_the_check_recomputes_them(own_database, signer,
                                                                   store, clock):
    # The file holds seq, the canonical bytes and the query columns; the hashes the
    # check returns are computed from the bytes and the manifest's chain_before, and
    # match the log's.
    run(fill(own_database, signer, "acme", 10, clock()))
    run(seal(own_database, archiver(store, signer, clock), "acme"))
    [(_, _, key, note)] = _segments(own_database, "acme")
    manifest = open_manifest(note, [signer.verifier()])
    data = store.get(key)
    assert pq.read_schema(io.BytesIO(data)).names == list(segments.COLUMNS)
    group = pq.ParquetFile(io.BytesIO(data)).metadata.row_group(0)
    encodings = {group.column(i).path_in_schema: group.column(i).encodings
                 for i in range(group.num_columns)}
    assert "DELTA_BINARY_PACKED" in encodings["seq"]
    assert "DELTA_BYTE_ARRAY" in encodings["id"]
    assert "RLE_DICTIONARY" in encodings["action"]
    with psycopg.connect(own_database) as conn:
        logged = conn.execute(
            "SELECT seq, canonical, leaf_hash, chain_hash FROM trailseal.events"
            " WHERE tenant = 'acme' ORDER BY seq").fetchall()
    assert check_file(data, manifest) == [(s, bytes(c), bytes(lh), bytes(ch))
                                          for s, c, lh, ch in logged]


def test_a_file_signed_over_tampered_events_is_refused(own_database, signer, store, clock):
    # A manifest that matches its file's SHA-256, over events whose bytes or seqs were
    # changed after their root and chain were taken: the check recomputes every hash.
    run(fill(own_database, signer, "acme", 10, clock()))
    run(seal(own_database, archiver(store, signer, clock), "acme"))
    [(_, _, key, note)] = _segments(own_database, "acme")
    manifest = open_manifest(note, [signer.verifier()])
    columns = pq.read_table(io.BytesIO(store.get(key))).to_pydict()

    def resigned(changed: dict[str, list[Any]]) -> tuple[bytes, segments.Manifest]:
        data = segments.write_parquet({**columns, **changed})
        return data, replace(manifest, sha256=hashlib.sha256(data).hexdigest())

    assert [r[0] for r in check_file(*resigned({}))] == list(range(10))
    canonical = list(columns["canonical"])
    canonical[3] = canonical[3].replace(b'"acme"', b'"acne"')
    with pytest.raises(SegmentError, match="Merkle root"):
        check_file(*resigned({"canonical": canonical}))
    with pytest.raises(SegmentError, match="seqs differ"):
        check_file(*resigned({"seq": [seq + 1 for seq in columns["seq"]]}))
    # Chained from another hash than the one before the range: the last chain differs.
    data, _ = resigned({})
    other = replace(manifest, sha256=hashlib.sha256(data).hexdigest(),
                    chain_before=bytes(range(32)).hex())
    with pytest.raises(SegmentError, match="do not chain"):
        check_file(data, other)
    with pytest.raises(SegmentError, match="chain_before is not a hash"):
        check_file(data, replace(other, chain_before="00"))
    # Not a segment at all: a Parquet file without the canonical bytes.
    out = io.BytesIO()
    pq.write_table(pa.table({"seq": columns["seq"]}), out)
    with pytest.raises(SegmentError, match="not a readable segment file"):
        check_file(out.getvalue(), replace(manifest,
                                           sha256=hashlib.sha256(out.getvalue()).hexdigest()))


def test_a_segment_written_with_hash_columns_reads_the_same(own_database, signer, store,
                                                             clock):
    # Segments were once written with leaf_hash and chain_hash columns beside the
    # canonical bytes. The check reads only seq and the bytes (the signed SHA-256 covers
    # the rest), so such a file verifies as it did.
    run(fill(own_database, signer, "acme", 10, clock()))
    run(seal(own_database, archiver(store, signer, clock), "acme"))
    [(_, _, key, note)] = _segments(own_database, "acme")
    manifest = open_manifest(note, [signer.verifier()])
    rows = check_file(store.get(key), manifest)
    table = pq.read_table(io.BytesIO(store.get(key)))
    table = table.add_column(2, "leaf_hash", pa.array([r[2] for r in rows], pa.binary(32)))
    table = table.add_column(3, "chain_hash", pa.array([r[3] for r in rows], pa.binary(32)))
    out = io.BytesIO()
    pq.write_table(table, out, compression="zstd")
    older = out.getvalue()
    assert check_file(older, replace(manifest, sha256=hashlib.sha256(older).hexdigest())) == rows


def test_segments_are_append_only_and_contiguous(own_database, signer, store, clock):
    run(fill(own_database, signer, "acme", 10, clock()))
    run(seal(own_database, archiver(store, signer, clock), "acme"))
    with psycopg.connect(own_database, autocommit=True) as conn:
        for statement in ("UPDATE trailseal.segments SET last_seq = 3",
                          "DELETE FROM trailseal.segments",
                          "TRUNCATE trailseal.segments CASCADE"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(statement)
        with pytest.raises(psycopg.errors.CheckViolation, match="must start at seq 10"):
            conn.execute(
                "INSERT INTO trailseal.segments SELECT tenant, 12, 14, object_key,"
                " file_sha256, file_bytes, merkle_root, chain_before, chain_last, 15,"
                " checkpoint_root, min_received_at, max_received_at, min_occurred_at,"
                " max_occurred_at, retain_until, manifest, created_at"
                " FROM trailseal.segments WHERE tenant = 'acme'")


def test_a_segment_written_but_not_recorded_is_taken_up_again(own_database, signer, store,
                                                              clock):
    run(fill(own_database, signer, "acme", 10, clock()))
    run(seal(own_database, archiver(store, signer, clock), "acme"))
    [(_, _, key, note)] = _segments(own_database, "acme")
    # A store that already holds the file and its first manifest, as after a crash
    # between writing and recording: writing it again, with a later manifest, keeps the
    # first one.
    again = LocalStore(store.root.parent / "again")
    again.put_new(key, store.get(key), retain_until=clock.now + timedelta(days=1))
    again.put_new(manifest_key(key), note.encode(), retain_until=clock.now + timedelta(days=1))
    clock.advance(seconds=5)
    first = archiver(again, signer, clock)
    later = open_manifest(note, [signer.verifier()])
    later = type(later)(**{**later.__dict__, "created_at": clock.now.isoformat()})
    kept = first._put(Sealed(store.get(key), later, signer.sign(later.body())), False, None, 0)
    assert kept.note == note


def test_archiver_command_seals_once(own_database, signer, tmp_path, clock):
    key_file = tmp_path / "log.key"
    signer_key, _ = generate_key("audit.test/trailseal")
    key_file.write_text(signer_key + "\n")
    own = Signer.from_key(signer_key)
    run(fill(own_database, own, "acme", 12, clock()))
    env = {
        "TRAILSEAL_DATABASE_URL": own_database,
        "TRAILSEAL_DATA_DIR": str(tmp_path / "data"),
        "TRAILSEAL_SIGNING_KEY_FILE": str(key_file),
        "TRAILSEAL_ARCHIVE_URL": f"file://{tmp_path / 'worm'}",
        "TRAILSEAL_SEGMENT_MAX_EVENTS": "5",
    }
    result = CliRunner().invoke(app, ["archiver", "--once"], env=env)
    assert result.exit_code == 0, result.output
    assert "sealed 2 segment(s)" in result.output
    assert (tmp_path / "worm" / "warm" / "acme" / "segments").is_dir()


def test_one_archiver_at_a_time_seals_a_tenant(own_database, signer, store, clock):
    # Each API process runs an archiver. While one holds the tenant, another seals
    # nothing (rather than building the same segment and failing to record it).
    run(fill(own_database, signer, "acme", 25, clock()))
    clock.advance(minutes=1)
    worker = archiver(store, signer, clock, max_events=10)
    with psycopg.connect(own_database, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s, hashtext('acme'))", (_LOCK_CLASS,))
        assert run(seal(own_database, worker, "acme")) == 0
        assert _segments(own_database, "acme") == []
        # Let go here: a closed connection's backend lets go of its locks only as it
        # exits, a moment after the close returns (one run sealed nothing just after).
        other.execute("SELECT pg_advisory_unlock(%s, hashtext('acme'))", (_LOCK_CLASS,))
    assert run(seal(own_database, worker, "acme")) == 3

    async def both() -> list[int]:
        async with (await AsyncConnection.connect(own_database, autocommit=True) as a,
                    await AsyncConnection.connect(own_database, autocommit=True) as b):
            first = archiver(store, signer, clock, max_events=10)
            second = archiver(store, signer, clock, max_events=10)
            return list(await asyncio.gather(first.seal_tenant(a, "acme"),
                                              second.seal_tenant(b, "acme")))

    run(fill(own_database, signer, "acme", 40, clock()))
    clock.advance(minutes=1)
    found = run(both())
    assert sorted(found) == [0, 4], found  # the second found it held, or nothing left
    assert [(s[0], s[1]) for s in _segments(own_database, "acme")] == [
        (0, 9), (10, 19), (20, 24), (25, 34), (35, 44), (45, 54), (55, 64)]
