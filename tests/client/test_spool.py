"""The spool's writer: what runs on the caller's thread, and what is left to the sender's.

A slow disk cannot be made here on demand, so ``os.fsync`` is wrapped: to record which
thread calls it and on which file, and, in one test, to hold it until released."""

from __future__ import annotations

import http.server
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from trailseal.client import AuditClient
from trailseal.client.spool import (
    HEADER,
    SEGMENT_BYTES,
    SpoolWriter,
    claim_slot,
    read_records,
    segments,
)

PAYLOAD = b'{"action":"user.role.updated","pad":"' + b"x" * 4000 + b'"}'


@pytest.fixture
def fsyncs(monkeypatch):
    """Every fsync as (thread name, inode), in order; the real fsync still runs."""
    calls: list[tuple[str, int]] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        calls.append((threading.current_thread().name, os.fstat(fd).st_ino))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return calls


def _wait_for(condition: Callable[[], bool], seconds: float = 30) -> None:
    """Poll ``condition`` until it holds or ``seconds`` pass (the caller asserts it)."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def _writer(tmp_path: Path) -> SpoolWriter:
    slot = claim_slot(tmp_path / "spool")
    assert slot is not None
    return SpoolWriter(slot)


def test_a_full_segment_is_sealed_without_an_fsync_on_the_callers_thread(tmp_path, fsyncs):
    writer = _writer(tmp_path)
    per_segment = SEGMENT_BYTES // (HEADER.size + len(PAYLOAD))
    for _ in range(per_segment + 1):  # the last one opens the second segment
        writer.append(PAYLOAD)
    first, second = segments(writer.slot.folder)
    assert writer.path == second
    assert fsyncs == []  # the caller's thread never waited for the disk
    # The sealed segment is cut to its records already, and whole.
    records, end = read_records(first)
    assert len(records) == per_segment and first.stat().st_size == end

    syncer = threading.Thread(target=writer.sync, name="syncer")
    syncer.start()
    syncer.join()
    assert fsyncs == [("syncer", first.stat().st_ino), ("syncer", second.stat().st_ino)]
    writer.sync()  # the sealed one is not fsynced twice
    assert [ino for _, ino in fsyncs[2:]] == [second.stat().st_ino]
    writer.close()


def test_sync_never_holds_the_writer_while_the_disk_works(tmp_path, monkeypatch):
    """While sync() waits on a slow fsync, the caller's thread goes on appending."""
    writer = _writer(tmp_path)
    writer.append(PAYLOAD)
    in_fsync, release = threading.Event(), threading.Event()
    real = os.fsync

    def slow_fsync(fd: int) -> None:
        in_fsync.set()
        release.wait(30)
        real(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    syncer = threading.Thread(target=writer.sync)
    syncer.start()
    try:
        assert in_fsync.wait(30)
        appended = threading.Event()
        appender = threading.Thread(target=lambda: (writer.append(PAYLOAD), appended.set()))
        appender.start()
        # Blocks for good if sync() holds the writer's lock across its fsync.
        assert appended.wait(30), "append() waited for sync()'s fsync"
        appender.join()
    finally:
        release.set()
        syncer.join()
    records, _ = read_records(writer.path, 0, writer.size)
    assert len(records) == 2
    writer.close()


def test_close_fsyncs_everything_and_keeps_no_descriptor(tmp_path, fsyncs):
    opened_before = len(os.listdir("/proc/self/fd"))
    writer = _writer(tmp_path)
    per_segment = SEGMENT_BYTES // (HEADER.size + len(PAYLOAD))
    for _ in range(per_segment + 3):
        writer.append(PAYLOAD)
    writer.close()
    writer.slot.release()
    first, second = segments(writer.slot.folder)
    assert sorted(ino for _, ino in fsyncs) == sorted(
        [first.stat().st_ino, second.stat().st_ino])
    assert second.stat().st_size == 3 * (HEADER.size + len(PAYLOAD))  # cut to its records
    assert len(os.listdir("/proc/self/fd")) == opened_before
    writer.sync()  # after close: nothing left, and no stray descriptor is touched
    assert len(fsyncs) == 2


def test_the_sender_fsyncs_the_spool_during_an_outage(tmp_path, fsyncs):
    """Delivery failing must not leave what waits for it only in the page cache."""
    client = AuditClient("http://127.0.0.1:9", "tsk_none", tmp_path / "spool", max_delay=0.05)
    try:
        client.record("user.role.updated", actor=("user", "7"), target=("user", "42"))
        spooled = client.writer.path.stat().st_ino
        # A retry is counted after the failed pass has ended, its fsync included.
        _wait_for(lambda: client.stats.retries > 0)
        assert client.stats.retries >= 1
        assert ("trailseal-sender", spooled) in fsyncs
    finally:
        client.close(0.1)


class _Busy(http.server.BaseHTTPRequestHandler):
    """A service that answers every delivery 503, Retry-After: 30."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(503)
        self.send_header("Retry-After", "30")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_the_sender_fsyncs_the_spool_while_it_backs_off(tmp_path, fsyncs):
    """Told to come back in 30 s, the sender still fsyncs what is recorded meanwhile."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Busy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    client = AuditClient(url, "tsk_none", tmp_path / "spool", max_delay=0.05)
    try:
        client.record("user.role.updated", actor=("user", "7"), target=("user", "42"))
        _wait_for(lambda: client.stats.retries > 0)
        assert client.stats.retries == 1  # backing off for 30 s from now
        client.record("user.role.deleted", actor=("user", "7"), target=("user", "42"))
        spooled, mark = client.writer.path.stat().st_ino, len(fsyncs)

        def synced_since() -> bool:
            return ("trailseal-sender", spooled) in fsyncs[mark:]

        _wait_for(synced_since, seconds=20)
        assert synced_since(), "the second event waited for the next attempt's fsync"
        assert client.stats.retries == 1  # it was the backoff's, not a new attempt's
    finally:
        client.close(0.1)
        server.shutdown()


def test_a_failing_fsync_is_logged_once_and_leaks_no_descriptor(tmp_path, monkeypatch, caplog):
    writer = _writer(tmp_path)
    writer.append(PAYLOAD)
    opened = len(os.listdir("/proc/self/fd"))

    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing)
    for _ in range(3):
        writer.sync()
    errors = [r for r in caplog.records if "cannot fsync the spool" in r.getMessage()]
    assert len(errors) == 1
    assert len(os.listdir("/proc/self/fd")) == opened
    writer.append(PAYLOAD)  # the caller goes on: the records are in the page cache
    assert len(read_records(writer.path, 0, writer.size)[0]) == 2
    monkeypatch.undo()
    writer.close()
