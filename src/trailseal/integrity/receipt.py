"""Receipts, checked where they are received: an event, its inclusion proof and the signed
checkpoint it leads to, verified against a verifier key the holder trusts — with no call
to the service, so no trust in its word.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from trailseal.integrity.canonical import MAX_SAFE_INTEGER, canonicalize
from trailseal.integrity.checkpoint import open_checkpoint
from trailseal.integrity.hashing import leaf_hash
from trailseal.integrity.notes import Verifier
from trailseal.integrity.proofs import ProofError, verify_inclusion

__all__ = ["CheckedReceipt", "ReceiptError", "verify_receipt"]

DERIVED = ("seq", "leaf_hash", "chain_hash")


class ReceiptError(ValueError):
    """A receipt that does not prove what it claims."""


@dataclass(frozen=True)
class CheckedReceipt:
    """What a verified receipt proves: the event is leaf ``seq`` of the log ``origin``
    whose checkpoint of ``size`` is signed by a trusted key."""

    seq: int
    size: int
    origin: str
    leaf_hash: bytes


def _as_stored(value: Any) -> Any:
    # A JSON parser reads a large integral double (stored as 1e20 → digits) as an int.
    if isinstance(value, dict):
        return {k: _as_stored(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_stored(v) for v in value]
    if type(value) is int and abs(value) > MAX_SAFE_INTEGER:
        return float(value)
    return value


def verify_receipt(
    receipt: Mapping[str, Any], verifier_keys: Sequence[str] | str
) -> CheckedReceipt:
    """Check a receipt from ``GET /v1/events/{id}/receipt``; raise ``ReceiptError``."""
    keys = [verifier_keys] if isinstance(verifier_keys, str) else list(verifier_keys)
    try:
        checkpoint = open_checkpoint(receipt["checkpoint"], [Verifier.from_key(k) for k in keys])
        event = {k: v for k, v in receipt["event"].items() if k not in DERIVED}
        leaf = leaf_hash(canonicalize(_as_stored(event)))
        proof = receipt["inclusion_proof"]
        index, size = int(proof["index"]), int(proof["size"])
        hashes = [base64.b64decode(h, validate=True) for h in proof["hashes"]]
    except (KeyError, TypeError, AttributeError, binascii.Error, ValueError) as exc:
        # NoteError, CheckpointError and CanonicalizationError are ValueErrors too.
        raise ReceiptError(f"not a valid receipt: {exc}") from None
    if size != checkpoint.size:
        raise ReceiptError(f"the proof is for size {size}, the checkpoint for {checkpoint.size}")
    if leaf.hex() != receipt.get("leaf_hash") or index != receipt.get("seq"):
        raise ReceiptError("the event does not hash to the receipt's leaf at its seq")
    if not checkpoint.origin.endswith(f"/trailseal/{event.get('tenant')}"):
        raise ReceiptError(f"the checkpoint is for {checkpoint.origin}, not this event's tenant")
    try:
        verify_inclusion(leaf, index, size, hashes, checkpoint.root_hash)
    except ProofError as exc:
        raise ReceiptError(f"the inclusion proof does not hold: {exc}") from None
    return CheckedReceipt(index, size, checkpoint.origin, leaf)

