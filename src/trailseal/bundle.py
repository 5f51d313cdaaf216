"""Offline evidence bundles: a run of a tenant's events that anyone can check against a
signed checkpoint with no database and no network.

A bundle is a zip of:

- ``manifest.json``  tenant, origin, the seq range ``[first, end)``, the checkpoint size;
- ``checkpoint``     the signed C2SP checkpoint (tree of ``size`` leaves);
- ``key``            the verifier key(s) of the log, for reference (a checker trusts only
                     the key it is given);
- ``entries.jsonl``  each event's canonical bytes, one per line, seq ``first`` onwards
                     (canonical JSON never holds a raw newline);
- ``proof.json``     ``leaf_hashes`` of the range, ``prefix`` (the subtree hashes covering
                     seq 0 to ``first``) and ``consistency`` (from the tree of ``end``
                     leaves to the checkpoint's), all base64.

Checking: prefix + leaf hashes give the root of the tree of ``end`` leaves; with the
consistency proof that root must lead to the signed checkpoint's root, which
authenticates every leaf hash; each entry must then hash to its leaf, so an altered entry
is named by seq, and a missing one too.
"""

from __future__ import annotations

import base64
import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from psycopg import AsyncConnection

from trailseal.errors import InvalidInput, NotFound
from trailseal.integrity import canonicalize, leaf_hash
from trailseal.integrity.canonical import parse_canonical
from trailseal.integrity.checkpoint import CheckpointError, open_checkpoint
from trailseal.integrity.compact import range_root
from trailseal.integrity.notes import NoteError, Verifier
from trailseal.integrity.proofs import ProofError, root_nodes, verify_consistency
from trailseal.reading.tree import b64, latest_checkpoint, open_tree, verifier_keys
from trailseal.store import Role, scoped

FORMAT = "trailseal-bundle/1"
MAX_MEMBER_BYTES = 4 * 1024**3


async def export_bundle(
    conn: AsyncConnection,
    tenant: str,
    out: Path,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    """Write the bundle of ``tenant``'s events received in ``[since, until)`` (the
    smallest run of seqs holding all of them) to ``out``; returns its manifest."""
    async with scoped(conn, Role.READER, tenant):
        checkpoint = await latest_checkpoint(conn, tenant)
        if checkpoint is None:
            raise NotFound(f"tenant {tenant!r} has no checkpoint yet")
        cur = await conn.execute(
            "SELECT min(seq), max(seq) FROM trailseal.events WHERE tenant = %s"
            " AND received_at >= coalesce(%s::timestamptz, '-infinity')"
            " AND received_at < coalesce(%s::timestamptz, 'infinity')"
            " AND seq < %s",
            (tenant, since, until, checkpoint.size),
        )
        row = await cur.fetchone()
        if row is None or row[0] is None:
            raise InvalidInput("no events in that range")
        first, end = int(row[0]), int(row[1]) + 1
        tree = await open_tree(conn, tenant)
        prefix_nodes = root_nodes(first)
        known = await tree.node_hashes(prefix_nodes)
        prefix = [known[n] for n in prefix_nodes]
        consistency = [] if end == checkpoint.size else await tree.consistency_proof(
            end, checkpoint.size
        )
        keys = await verifier_keys(conn)
        manifest = {
            "format": FORMAT,
            "tenant": tenant,
            "origin": _origin(checkpoint.note),
            "first": first,
            "end": end,
            "size": checkpoint.size,
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
        }
        leaves: list[bytes] = []
        # Written aside and renamed into place: a failed export leaves no half bundle.
        partial = out.with_name(out.name + ".partial")
        try:
            with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                archive.writestr("manifest.json", json.dumps(manifest, indent=2))
                archive.writestr("checkpoint", checkpoint.note)
                archive.writestr("key", "".join(k + "\n" for k in keys))
                with archive.open("entries.jsonl", "w", force_zip64=True) as entries:
                    async with conn.cursor(name="trailseal_bundle") as rows:
                        await rows.execute(
                            "SELECT canonical, leaf_hash FROM trailseal.events WHERE tenant = %s"
                            " AND seq >= %s AND seq < %s ORDER BY seq",
                            (tenant, first, end),
                        )
                        async for canonical, leaf in rows:
                            entries.write(bytes(canonical) + b"\n")
                            leaves.append(bytes(leaf))
                proof = {"leaf_hashes": b64(leaves), "prefix": b64(prefix),
                         "consistency": b64(consistency)}
                archive.writestr("proof.json", json.dumps(proof))
            os.replace(partial, out)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    return manifest


def _origin(note: str) -> str:
    return note.split("\n", 1)[0]


@dataclass
class BundleCheck:
    """What checking a bundle found; ``problems`` empty means it verified."""

    tenant: str = ""
    first: int = 0
    end: int = 0
    size: int = 0
    events: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _unb64(items: Any, what: str) -> list[bytes]:
    if not isinstance(items, list):
        raise ValueError(f"{what} must be a list")
    out = [base64.b64decode(x, validate=True) for x in items]
    if any(len(h) != 32 for h in out):
        raise ValueError(f"{what} must hold 32-byte hashes")
    return out


def check_bundle(data: bytes, verifier_keys: list[str]) -> BundleCheck:
    """Check a bundle's bytes against the verifier keys; never raises for bad bundles."""
    result = BundleCheck()
    try:
        verifiers = [Verifier.from_key(k) for k in verifier_keys]
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for info in archive.infolist():
                if info.file_size > MAX_MEMBER_BYTES:
                    raise ValueError(f"{info.filename} is too large")
            manifest = json.loads(archive.read("manifest.json"))
            note = archive.read("checkpoint").decode()
            proof = json.loads(archive.read("proof.json"))
            lines = archive.read("entries.jsonl").split(b"\n")
    except (zipfile.BadZipFile, KeyError, ValueError, UnicodeDecodeError, NoteError) as exc:
        result.problems.append(f"not a readable bundle: {exc}")
        return result
    try:
        _check(manifest, note, proof, lines, verifiers, result)
    except (ValueError, TypeError, KeyError, ProofError, CheckpointError, NoteError) as exc:
        result.problems.append(f"the bundle's proof does not hold: {exc}")
    return result


def _check(
    manifest: Any,
    note: str,
    proof: Any,
    lines: list[bytes],
    verifiers: list[Verifier],
    result: BundleCheck,
) -> None:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"the manifest is not {FORMAT}")
    result.tenant = str(manifest["tenant"])
    first, end = int(manifest["first"]), int(manifest["end"])
    result.first, result.end = first, end
    checkpoint = open_checkpoint(note, verifiers)
    result.size = checkpoint.size
    if not checkpoint.origin.endswith(f"/trailseal/{result.tenant}"):
        raise ValueError(f"the checkpoint is for {checkpoint.origin}, not this tenant")
    leaves = _unb64(proof["leaf_hashes"], "leaf_hashes")
    if not 0 <= first < end <= checkpoint.size or len(leaves) != end - first:
        raise ValueError("the range does not fit the checkpoint")
    size, root = range_root(first, _unb64(proof["prefix"], "prefix"), leaves)
    if end == checkpoint.size:
        if root != checkpoint.root_hash:
            raise ProofError("the leaves do not reproduce the checkpoint's root")
    else:
        verify_consistency(size, checkpoint.size, _unb64(proof["consistency"], "consistency"),
                           root, checkpoint.root_hash)
    # The leaf hashes are now authenticated by the signature; check each entry against them.
    if lines and lines[-1] == b"":
        lines.pop()
    hashed = [leaf_hash(line) for line in lines]
    i = j = 0  # i: the leaf (seq first + i), j: the line
    while i < len(leaves):
        seq = first + i
        if j >= len(lines) or (hashed[j] != leaves[i] and i + 1 < len(leaves)
                               and hashed[j] == leaves[i + 1]):
            result.problems.append(f"event at seq {seq} is missing")
            i += 1
            continue
        if hashed[j] != leaves[i]:
            result.problems.append(f"event at seq {seq} was altered")
        else:
            document = parse_canonical(lines[j])
            if (not isinstance(document, dict) or canonicalize(document) != lines[j]
                    or document.get("tenant") != result.tenant):
                result.problems.append(f"event at seq {seq} is not an event of this tenant")
            else:
                result.events += 1
        i, j = i + 1, j + 1
    if j < len(lines):
        result.problems.append(f"{len(lines) - j} line(s) that are no event of the range")
