"""Where the service's database and secrets come from, for every entry point."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from trailseal.settings import Settings
from trailseal.store import embedded, migrate


@dataclass(frozen=True)
class Runtime:
    """The resolved database URL and cursor key, and whether the database is embedded."""

    database_url: str
    cursor_key: bytes
    embedded: bool


def _secret(data_dir: Path, name: str) -> bytes:
    path = data_dir / name
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    return bytes.fromhex(path.read_text().strip())


def resolve(settings: Settings, *, migrate_embedded: bool = True) -> Runtime:
    """Use ``TRAILSEAL_DATABASE_URL`` if set; otherwise start the embedded PostgreSQL in
    the data directory (and bring its schema up to date)."""
    if settings.secret_key:
        cursor_key = settings.secret_key.encode()
    else:
        cursor_key = _secret(settings.data_dir, "secret_key")
    if settings.database_url:
        return Runtime(settings.database_url, cursor_key, embedded=False)
    url = embedded.start(settings.data_dir)
    if migrate_embedded:
        migrate.migrate(url)
    return Runtime(url, cursor_key, embedded=True)
