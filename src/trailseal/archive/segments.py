"""A segment: a contiguous seq range of one tenant's log as one Parquet file, and its
manifest, a C2SP signed note.

The file has one row per event: its seq, canonical bytes, leaf and chain hashes, and the
query columns of ``trailseal.events`` (so DuckDB can filter warm segments as PostgreSQL
filters hot rows). It is compressed with zstd, strings dictionary-encoded, and written as
one row group, which is what compresses a segment best.

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

from trailseal.integrity.hashing import HASH_SIZE, chain_hashes, leaf_hash, leaf_hashes
from trailseal.integrity.notes import Signer, Verifier, open_note
from trailseal.integrity.tiles import subtree_root

MANIFEST_HEADER = "trailseal segment manifest v1"
ZSTD_LEVEL = 9

QUERY_COLUMNS = (
    "id", "occurred_at", "received_at", "actor_type", "actor_id", "actor_name", "action",
    "target_type", "target_id", "target_name", "outcome", "ip", "request_id",
    "correlation_id", "service",
)
COLUMNS = ("seq", "canonical", "leaf_hash", "chain_hash", *QUERY_COLUMNS)

_TIME = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema([
    ("seq", pa.int64()),
    ("canonical", pa.binary()),
    ("leaf_hash", pa.binary(32)),
    ("chain_hash", pa.binary(32)),
    ("id", pa.string()),
    ("occurred_at", _TIME),
    ("received_at", _TIME),
    *[(name, pa.string()) for name in QUERY_COLUMNS[3:]],
])


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
ints, ``canonical``, ``leaf_hash`` and ``chain_hash`` bytes, times as datetimes, ``id``,
``ip`` and the other query columns as strings (or None)."""


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
        row_group_size=max(table.num_rows, 1), write_statistics=True,
    )
    return out.getvalue()


def read_rows(data: bytes, start: int | None = None,
              end: int | None = None) -> list[tuple[int, bytes, bytes, bytes]]:
    """(seq, canonical, leaf_hash, chain_hash) of the file's rows with start <= seq <
    end, in seq order: the rows ``trailseal verify`` reads."""
    table = pq.read_table(io.BytesIO(data), columns=["seq", "canonical", "leaf_hash",
                                                     "chain_hash"])
    seqs = table.column("seq").to_pylist()
    picked = [i for i, s in enumerate(seqs)
              if (start is None or s >= start) and (end is None or s < end)]
    canon, leaves, chains = (table.column(n).to_pylist() for n in
                             ("canonical", "leaf_hash", "chain_hash"))
    return [(seqs[i], canon[i], leaves[i], chains[i]) for i in picked]


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
    """Build the segment of the events in ``columns`` (contiguous, in seq order, already
    checked against the log by the caller) and sign its manifest."""
    seqs = columns["seq"]
    if not seqs:
        raise SegmentError("a segment holds at least one event")
    first, last = seqs[0], seqs[-1]
    data = write_parquet(columns)
    received, occurred = columns["received_at"], columns["occurred_at"]
    manifest = Manifest(
        tenant=tenant, first_seq=first, last_seq=last, count=len(seqs),
        file=object_key(tenant, first, last), sha256=hashlib.sha256(data).hexdigest(),
        bytes=len(data),
        merkle_root=range_root(columns["leaf_hash"]).hex(),
        chain_before=chain_before.hex(), chain_last=columns["chain_hash"][-1].hex(),
        checkpoint_size=checkpoint[0], checkpoint_root=checkpoint[1].hex(),
        min_received_at=_iso(min(received)), max_received_at=_iso(max(received)),
        min_occurred_at=_iso(min(occurred)), max_occurred_at=_iso(max(occurred)),
        retain_until=_iso(retain_until), created_at=_iso(created_at),
    )
    return Sealed(data, manifest, sign_manifest(manifest, signer))


def check_file(data: bytes, manifest: Manifest) -> list[tuple[int, bytes, bytes, bytes]]:
    """Check a segment file against its manifest: SHA-256, seq range, leaf hashes of the
    canonical bytes, the hash chain from ``chain_before``, and the range's Merkle root.
    Returns its rows for ``trailseal verify``; ``SegmentError`` says what is wrong."""
    if hashlib.sha256(data).hexdigest() != manifest.sha256:
        raise SegmentError("the file's SHA-256 differs from its manifest")
    try:
        rows = read_rows(data)
    except (pa.ArrowException, OSError) as exc:
        raise SegmentError(f"not a readable Parquet file: {exc}") from None
    seqs = [r[0] for r in rows]
    if not seqs or seqs != list(range(manifest.first_seq, manifest.last_seq + 1)):
        raise SegmentError("the file's seqs differ from the manifest's range")
    try:
        before = bytes.fromhex(manifest.chain_before)
    except ValueError:
        before = b""
    if len(before) != HASH_SIZE:
        raise SegmentError("the manifest's chain_before is not a hash")
    leaves, chains = [r[2] for r in rows], [r[3] for r in rows]
    if {len(h) for h in leaves} | {len(h) for h in chains} != {HASH_SIZE}:
        raise SegmentError(f"the file's hashes are not all {HASH_SIZE} bytes")
    # The whole range's hashes in one call each; where one differs, it is named.
    stored_leaves = b"".join(leaves)
    if leaf_hashes([r[1] for r in rows]) != stored_leaves:
        seq = next(s for s, canonical, leaf, _ in rows if leaf_hash(canonical) != leaf)
        raise SegmentError(f"the leaf hash of seq {seq} does not match its bytes")
    computed = chain_hashes(before, stored_leaves)
    if computed != b"".join(chains):
        at = next(i for i, chain in enumerate(chains)
                  if computed[i * HASH_SIZE:(i + 1) * HASH_SIZE] != chain)
        raise SegmentError(f"the chain hash of seq {seqs[at]} does not follow")
    if chains[-1].hex() != manifest.chain_last or range_root(leaves).hex() != manifest.merkle_root:
        raise SegmentError("the file's chain or Merkle root differs from its manifest")
    return rows
