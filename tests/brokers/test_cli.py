"""``trailseal consume``: refuses what cannot work with one line, and, killed over and over
mid-stream, loses and duplicates nothing."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from tests.brokers.support import AMQP_URL, NATS_URL, Broker, encoded, landed, sequenced_ids
from tests.support import Tenant, an_event
from trailseal.cli import app

KILLS = 5
TOP_UP = 1500  # fresh events before each run, so every kill lands mid-stream


@pytest.fixture
def cli(database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("TRAILSEAL_DATABASE_URL", database_url)
    monkeypatch.setenv("TRAILSEAL_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("TRAILSEAL_TOKEN", raising=False)
    runner = CliRunner()

    def invoke(*args: str):  # type: ignore[no-untyped-def]
        return runner.invoke(app, ["consume", *args])

    return invoke


def test_a_key_without_the_ingest_scope_cannot_start_a_consumer(cli, tenant: Tenant):
    refused = cli("--from", AMQP_URL, "--token", tenant.tokens["read"])
    assert refused.exit_code == 1
    assert "lacks the ingest scope" in refused.output and "read" in refused.output
    assert "Traceback" not in refused.output
    unknown = cli("--from", NATS_URL, "--token", "tsk_" + "x" * 43)
    assert unknown.exit_code == 1 and "not a live API key" in unknown.output


def test_options_that_cannot_work_are_refused(cli, tenant: Tenant):
    token = tenant.tokens["ingest"]
    for args, message in [
        (["--from", "http://127.0.0.1:5672", "--token", token], "amqp://"),
        (["--from", NATS_URL, "--token", token, "--queue", "q"], "--queue is for RabbitMQ"),
        (["--from", AMQP_URL, "--token", token, "--subject", "s"], "--subject"),
        (["--from", "amqp://guest:guest@127.0.0.1:1/", "--token", token], "cannot consume"),
    ]:
        answer = cli(*args)
        assert answer.exit_code == 1 and message in answer.output, (args, answer.output)
        assert "Traceback" not in answer.output


def _start(broker: Broker, tenant: Tenant, database_url: str, data_dir: Path):
    env = {
        **os.environ,
        "TRAILSEAL_DATABASE_URL": database_url,
        "TRAILSEAL_DATA_DIR": str(data_dir),
        "TRAILSEAL_TOKEN": tenant.tokens["ingest"],
    }
    extra = ["--ack-wait", "2"] if broker.kind == "nats" else []
    return subprocess.Popen(
        [sys.executable, "-m", "trailseal", "consume", "--from", broker.url, *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _wait_for(condition, proc: subprocess.Popen[str], what: str, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the consumer exited ({proc.returncode}) before {what}:\n"
                        f"{proc.stdout.read() if proc.stdout else ''}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_a_consumer_killed_mid_stream_loses_and_duplicates_nothing(
    broker: Broker, tenant: Tenant, database_url: str, client: httpx.Client, tmp_path: Path
):
    published: list[str] = []
    for _ in range(KILLS):
        events = [an_event() for _ in range(TOP_UP)]
        assert broker.publish(encoded(events)).rejected == {}
        published += [str(e["id"]) for e in events]
        before = landed(database_url, tenant.name)
        proc = _start(broker, tenant, database_url, tmp_path)
        _wait_for(lambda: landed(database_url, tenant.name) > before, proc,  # noqa: B023
                  "a first commit")
        time.sleep(random.uniform(0, 0.05))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()
        assert landed(database_url, tenant.name) < len(published), "drained before the kill"

    proc = _start(broker, tenant, database_url, tmp_path)
    _wait_for(
        lambda: landed(database_url, tenant.name) == len(published) and broker.waiting() == 0,
        proc, "every event in the inbox and no message waiting",
    )
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    assert "dead-lettered" in output and "consumed" in output
    # What the stop handed back unread can only be a redelivery of an event already in.
    assert {m.message_id for m in broker.messages()} <= set(published)

    deadline = time.monotonic() + 60
    while len(sequenced_ids(database_url, tenant.name)) < len(published):
        assert time.monotonic() < deadline, "events were not sequenced"
        time.sleep(0.1)
    log = sequenced_ids(database_url, tenant.name)
    assert len(log) == len(set(log)) == len(published)
    assert set(log) == set(published)
    for event_id in random.sample(published, 10):
        answer = client.get(f"/v1/events/{event_id}", headers=tenant.auth("read"))
        assert answer.status_code == 200 and answer.json()["tenant"] == tenant.name
