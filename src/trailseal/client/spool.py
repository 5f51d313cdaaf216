"""The durable local spool: append-only segment files with a checksum per record.

Layout of a spool directory::

    slots/<k>.lock     held (flock) by the one process writing slot k
    slots/<k>.json     {"source": ..., "next_seq": ...}: the slot's stable source id, and
                       the next number once every segment of it has been shipped
    <source>/<n>.seg   records: big-endian u32 length, u32 CRC-32, then the event's JSON
    <source>/<n>.ack   how many bytes of <n>.seg the service has acknowledged

Segments are allocated whole when created (so a full disk shows as an error then, never
as a fault mid-write) and written through a shared memory map: a record is in the
operating system's page cache once it is copied in, so it survives a SIGKILL of the
process, without a system call per record. A record's bytes go in before its header, and
unwritten space reads as zeros, so a reader stops at the first zero length or bad
checksum. fsync runs on the sender's thread (``SpoolWriter.sync``), never the caller's:
a segment that fills is cut to its records and unmapped on the caller's thread, and
fsynced by the next sync.
Each process writes its own slot, so its records are numbered 0, 1, 2 ... without gaps
(``context.source_seq``); a slot whose process died is adopted by another's sender.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import mmap
import os
import socket
import struct
import threading
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("trailseal.client")

HEADER = struct.Struct(">II")
MAX_RECORD = 1 << 20
SEGMENT_BYTES = 4 << 20


@dataclass(frozen=True)
class Record:
    """One spooled event: where it ends in its segment, and its JSON bytes."""

    end: int
    payload: bytes


def read_records(
    path: Path, start: int = 0, stop: int | None = None
) -> tuple[list[Record], int]:
    """The valid records of a segment between byte ``start`` and ``stop`` (the end of the
    file if None), and the offset where valid data ends (reading stops at unwritten
    space, a torn record or a bad checksum)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(start)
            data = handle.read() if stop is None else handle.read(max(0, stop - start))
    except FileNotFoundError:
        return [], start
    records, offset = [], 0
    while offset + HEADER.size <= len(data):
        length, crc = HEADER.unpack_from(data, offset)
        end = offset + HEADER.size + length
        if length == 0 or length > MAX_RECORD or end > len(data):  # zero: unwritten space
            break
        payload = data[offset + HEADER.size : end]
        if zlib.crc32(payload) != crc:
            break
        records.append(Record(start + end, payload))
        offset = end
    return records, start + offset


def _segment_number(path: Path) -> int:
    return int(path.stem)


def segments(folder: Path) -> list[Path]:
    """A source's segments, oldest first."""
    if not folder.is_dir():
        return []
    return sorted(folder.glob("*.seg"), key=_segment_number)


def read_ack(segment: Path) -> int:
    try:
        return int(segment.with_suffix(".ack").read_text() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def write_ack(segment: Path, offset: int) -> None:
    """Record that the first ``offset`` bytes of ``segment`` were delivered (atomic)."""
    temporary = segment.with_suffix(".ack.tmp")
    temporary.write_text(str(offset))
    os.replace(temporary, segment.with_suffix(".ack"))


class Slot:
    """A claimed slot: its lock, its source id, its state file."""

    def __init__(self, spool: Path, index: int, lock_fd: int) -> None:
        self.spool = spool
        self.index = index
        self.lock_fd = lock_fd
        self.state_path = spool / "slots" / f"{index}.json"
        source = self._state().get("source")
        if not isinstance(source, str):
            host = "".join(c if c.isalnum() or c in ".-" else "-" for c in socket.gethostname())
            source = f"{host[:60]}.{uuid.uuid4().hex[:16]}"
            self.save(0, source)
        self.source: str = source
        self.folder = spool / self.source

    def _state(self) -> dict[str, object]:
        try:
            loaded = json.loads(self.state_path.read_text())
            return loaded if isinstance(loaded, dict) else {}
        except (FileNotFoundError, ValueError):
            return {}

    def saved_next_seq(self) -> int:
        value = self._state().get("next_seq", 0)
        return value if isinstance(value, int) else 0

    def save(self, next_seq: int, source: str | None = None) -> None:
        temporary = self.state_path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"source": source or self.source, "next_seq": next_seq}))
        os.replace(temporary, self.state_path)

    def release(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.lock_fd)


def claim_slot(spool: Path, *, adopt: bool = False, skip: set[int] | None = None) -> Slot | None:
    """Lock the lowest free slot (``adopt``: only existing slots, for shipping what a dead
    process left). None when there is nothing to claim."""
    slots = spool / "slots"
    slots.mkdir(parents=True, exist_ok=True)
    existing = sorted(int(p.stem) for p in slots.glob("*.lock"))
    candidates = existing if adopt else [*existing, (max(existing) + 1 if existing else 0)]
    for index in candidates:
        if skip and index in skip:
            continue
        fd = os.open(slots / f"{index}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return Slot(spool, index, fd)
    return None


class SpoolWriter:
    """Appends records to the segments of one claimed slot (on the caller's thread)."""

    def __init__(self, slot: Slot) -> None:
        self.slot = slot
        self.lock = threading.Lock()
        self._unsynced: list[int] = []  # sealed segments' descriptors, for sync to fsync
        self._sync_error: str | None = None
        self.fd = -1
        slot.folder.mkdir(parents=True, exist_ok=True)
        existing = segments(slot.folder)
        self.next_seq = slot.saved_next_seq()
        self.segment_number = _segment_number(existing[-1]) if existing else 0
        self.path = slot.folder / f"{self.segment_number:012d}.seg"
        start = 0
        if existing:
            _, start = read_records(self.path)
        # The last number used is in the newest segment holding a record (the newest may
        # be empty, just rotated to); the slot's state covers segments already deleted.
        for segment in reversed(existing):
            records, _ = read_records(segment)
            if records:
                last = json.loads(records[-1].payload)["context"]["source_seq"]
                self.next_seq = max(self.next_seq, last + 1)
                break
        self._open(start)

    def _open(self, start: int) -> None:
        """Map the current segment, allocated whole, zeroed from ``start`` (dropping any
        torn record a crash left there)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.ftruncate(fd, start)
            os.posix_fallocate(fd, 0, SEGMENT_BYTES)
            # MAP_POPULATE reads every page in now. A shared mapping's page is mapped
            # read-only, though, so its first write (and its first after each fsync)
            # still faults for the file system to mark it dirty: about 3 us.
            flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
            self.map = mmap.mmap(fd, SEGMENT_BYTES, flags, mmap.PROT_WRITE)
        except OSError:
            os.close(fd)
            raise
        self.fd = fd
        self.size = start

    def append(self, payload: bytes) -> None:
        """Write one record; on return it survives the death of this process."""
        length = len(payload)
        if length == 0 or length > MAX_RECORD:
            raise ValueError(f"a spooled record is 1 to {MAX_RECORD} bytes; got {length}")
        if self.size + HEADER.size + length > SEGMENT_BYTES:
            self._rotate()
        body = self.size + HEADER.size
        self.map[body : body + length] = payload
        HEADER.pack_into(self.map, self.size, length, zlib.crc32(payload))
        self.size = body + length

    def _rotate(self) -> None:
        self._seal()
        self.segment_number += 1
        self.path = self.slot.folder / f"{self.segment_number:012d}.seg"
        self._open(0)

    def _seal(self) -> None:
        """Cut the segment to the bytes written (a sealed segment's size is where its
        records end) and unmap it; its fsync is left to the next ``sync``."""
        self.map.close()
        fd, self.fd = self.fd, -1
        self._unsynced.append(fd)  # closed by sync, whether the cut below fails or not
        os.ftruncate(fd, self.size)

    def sync(self) -> None:
        """fsync what has been written: the segments sealed since the last call, then the
        active one (for power loss; a process crash needs none).

        The writer's lock is held only to take the descriptors, never while the disk
        works, and os.fsync lets go of the GIL, where mmap.flush (msync) holds it: the
        caller's thread goes on writing meanwhile. On Linux an fsync of the file writes
        back what was written through its shared mapping, as msync would."""
        with self.lock:
            fds, self._unsynced = self._unsynced, []
            with contextlib.suppress(OSError):  # closed: nothing active
                fds.append(os.dup(self.fd))
        for fd in fds:
            try:
                os.fsync(fd)
            except OSError as exc:
                if str(exc) != self._sync_error:  # once, not every sync while it lasts
                    log.error("trailseal: cannot fsync the spool (%s)", exc)
                self._sync_error = str(exc)
            else:
                self._sync_error = None
            finally:
                os.close(fd)

    def close(self) -> None:
        """Seal the active segment and fsync everything written."""
        with contextlib.suppress(OSError, ValueError), self.lock:
            if self.fd >= 0:
                self._seal()
        self.sync()


def pending(
    folder: Path, active: Path | None = None, active_size: int = 0
) -> Iterator[tuple[Path, list[Record], int]]:
    """For each segment of a source: the segment, its undelivered records, and the
    acknowledged offset they start after (the active one is read only as far as it is
    written)."""
    for segment in segments(folder):
        start = read_ack(segment)
        stop = active_size if segment == active else None
        records, _ = read_records(segment, start, stop)
        yield segment, records, start
