"""Where the service's database and secrets come from, for every entry point."""

from __future__ import annotations

import gc
import os
import secrets
import socket
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote, urlsplit

from psycopg_pool import AsyncConnectionPool

from trailseal.archive.archiver import Archiver
from trailseal.archive.worm import LocalStore, WormStore
from trailseal.errors import ConfigurationError
from trailseal.integrity.notes import NoteError, Signer, generate_key
from trailseal.leases import Leases
from trailseal.reading.warm import Warm
from trailseal.sequencer import Sequencer
from trailseal.settings import Settings
from trailseal.store import embedded, migrate
from trailseal.witness import Witness, WormFolder


def freeze_startup() -> None:
    """Leave what a long-running process has made by the end of its start (its modules,
    classes, app and settings: about 100,000 objects) out of the cyclic garbage
    collector's passes from now on. Every full pass walked them all, and ingest, whose
    batches make tens of thousands of short-lived objects each, set one off every few
    batches: a quarter of its Python per event. The garbage of the start is collected
    first; what is frozen then lives as long as the process, as it would have anyway.
    For the commands that run a service (`serve`, `sequencer`, `archiver`), never for
    a process that makes and drops apps or workers (tests, an embedding program)."""
    gc.collect()
    gc.freeze()


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


def origin_host(settings: Settings) -> str:
    """The host part of every log origin."""
    return settings.log_origin or socket.gethostname()


def key_name(settings: Settings) -> str:
    """The name of the log key: ``<host>/trailseal``, the prefix of every origin."""
    return f"{origin_host(settings)}/trailseal"


def write_signing_key(path: Path, name: str) -> str:
    """Create a new signing key file at ``path`` (mode 0600, never overwriting);
    returns its verifier key."""
    signer_key, verifier_key = generate_key(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(signer_key + "\n")
    return verifier_key


def load_signer(settings: Settings) -> Signer:
    """The checkpoint signer: ``TRAILSEAL_SIGNING_KEY_FILE``, or ``<data dir>/log.key``,
    created on first use. Only sequencing processes call this."""
    path = settings.signing_key_file
    if path is None:
        path = settings.data_dir / "log.key"
        if not path.exists():
            write_signing_key(path, key_name(settings))
    try:
        return Signer.from_key(path.read_text().strip())
    except OSError as exc:
        raise ConfigurationError(f"cannot read the signing key {path}: {exc}") from None
    except NoteError as exc:
        raise ConfigurationError(f"{path} does not hold a signing key: {exc}") from None


def witness(settings: Settings) -> Witness:
    """Where checkpoints go besides the database."""
    folder = WormFolder(settings.witness_dir or settings.data_dir / "witness")
    return Witness(folder, settings.witness_url)


def build_sequencer(pool: AsyncConnectionPool, settings: Settings) -> Sequencer:
    """A sequencer configured from ``settings``: signing key, origin, witness, batches."""
    return Sequencer(
        pool,
        load_signer(settings),
        origin_host=origin_host(settings),
        witness=witness(settings),
        batch_size=settings.sequencer_batch_size,
        idle_seconds=settings.sequencer_idle_seconds,
        leases=Leases(pool, settings.sequencer_lease_seconds),
    )


def archive_store(settings: Settings) -> WormStore:
    """The write-once store of segments: ``TRAILSEAL_ARCHIVE_URL`` (file:// or s3://),
    or ``<data dir>/archive``."""
    url = settings.archive_url
    if url is None:
        return LocalStore(settings.data_dir / "archive")
    parsed = urlsplit(url)
    if parsed.scheme == "file":
        return LocalStore(Path(unquote(parsed.path)))
    if parsed.scheme == "s3" and parsed.netloc:
        from trailseal.archive.s3 import S3Store

        store: WormStore = S3Store.connect(
            parsed.netloc, parsed.path.strip("/"), endpoint_url=settings.s3_endpoint_url,
            cold_storage_class=settings.s3_cold_storage_class,
        )
        return store
    raise ConfigurationError(
        f"TRAILSEAL_ARCHIVE_URL must be file:///path or s3://bucket/prefix, not {url!r}")


def build_warm(settings: Settings) -> Warm:
    """The reader of warm segments (events that left PostgreSQL), through a local cache."""
    return Warm(archive_store(settings),
                settings.archive_cache_dir or settings.data_dir / "segment-cache")


def build_archiver(settings: Settings, store: WormStore | None = None) -> Archiver:
    """An archiver configured from ``settings``: store, signing key, segment limits."""
    return Archiver(
        store if store is not None else archive_store(settings),
        load_signer(settings),
        max_events=settings.segment_max_events,
        max_age=timedelta(seconds=settings.segment_max_age_seconds),
        default_preset=settings.retention_preset,
    )
