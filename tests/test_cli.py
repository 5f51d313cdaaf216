"""The command line: tenants, keys, migrate, schema, and `serve --demo` on an embedded
PostgreSQL exactly as `make run` starts it."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time

import httpx
import pytest
from typer.testing import CliRunner

from tests.support import free_port, run
from trailseal import demo, ingest
from trailseal.cli import app
from trailseal.tenants import authenticate


@pytest.fixture
def cli(database_url, monkeypatch):
    monkeypatch.setenv("TRAILSEAL_DATABASE_URL", database_url)
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, list(args))

    return invoke


def _principal(database_url: str, token: str):
    from psycopg import AsyncConnection

    async def go():
        async with await AsyncConnection.connect(database_url, autocommit=True) as conn:
            return await authenticate(conn, token)

    return run(go())


def test_tenant_and_key_lifecycle(cli, database_url):
    name = f"cli-{secrets.token_hex(4)}"
    first = cli("tenant", "create", name)
    assert first.exit_code == 0 and f"tenant {name} created" in first.output
    again = cli("tenant", "create", name)
    assert again.exit_code == 0 and "already exists" in again.output
    assert name in cli("tenant", "list").output.split()

    made = cli("key", "create", "--tenant", name, "--scopes", "ingest,read")
    assert made.exit_code == 0, made.output
    token = re.search(r"^(tsk_\S+)$", made.output, re.M)
    assert token, made.output
    who = _principal(database_url, token[1])
    assert who.tenant == name and who.scopes == {"ingest", "read"}

    listed = cli("key", "list", "--tenant", name)
    assert str(who.key_id) in listed.output
    assert token[1] not in listed.output  # only a hint, never the token

    revoked = cli("key", "revoke", str(who.key_id), "--tenant", name)
    assert revoked.exit_code == 0, revoked.output
    assert _principal(database_url, token[1]) is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["key", "create", "--tenant", "x", "--scopes", "ingest,root"], "scopes must be"),
        (["key", "create", "--tenant", "no-such-tenant", "--scopes", "read"], "no tenant named"),
        (["tenant", "create", "Not Valid!"], "a tenant name is"),
        (["key", "revoke", "nope", "--tenant", "x"], "is not a key id"),
        (["key", "revoke", "01a22390-0000-7000-8000-000000000000", "--tenant", "x"],
         "no live key"),
    ],
)
def test_errors_are_messages_not_tracebacks(cli, args, message):
    result = cli(*args)
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output


def test_migrate_is_idempotent_and_schema_prints(cli):
    result = cli("migrate")
    assert result.exit_code == 0 and "schema is up to date" in result.output
    schema = json.loads(cli("schema").output)
    assert schema["title"] == "trailseal event v1"


def test_serve_demo_on_embedded_postgres(tmp_path):
    """What `make run` does: no database URL, a fresh data dir, demo data, real HTTP."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAILSEAL_")}
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "trailseal", "serve", "--demo", "--port", str(port),
         "--data-dir", str(tmp_path / "data")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    try:
        assert proc.stdout is not None
        token = None
        deadline = time.monotonic() + 120
        while token is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "serve exited early"
            found = re.search(r"TOKEN=(tsk_\S+)", line)
            token = found[1] if found else None
        assert token, "serve --demo printed no token"
        base = f"http://127.0.0.1:{port}"
        seeded = len(demo.events(ingest.now()))
        with httpx.Client(base_url=base, timeout=10) as http:
            events: list = []
            while len(events) < seeded and time.monotonic() < deadline:
                try:
                    r = http.get("/v1/events", headers={"Authorization": f"Bearer {token}"})
                    events = r.json()["events"] if r.status_code == 200 else []
                except httpx.TransportError:
                    pass  # not listening yet
                time.sleep(0.1)
            assert len(events) == seeded
            assert {e["tenant"] for e in events} == {"demo"}
            assert http.get("/readyz").json()["status"] == "ready"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    # The embedded server stopped with the last process that used it.
    assert not (tmp_path / "data" / "pg" / "postmaster.pid").exists()
