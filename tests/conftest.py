"""Shared fixtures: a real PostgreSQL (embedded, or TRAILSEAL_TEST_DATABASE_URL), the
service running in a real uvicorn server, and fresh tenants with keys.

Each test session gets a database of its own, so runs never see each other's rows; tests
inside a session stay apart by using fresh tenants, as real tenants do.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import uvicorn
from psycopg import sql

from tests.support import Tenant, free_port, fresh_database, make_tenant
from trailseal.settings import Settings
from trailseal.store import embedded, migrate
from trailseal.web.app import create_app

TEST_URL_ENV = "TRAILSEAL_TEST_DATABASE_URL"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "database_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.db)


def _fresh_database(server_url: str) -> tuple[str, str]:
    name = f"trailseal_test_{secrets.token_hex(4)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        version = conn.execute("SHOW server_version_num").fetchone()
        assert version and int(version[0]) >= 150000, "trailseal needs PostgreSQL 15+"
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = psycopg.conninfo.make_conninfo(server_url, dbname=name)
    return name, url


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database of this session's own; a superuser connection URL."""
    server_url = os.environ.get(TEST_URL_ENV)
    data = None
    if server_url is None:
        # Outside pytest's temporary folders, which a concurrent pytest run may prune.
        data = Path(tempfile.mkdtemp(prefix="trailseal-test-pg-"))
        server_url = embedded.start(data, database="postgres")
    name, url = _fresh_database(server_url)
    migrate.migrate(url)
    yield url
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
    if data is not None:
        embedded.stop(data)
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def own_database(database_url):
    """A migrated database of this test's own: no other sequencer works in it."""
    with fresh_database(database_url, "trailseal_prod") as url:
        migrate.migrate(url)
        yield url


@pytest.fixture
def tenant(database_url: str) -> Tenant:
    return make_tenant(database_url, "a")


@pytest.fixture
def other_tenant(database_url: str) -> Tenant:
    return make_tenant(database_url, "b")


@pytest.fixture(scope="session")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The service's settings in tests: its own data dir (signing key, witness folder)."""
    return Settings(
        database_url=database_url,
        data_dir=Path(tmp_path_factory.mktemp("data")),
        log_origin="audit.test",
        sequencer_idle_seconds=0.05,
        pool_max_size=20,
        run_archiver=False,  # archive tests run their own, with their own store and clock
    )


@pytest.fixture(scope="session")
def service_url(database_url: str, settings: Settings) -> Iterator[str]:
    """The API with its in-process sequencer, served by uvicorn on a free port."""
    app = create_app(settings, database_url, cursor_key=secrets.token_bytes(32))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "service did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def client(service_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service_url, timeout=30) as http:
        yield http
