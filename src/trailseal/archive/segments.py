"""A segment: a contiguous seq range of one tenant's log as one Parquet file, and its
manifest, a C2SP signed note.

The file has one row per event: its seq, canonical bytes and the query columns of
``trailseal.events`` (so DuckDB can filter warm segments as PostgreSQL filters hot rows).
It is compressed with zstd, strings dictionary-encoded (seq and the event id by their
deltas), and written as one row group, which is what compresses a segment best. The leaf
and chain hashes are not stored: they follow from the canonical bytes and the chain hash
before the range, and 64 bytes of hash per event would be two fifths of the file.

The manifest names the tenant, the seq range, the file's SHA-256 and size, the RFC 6962
root of the range's leaves taken as a tree of their own, the chain hashes before and at
the end of the range, and the checkpoint the range falls under (its size and root), so an
auditor can check each event's inclusion in the signed log with a proof. Its body is one
line of sorted JSON after a header line, signed by the log key.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from trailseal.integrity.hashing import HASH_SIZE, chain_hashes, leaf_hashes
from trailseal.integrity.notes import Signer, Verifier, open_note
from trailseal.integrity.tiles import subtree_root

MANIFEST_HEADER = "trailseal segment manifest v1"
ZSTD_LEVEL = 9

QUERY_COLUMNS = (
    "id", "occurred_at", "received_at", "actor_type", "actor_id", "actor_name", "action",
    "target_type", "target_id", "target_name", "outcome", "ip", "request_id",
    "correlation_id", "service",
)
COLUMNS = ("seq", "canonical", *QUERY_COLUMNS)

_TIME = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema([
    ("seq", pa.int64()),
    ("canonical", pa.binary()),
    ("id", pa.string()),
    ("occurred_at", _TIME),
    ("received_at", _TIME),
    *[(name, pa.string()) for name in QUERY_COLUMNS[3:]],
])


ENCODINGS = {"seq": "DELTA_BINARY_PACKED", "id": "DELTA_BYTE_ARRAY"}
"""The columns not dictionary-encoded that compress better by their deltas: seqs count up
by one, and UUIDv7 ids in seq order share their leading time digits."""


class SegmentError(ValueError):
    """A segment file or manifest that is not what it should be."""


def object_key(tenant: str, first_seq: int, last_seq: int) -> str:
    """Where a segment's file lives in the store (names sort by seq)."""
    return f"{tenant}/segments/{first_seq:020d}-{last_seq:020d}.parquet"


def manifest_key(key: str) -> str:
    """Where the manifest of the segment file ``key`` lives."""
    return key.removesuffix(".parquet") + ".manifest"


Columns = Mapping[str, Sequence[Any]]
"""A segment's events column by column, under the names of :data:`COLUMNS`: ``seq``
ints, ``canonical`` bytes, times as datetimes, ``id``, ``ip`` and the other query columns
as strings (or None)."""


def columns_of(rows: Iterable[Sequence[Any]]) -> dict[str, list[Any]]:
    """The columns of row tuples whose values are in :data:`COLUMNS` order."""
    found = [list(column) for column in zip(*rows, strict=True)] or [[] for _ in COLUMNS]
    if len(found) != len(COLUMNS):
        raise ValueError(f"a segment row has {len(COLUMNS)} values, got {len(found)}")
    return dict(zip(COLUMNS, found, strict=True))


def write_parquet(columns: Columns) -> bytes:
    """The Parquet bytes of the events in ``columns``."""
    table = pa.Table.from_pydict({name: columns[name] for name in COLUMNS}, schema=SCHEMA)
    out = io.BytesIO()
    pq.write_table(
        table, out, compression="zstd", compression_level=ZSTD_LEVEL,
        use_dictionary=[n for n in QUERY_COLUMNS if n != "id"],
        column_encoding=ENCODINGS,
        row_group_size=max(table.num_rows, 1), write_statistics=True,
    )
    return out.getvalue()


Row = tuple[int, bytes, bytes, bytes]
"""An event of a segment as ``trailseal verify`` reads it: seq, canonical bytes, and the
leaf and chain hashes computed from them."""


def hashed_rows(seqs: Sequence[int], canonical: Sequence[bytes],
                chain_before: bytes) -> list[Row]:
    """The rows of a range's seqs and canonical bytes, with their leaf hashes and their
    chain from ``chain_before``."""
    leaves = leaf_hashes(canonical)
    chains = chain_hashes(chain_before, leaves)
    return [(seq, data, leaves[i * HASH_SIZE:(i + 1) * HASH_SIZE],
             chains[i * HASH_SIZE:(i + 1) * HASH_SIZE])
            for i, (seq, data) in enumerate(zip(seqs, canonical, strict=True))]


def read_rows(data: bytes | str, chain_before: bytes) -> list[Row]:
    """The file's events (bytes, or the path of a file) in seq order, hashed from
    ``chain_before``. Only seq and the canonical bytes are read: a file written with the
    hashes as columns too, as segments once were, reads the same."""
    table = pq.read_table(io.BytesIO(data) if isinstance(data, bytes) else data,
                          columns=["seq", "canonical"])
    return hashed_rows(table.column("seq").to_pylist(), table.column("canonical").to_pylist(),
                       chain_before)


@dataclass(frozen=True)
class Manifest:
    """What a segment's signed manifest says."""

    tenant: str
    first_seq: int
    last_seq: int
    count: int
    file: str
    sha256: str  # hex
    bytes: int
    merkle_root: str  # hex
    chain_before: str  # hex
    chain_last: str  # hex
    checkpoint_size: int
    checkpoint_root: str  # hex
    min_received_at: str
    max_received_at: str
    min_occurred_at: str
    max_occurred_at: str
    retain_until: str
    created_at: str

    def body(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"),
                          ensure_ascii=True)
        return f"{MANIFEST_HEADER}\n{text}\n"


def sign_manifest(manifest: Manifest, signer: Signer) -> str:
    """The manifest as a C2SP signed note."""
    return signer.sign(manifest.body())


def open_manifest(note: str | bytes, verifiers: Sequence[Verifier]) -> Manifest:
    """Check a manifest's signature and return what it says; ``NoteError`` for a bad
    signature, ``SegmentError`` for a body that is not a manifest."""
    body = open_note(note, verifiers).body
    header, _, rest = body.partition("\n")
    if header != MANIFEST_HEADER:
        raise SegmentError("not a trailseal segment manifest")
    try:
        return Manifest(**json.loads(rest))
    except (ValueError, TypeError) as exc:
        raise SegmentError(f"malformed manifest: {exc}") from None


@dataclass(frozen=True)
class Sealed:
    """A segment built from its rows: the file, the manifest, the signed note."""

    data: bytes
    manifest: Manifest
    note: str


def range_root(leaves: Sequence[bytes]) -> bytes:
    """The RFC 6962 root of ``leaves`` taken as a tree of their own."""
    return subtree_root(leaves)


def _iso(value: datetime) -> str:
    return value.isoformat()


def seal(
    tenant: str,
    columns: Columns,
    *,
    chain_before: bytes,
    checkpoint: tuple[int, bytes],
    retain_until: datetime,
    created_at: datetime,
    signer: Signer,
) -> Sealed:
    """Build the segment of the events in ``columns`` (contiguous, in seq order; the
    caller checks the file's hashes against the log's, :func:`check_file`) and sign its
    manifest."""
    seqs = columns["seq"]
    if not seqs:
        raise SegmentError("a segment holds at least one event")
    first, last = seqs[0], seqs[-1]
    data = write_parquet(columns)
    rows = hashed_rows(seqs, columns["canonical"], chain_before)
    received, occurred = columns["received_at"], columns["occurred_at"]
    manifest = Manifest(
        tenant=tenant, first_seq=first, last_seq=last, count=len(seqs),
        file=object_key(tenant, first, last), sha256=hashlib.sha256(data).hexdigest(),
        bytes=len(data),
        merkle_root=range_root([r[2] for r in rows]).hex(),
        chain_before=chain_before.hex(), chain_last=rows[-1][3].hex(),
        checkpoint_size=checkpoint[0], checkpoint_root=checkpoint[1].hex(),
        min_received_at=_iso(min(received)), max_received_at=_iso(max(received)),
        min_occurred_at=_iso(min(occurred)), max_occurred_at=_iso(max(occurred)),
        retain_until=_iso(retain_until), created_at=_iso(created_at),
    )
    return Sealed(data, manifest, sign_manifest(manifest, signer))


def check_file(data: bytes, manifest: Manifest) -> list[Row]:
    """Check a segment file against its manifest: SHA-256, seq range, and the leaf hashes
    of its canonical bytes, chained from ``chain_before``, against the manifest's Merkle
    root and last chain hash. Returns its rows for ``trailseal verify``; ``SegmentError``
    says what is wrong."""
    if hashlib.sha256(data).hexdigest() != manifest.sha256:
        raise SegmentError("the file's SHA-256 differs from its manifest")
    try:
        before = bytes.fromhex(manifest.chain_before)
    except ValueError:
        before = b""
    if len(before) != HASH_SIZE:
        raise SegmentError("the manifest's chain_before is not a hash")
    try:
        rows = read_rows(data, before)
    except (pa.ArrowException, OSError, TypeError) as exc:
        raise SegmentError(f"not a readable segment file: {exc}") from None
    seqs = [r[0] for r in rows]
    if not seqs or seqs != list(range(manifest.first_seq, manifest.last_seq + 1)):
        raise SegmentError("the file's seqs differ from the manifest's range")
    if range_root([r[2] for r in rows]).hex() != manifest.merkle_root:
        raise SegmentError("the file's events differ from the manifest's Merkle root")
    if rows[-1][3].hex() != manifest.chain_last:
        raise SegmentError("the file's events do not chain to the manifest's last hash")
    return rows
