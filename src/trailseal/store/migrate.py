"""Versioned, forward-only migrations: ``migrations/NNNN_name.sql``, applied in order.

Each file runs in one transaction together with its row in ``schema_migrations``; an
applied file whose text later changes is refused rather than silently skipped.
Migrations need a superuser, or a role that may create roles and act as
``trailseal_owner``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from importlib import resources

import psycopg

from trailseal.errors import MigrationError

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK = 0x7472_6C73  # advisory lock key for migrations ("trls")


@dataclass(frozen=True)
class Migration:
    """One migration file."""

    version: int
    name: str
    sql: str = field(repr=False)

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available() -> list[Migration]:
    """Every migration shipped with this version of trailseal, in order."""
    found = []
    for entry in resources.files("trailseal.store").joinpath("migrations").iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _NAME.match(entry.name)
        if not match:
            raise MigrationError(f"migration file {entry.name!r} is not named NNNN_name.sql")
        found.append(Migration(int(match[1]), match[2], entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise MigrationError("migration versions must run 1, 2, 3 ... without gaps")
    return found


def applied(conn: psycopg.Connection) -> dict[int, str]:
    """Applied versions and their checksums; empty for a fresh database."""
    row = conn.execute("SELECT to_regclass('trailseal.schema_migrations')").fetchone()
    if row is None or row[0] is None:
        return {}
    return dict(conn.execute("SELECT version, checksum FROM trailseal.schema_migrations"))


def pending(conn: psycopg.Connection) -> list[Migration]:
    """Migrations not yet applied; raises if an applied one was altered or is unknown."""
    done = applied(conn)
    shipped = available()
    for migration in shipped:
        if migration.version in done and done[migration.version] != migration.checksum:
            raise MigrationError(
                f"migration {migration.version:04d}_{migration.name} was changed after it "
                "was applied; migrations are forward-only"
            )
    newer = set(done) - {m.version for m in shipped}
    if newer:
        raise MigrationError(
            f"the database has migrations {sorted(newer)} that this version does not know"
        )
    return [m for m in shipped if m.version not in done]


def migrate(url: str, target: int | None = None) -> list[Migration]:
    """Apply every pending migration (up to version ``target``, if given); returns those
    applied now."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK,))
        try:
            todo = [m for m in pending(conn) if target is None or m.version <= target]
            for migration in todo:
                with conn.transaction():
                    conn.execute(migration.sql.encode())
                    conn.execute("RESET ROLE")
                    conn.execute(
                        "INSERT INTO trailseal.schema_migrations (version, name, checksum)"
                        " VALUES (%s, %s, %s)",
                        (migration.version, migration.name, migration.checksum),
                    )
        except psycopg.Error as exc:
            raise MigrationError(f"migration failed: {exc}") from exc
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK,))
    return todo


def check(url: str) -> None:
    """Raise unless the database is at exactly this version's schema."""
    with psycopg.connect(url, autocommit=True) as conn:
        todo = pending(conn)
    if todo:
        raise MigrationError(
            f"{len(todo)} migration(s) pending; run `trailseal migrate` first"
        )
