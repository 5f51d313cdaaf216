"""UUIDv7 (RFC 9562): 48-bit Unix milliseconds, version 7, variant 10, random rest.

Random bits come from ``os.urandom`` (never a seeded generator: forked workers would
repeat each other's ids, and ids are how the service dedupes), read in blocks to save a
system call per id; the block is discarded in a forked child.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

_BLOCK = 10 * 512
_pool = b""
_offset = _BLOCK
_lock = threading.Lock()


def _reset_after_fork() -> None:
    global _pool, _offset, _lock
    _pool, _offset, _lock = b"", _BLOCK, threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)


def _random80() -> int:
    global _pool, _offset
    with _lock:
        if _offset >= len(_pool):
            _pool, _offset = os.urandom(_BLOCK), 0
        chunk = _pool[_offset : _offset + 10]
        _offset += 10
    return int.from_bytes(chunk, "big")


def _uuid7_int(unix_ms: int | None) -> int:
    ms = time.time_ns() // 1_000_000 if unix_ms is None else unix_ms
    rand = _random80()
    value = (ms & (2**48 - 1)) << 80 | 0x7 << 76 | (rand >> 62 & 0xFFF) << 64
    return value | 0b10 << 62 | rand & (2**62 - 1)


def uuid7(unix_ms: int | None = None) -> uuid.UUID:
    """A new UUIDv7 for ``unix_ms`` (now, if None)."""
    return uuid.UUID(int=_uuid7_int(unix_ms))


def uuid7_text(unix_ms: int | None = None) -> str:
    """A new UUIDv7 for ``unix_ms`` (now, if None) in its text form, as ``str(uuid7())``
    gives it but without the ``UUID`` object (on ``record()``'s path, for every event)."""
    h = f"{_uuid7_int(unix_ms):032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
