"""Fixtures of the archive tests: a signing key and a local write-once store."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.archive.support import Clock, start_clock
from trailseal.archive.worm import LocalStore
from trailseal.integrity.notes import Signer, generate_key


@pytest.fixture(scope="session")
def signer() -> Signer:
    return Signer.from_key(generate_key("audit.test/trailseal")[0])


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "archive")


@pytest.fixture
def clock() -> Clock:
    return start_clock()
