"""Witnessed checkpoints: every signed checkpoint also leaves the database.

Each checkpoint is written once to a write-once folder (files created exclusively, mode
0444, never overwritten) and, when configured, POSTed to a witness URL. A database
restored from an old backup, truncated, or rewritten cannot take these copies with it, so
``trailseal verify`` compares the database against them.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import httpx

from trailseal.fsutil import write_once

log = logging.getLogger(__name__)


class WormFolder:
    """A local write-once folder: ``put`` creates a file exclusively, read-only, and
    never replaces one."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, name: str, data: bytes) -> bool:
        """Write ``data`` as ``name``; False if it exists with the same bytes already.
        Raises ``FileExistsError`` if it exists with other bytes."""
        return write_once(self.root / name, data)

    def get(self, name: str) -> bytes:
        return (self.root / name).read_bytes()

    def names(self, prefix: str) -> list[str]:
        """Names under the folder ``prefix``, sorted."""
        folder = self.root / prefix
        if not folder.is_dir():
            return []
        return sorted(f"{prefix}/{p.name}" for p in folder.iterdir()
                      if p.is_file() and not p.name.startswith("."))  # not one being written


def checkpoint_name(tenant: str, size: int) -> str:
    """Where a tenant's checkpoint of ``size`` lives (zero-padded, so names sort by size)."""
    return f"{tenant}/checkpoints/{size:020d}"


class Witness:
    """Publishes checkpoints outside the database."""

    def __init__(self, folder: WormFolder | None, url: str | None = None) -> None:
        self.folder = folder
        self.url = url
        self.failures = 0
        self.failing = False  # the last publish failed somewhere: an alert on /readyz

    async def publish(self, tenant: str, size: int, note: str) -> None:
        """Write the checkpoint to the folder and POST it to the URL; failures are logged
        and counted, never raised: the events are already committed, and the next
        checkpoint covers them too."""
        data = note.encode()
        failures = self.failures
        if self.folder is not None:
            try:
                await asyncio.to_thread(self.folder.put, checkpoint_name(tenant, size), data)
            except OSError:
                self.failures += 1
                log.exception("could not write the checkpoint of %s at size %d", tenant, size)
        if self.url:
            try:
                async with httpx.AsyncClient(timeout=5) as client:
                    response = await client.post(
                        self.url, content=data, headers={"Content-Type": "text/plain"}
                    )
                    response.raise_for_status()
            except httpx.HTTPError:
                self.failures += 1
                log.exception("witness %s refused the checkpoint of %s", self.url, tenant)
        self.failing = self.failures > failures


def witnessed(folder: WormFolder, tenant: str) -> list[tuple[int, str]]:
    """The checkpoints of ``tenant`` in the folder, by size: (size, signed note)."""
    found = []
    for name in folder.names(f"{tenant}/checkpoints"):
        found.append((int(name.rsplit("/", 1)[1]), folder.get(name).decode()))
    return found
