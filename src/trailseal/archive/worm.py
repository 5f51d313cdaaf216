"""Write-once storage behind one small interface, and the local folder store.

A store keeps objects by key. ``put_new`` writes an object once with a retain-until
date and never replaces one; ``delete`` refuses before that date and while a legal hold
is on; retention is only ever extended (:func:`extended`), never shortened; ``make_cold``
moves an object to the cold tier. The S3 store is in :mod:`trailseal.archive.s3`.

The local store is a folder: ``warm/<key>`` and ``cold/<key>`` hold the objects (files
created exclusively, mode 0444), ``locks/<key>`` their retain-until dates and
``holds/<key>`` marks an object under a legal hold. It keeps trailseal itself from
overwriting or deleting early; it cannot keep out whoever owns the folder, which is what
S3 Object Lock in COMPLIANCE mode is for.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from trailseal.errors import TrailsealError
from trailseal.fsutil import write_once


class WormError(TrailsealError):
    """A write-once store refused an operation."""


class ObjectExists(WormError):
    """An object of that key exists already, with other bytes."""


class ObjectLocked(WormError):
    """An object is under retention or a legal hold, so it cannot be deleted."""


class ObjectMissing(WormError):
    """No object of that key."""


class RetentionShortened(WormError):
    """A retain-until date earlier than the one in force was asked for."""


def extended(current: datetime | None, wanted: datetime) -> datetime:
    """The retain-until date to set when ``wanted`` is asked for and ``current`` is in
    force: ``wanted`` when it is not earlier; otherwise ``RetentionShortened``. Every
    code path that sets a retention goes through here, so none can shorten one."""
    if current is not None and wanted < current:
        raise RetentionShortened(
            f"retention may only be extended: {wanted.isoformat()} is before "
            f"{current.isoformat()}, the retain-until date in force"
        )
    return wanted


class WormStore(Protocol):
    """What the archive needs of write-once storage."""

    def put_new(self, key: str, data: bytes, *, retain_until: datetime,
                legal_hold: bool = False) -> bool:
        """Write ``data`` once (warm tier); False if it exists with these very bytes;
        ``ObjectExists`` if it exists with others."""

    def get(self, key: str) -> bytes:
        """The object's bytes, from whichever tier; ``ObjectMissing`` if none."""

    def retain_until(self, key: str) -> datetime:
        """The retain-until date in force."""

    def extend_retention(self, key: str, retain_until: datetime) -> None:
        """Move the retain-until date later; ``RetentionShortened`` if it is earlier."""

    def set_legal_hold(self, key: str, on: bool) -> None:
        """Put a legal hold on the object, or take it off."""

    def make_cold(self, key: str) -> None:
        """Move the object to the cold tier (same key, same bytes, same retention)."""

    def is_cold(self, key: str) -> bool:
        """Whether the object is in the cold tier."""

    def delete(self, key: str, *, now: datetime) -> None:
        """Delete the object for good; ``ObjectLocked`` before its retain-until date or
        while a legal hold is on (the S3 store lets S3 itself decide; ``now`` is the
        caller's clock, which the local store uses)."""


def _write_once(path: Path, data: bytes) -> bool:
    try:
        return write_once(path, data)
    except FileExistsError:
        raise ObjectExists(f"{path.name} exists with other bytes; it is never overwritten")\
            from None


def _replace(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    os.replace(partial, path)


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise WormError(f"{key!r} is not an object key")
    return key


class LocalStore:
    """A write-once folder (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, tier: str, key: str) -> Path:
        return self.root / tier / _check_key(key)

    def _object(self, key: str) -> Path:
        for tier in ("warm", "cold"):
            path = self._path(tier, key)
            if path.exists():
                return path
        raise ObjectMissing(f"no object {key}")

    def put_new(self, key: str, data: bytes, *, retain_until: datetime,
                legal_hold: bool = False) -> bool:
        cold = self._path("cold", key)
        if cold.exists():
            if cold.read_bytes() == data:
                return False
            raise ObjectExists(f"{key} exists with other bytes; it is never overwritten")
        written = _write_once(self._path("warm", key), data)
        if written:
            _replace(self._path("locks", key), retain_until.isoformat())
            if legal_hold:
                self.set_legal_hold(key, True)
        return written

    def get(self, key: str) -> bytes:
        return self._object(key).read_bytes()

    def retain_until(self, key: str) -> datetime:
        self._object(key)
        return datetime.fromisoformat(self._path("locks", key).read_text())

    def extend_retention(self, key: str, retain_until: datetime) -> None:
        until = extended(self.retain_until(key), retain_until)
        _replace(self._path("locks", key), until.isoformat())

    def set_legal_hold(self, key: str, on: bool) -> None:
        self._object(key)
        mark = self._path("holds", key)
        if on:
            mark.parent.mkdir(parents=True, exist_ok=True)
            mark.touch()
        else:
            mark.unlink(missing_ok=True)

    def legal_hold(self, key: str) -> bool:
        return self._path("holds", key).exists()

    def make_cold(self, key: str) -> None:
        source = self._object(key)
        target = self._path("cold", key)
        if source == target:
            return
        _write_once(target, source.read_bytes())
        source.unlink()

    def is_cold(self, key: str) -> bool:
        return self._path("cold", key).exists()

    def delete(self, key: str, *, now: datetime) -> None:
        path = self._object(key)
        if self.legal_hold(key):
            raise ObjectLocked(f"{key} is under a legal hold")
        until = self.retain_until(key)
        if now.astimezone(UTC) < until:
            raise ObjectLocked(f"{key} is retained until {until.isoformat()}")
        path.unlink()
        self._path("locks", key).unlink(missing_ok=True)
