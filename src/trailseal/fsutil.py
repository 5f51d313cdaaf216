"""Write-once files: the one way both the witness folder and the local archive store put
bytes on disk that must never change."""

from __future__ import annotations

import os
from pathlib import Path


def write_once(path: Path, data: bytes) -> bool:
    """Create ``path`` holding ``data``, mode 0444, synced to disk with its directory entry;
    False if it already holds exactly ``data``. Raises ``FileExistsError`` if it exists
    with other bytes: a written file is never overwritten."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    except FileExistsError:
        if path.read_bytes() == data:
            return False
        raise
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(path, 0o444)  # whatever the umask made of it
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return True
