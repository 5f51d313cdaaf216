"""Opaque, tamper-proof keyset cursors.

A cursor names a position ``(occurred_at, seq)`` (or, for the SIEM stream, just a seq)
and is bound by an HMAC to the tenant and the exact filters it was issued for: a cursor
edited by hand, or replayed against another tenant or another query, is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime

from trailseal.errors import InvalidInput

_TAG_BYTES = 16


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _tag(key: bytes, tenant: str, query: str, payload: bytes) -> bytes:
    message = b"\x00".join((tenant.encode(), query.encode(), payload))
    return hmac.new(key, message, hashlib.sha256).digest()[:_TAG_BYTES]


def _payload(key: bytes, tenant: str, query: str, cursor: str) -> bytes:
    """The payload of ``cursor`` once its tag checks out; ValueError otherwise."""
    raw = _unb64(cursor)
    payload, tag = raw[:-_TAG_BYTES], raw[-_TAG_BYTES:]
    if len(raw) <= _TAG_BYTES or not hmac.compare_digest(tag, _tag(key, tenant, query, payload)):
        raise ValueError("bad tag")
    return payload


def encode(key: bytes, tenant: str, query: str, occurred_at: datetime, seq: int) -> str:
    """A cursor for the position just after ``(occurred_at, seq)`` of ``query``."""
    payload = json.dumps([occurred_at.isoformat(), seq], separators=(",", ":")).encode()
    return _b64(payload + _tag(key, tenant, query, payload))


def decode(key: bytes, tenant: str, query: str, cursor: str) -> tuple[datetime, int]:
    """The position in ``cursor``; ``InvalidInput`` if it was not issued for this tenant
    and query by this server."""
    try:
        when, seq = json.loads(_payload(key, tenant, query, cursor))
        return datetime.fromisoformat(when), int(seq)
    except (ValueError, TypeError, UnicodeDecodeError):
        raise InvalidInput(
            "the cursor is not valid for this query; start again without it"
        ) from None


def encode_seq(key: bytes, tenant: str, purpose: str, seq: int) -> str:
    """A cursor naming the position ``seq`` of ``tenant``'s log for ``purpose`` (a
    label such as ``"stream"``, so it is never taken for a cursor of another kind)."""
    payload = json.dumps([seq], separators=(",", ":")).encode()
    return _b64(payload + _tag(key, tenant, purpose, payload))


def decode_seq(key: bytes, tenant: str, purpose: str, cursor: str) -> int:
    """The seq in ``cursor``; ``InvalidInput`` if this server did not issue it for this
    tenant and purpose."""
    try:
        (seq,) = json.loads(_payload(key, tenant, purpose, cursor))
        if not isinstance(seq, int) or seq < 0:
            raise ValueError("bad seq")
        return seq
    except (ValueError, TypeError, UnicodeDecodeError):
        raise InvalidInput("the cursor is not valid here; start again without it") from None
