"""``trailseal outbox install``, ``trailseal capture install`` and ``trailseal relay``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from tests.pipeline.support import outbox
from tests.support import free_port
from trailseal.cli import app
from trailseal.client.outbox import record_in_transaction


def _invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, list(args), env=env)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def test_outbox_install_twice(app_url):
    for _ in range(2):
        result = _invoke("outbox", "install", "--dsn", app_url)
        assert result.exit_code == 0, result.output
        assert "outbox ready: public.trailseal_outbox" in result.output
    result = _invoke("outbox", "install", "--dsn", app_url, "--schema", "audit")
    assert result.exit_code == 0 and "audit.trailseal_outbox" in result.output


def test_capture_install_then_rows_are_captured(app_url):
    result = _invoke("capture", "install", "--dsn", app_url, "--table", "public.users",
                     "--exclude-columns", "password_hash, email")
    assert result.exit_code == 0, result.output
    assert "capturing public.users (key id)" in _one_line(result.output)
    with psycopg.connect(app_url, autocommit=True) as conn:
        conn.execute("INSERT INTO users VALUES (1, 'a@x', 'viewer', 'h')")
    [event] = outbox(app_url)
    assert set(event["changes"]) == {"id", "role"}


@pytest.mark.parametrize(("args", "message"), [
    (("--table", "public.missing"), "error: no table public.missing in this database"),
    (("--table", "public.keyless"), "has no primary key"),
    (("--table", "public.users", "--exclude-columns", "password"), "has no column 'password'"),
    (("--table", "public.users", "--schema", "nowhere"), "no outbox in schema nowhere"),
])
def test_capture_install_errors_are_one_line_messages(app_url, args, message):
    with psycopg.connect(app_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS public.keyless (a int)")
    result = _invoke("capture", "install", "--dsn", app_url, *args)
    assert result.exit_code == 1
    assert message in _one_line(result.output)
    assert "Traceback" not in result.output


@pytest.mark.parametrize("dsn", [
    "not a dsn at all",
    f"postgresql://nobody@127.0.0.1:{free_port()}/nothing",
])
def test_a_bad_dsn_is_an_error_message(dsn):
    for args in (("outbox", "install"), ("capture", "install", "--table", "public.users")):
        result = _invoke(*args, "--dsn", dsn)
        assert result.exit_code == 1, result.output
        assert result.output.startswith("error: ") and "Traceback" not in result.output
    result = _invoke("relay", "--dsn", dsn, "--url", "http://x", "--token", "t", "--once")
    assert result.exit_code == 1 and result.output.startswith("error: ")


def test_relay_needs_a_url_and_a_token(app_url):
    result = _invoke("relay", "--dsn", app_url, env={"TRAILSEAL_URL": "", "TRAILSEAL_TOKEN": ""})
    assert result.exit_code == 1 and "pass --url or set TRAILSEAL_URL" in result.output
    result = _invoke("relay", "--dsn", app_url, "--url", "http://x",
                     env={"TRAILSEAL_TOKEN": ""})
    assert result.exit_code == 1 and "pass --token or set TRAILSEAL_TOKEN" in result.output


def test_relay_needs_an_outbox(app_url):
    result = _invoke("relay", "--dsn", app_url, "--url", "http://x", "--token", "t",
                     "--schema", "nowhere")
    assert result.exit_code == 1
    assert "no outbox in schema nowhere" in _one_line(result.output)


def _record(url: str, count: int) -> None:
    with psycopg.connect(url) as conn:
        for i in range(count):
            record_in_transaction(conn, "cli.relay.tested", actor=("service", "cli"),
                                  target=("run", str(i)))
        conn.commit()


def test_relay_once_with_the_environment(app_url, service_url, tenant):
    _record(app_url, 7)
    result = _invoke("relay", "--dsn", app_url, "--once", "--batch-size", "3",
                     env={"TRAILSEAL_URL": service_url,
                          "TRAILSEAL_TOKEN": tenant.tokens["ingest"]})
    assert result.exit_code == 0, result.output
    assert "relayed 7 event(s)" in result.output
    assert outbox(app_url) == []


def test_relay_once_reports_a_service_that_is_down(app_url, tenant):
    _record(app_url, 1)
    result = _invoke("relay", "--dsn", app_url, "--once", "--url",
                     f"http://127.0.0.1:{free_port()}", "--token", tenant.tokens["ingest"])
    assert result.exit_code == 1 and result.output.startswith("error: ConnectError")
    assert len(outbox(app_url)) == 1


def test_sigterm_stops_the_relay_cleanly(app_url, service_url, tenant):
    _record(app_url, 3)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2]),
           "TRAILSEAL_URL": service_url, "TRAILSEAL_TOKEN": tenant.tokens["ingest"]}
    proc = subprocess.Popen([sys.executable, "-m", "trailseal", "relay", "--dsn", app_url],
                            env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while outbox(app_url) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert outbox(app_url) == []
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "relayed 3 event(s)" in out
