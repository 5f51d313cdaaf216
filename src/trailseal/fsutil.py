"""Write-once files: the one way both the witness folder and the local archive store put
bytes on disk that must never change."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

PARTIAL = ".partial"  # the suffix of a file still being written (named with a leading dot)


def write_once(path: Path, data: bytes) -> bool:
    """Create ``path`` holding ``data``, mode 0444, synced to disk with its directory entry;
    False if it already holds exactly ``data``. Raises ``FileExistsError`` if it exists
    with other bytes: a written file is never overwritten.

    The bytes are written and synced under a hidden temporary name in the same folder
    and only then linked as ``path`` (``link`` fails if ``path`` exists, atomically), so
    ``path`` never holds part of its bytes: not for a concurrent writer of the same
    object comparing what it finds, and not after a crash mid-write, which would
    otherwise leave a truncated file that no later write could ever replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=PARTIAL)
    partial = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(partial, 0o444)  # whatever the umask made of it
        try:
            os.link(partial, path)
        except FileExistsError:
            if path.read_bytes() == data:
                return False
            raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return True
