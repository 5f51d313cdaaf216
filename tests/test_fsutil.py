"""write_once: a file is written whole or not at all, once, whoever else writes it."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from trailseal import fsutil
from trailseal.fsutil import write_once
from trailseal.witness import WormFolder


def test_a_file_is_written_once_and_never_replaced(tmp_path: Path) -> None:
    path = tmp_path / "a" / "segment.parquet"
    assert write_once(path, b"first") is True
    assert write_once(path, b"first") is False  # the same bytes again: nothing to do
    with pytest.raises(FileExistsError):
        write_once(path, b"other")
    assert path.read_bytes() == b"first"
    assert oct(path.stat().st_mode & 0o777) == oct(0o444)
    assert sorted(p.name for p in path.parent.iterdir()) == ["segment.parquet"]


def test_a_write_that_fails_midway_leaves_nothing_behind(tmp_path, monkeypatch):
    # As a crash after some bytes: the path must not exist, or no later write of the
    # same object could ever succeed (a file is never overwritten).
    path = tmp_path / "segment.parquet"
    real_fsync = os.fsync

    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(fsutil.os, "fsync", failing)
    with pytest.raises(OSError):
        write_once(path, b"x" * 100_000)
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(fsutil.os, "fsync", real_fsync)
    assert write_once(path, b"x" * 100_000) is True


def test_writers_of_the_same_object_at_once_all_succeed(tmp_path: Path) -> None:
    # Two archivers sealing one segment (two API processes): each finds either nothing
    # or the whole file, never part of it. Exactly one of them writes it.
    path = tmp_path / "segment.parquet"
    data = os.urandom(8 << 20)
    start = threading.Barrier(8)
    results: list[bool | BaseException] = []

    def write() -> None:
        start.wait()
        try:
            results.append(write_once(path, data))
        except BaseException as exc:  # recorded, and asserted below
            results.append(exc)

    threads = [threading.Thread(target=write) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(map(repr, results)) == sorted(["True"] + ["False"] * 7)
    assert path.read_bytes() == data
    assert [p.name for p in tmp_path.iterdir()] == ["segment.parquet"]


def test_the_witness_lists_no_file_being_written(tmp_path: Path) -> None:
    folder = WormFolder(tmp_path)
    folder.put("acme/00000001", b"note")
    (tmp_path / "acme" / f".00000002.abc{fsutil.PARTIAL}").write_bytes(b"no")
    assert folder.names("acme") == ["acme/00000001"]
