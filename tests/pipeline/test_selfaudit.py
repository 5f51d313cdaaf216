"""``trailseal selfaudit`` against a real producer database, relay and service: every
relayed change is found and proven; a change whose event was lost on the way, or a row
changed with no event at all, is a miss (exit 1); the report is a signed note."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from tests.support import an_event
from trailseal.cli import app
from trailseal.client.outbox import record_in_transaction
from trailseal.integrity.notes import Verifier, open_note
from trailseal.pipeline.capture import install_capture
from trailseal.pipeline.relay import HttpTransport, Relay
from trailseal.pipeline.transport import Delivered
from trailseal.runtime import load_signer

ACCOUNTS = (
    "CREATE TABLE IF NOT EXISTS public.accounts (id bigint PRIMARY KEY, plan text,"
    " seats integer, updated_at timestamptz NOT NULL DEFAULT now())"
)


@pytest.fixture
def producer(app_url: str) -> str:
    """The producer's database with an empty delivery history and accounts table."""
    with psycopg.connect(app_url, autocommit=True) as conn:
        conn.execute("TRUNCATE public.trailseal_outbox_history")
        conn.execute(ACCOUNTS)
        conn.execute("TRUNCATE public.accounts")
    return app_url


class Dropping:
    """A transport that loses the events it is told to, yet reports them taken: the
    kind of loss only the producer's side can reveal."""

    def __init__(self, inner: HttpTransport, lose: set[str]) -> None:
        self.inner, self.lose = inner, lose

    def send(self, events: list[bytes]) -> Delivered:
        kept = [e for e in events if not any(i.encode() in e for i in self.lose)]
        return self.inner.send(kept) if kept else Delivered({})

    def close(self) -> None:
        self.inner.close()


def _relay(url: str, transport, client, tenant) -> None:
    relay = Relay(url, transport)
    try:
        while relay.run_once():
            pass
    finally:
        relay.close()
    # One more event, answered once sequenced: the inbox is sequenced in order, so every
    # event relayed before it is in the log and under a checkpoint by then.
    answer = client.post("/v1/events?wait=sequenced", json={"events": [an_event()]},
                         headers=tenant.auth("ingest"))
    assert answer.status_code == 201, answer.text


def _selfaudit(settings, producer: str, tenant, report: Path, *args: str):
    return CliRunner().invoke(app, [
        "selfaudit", "--dsn", producer, "--tenant", tenant.name, "--min-age", "0",
        "--database-url", settings.database_url, "--data-dir", str(settings.data_dir),
        "-o", str(report), *args,
    ])


def _report(settings, report: Path) -> list[str]:
    verifier = Verifier.from_key(load_signer(settings).verifier_key())
    opened = open_note(report.read_text(), [verifier])  # raises unless the log key signed it
    return opened.body.splitlines()


def _record(producer: str, count: int) -> list[str]:
    ids = []
    with psycopg.connect(producer) as conn:
        for n in range(count):
            with conn.transaction():
                ids.append(record_in_transaction(
                    conn, "user.role.updated", actor=("user", "7"), target=("user", str(n)),
                    before={"role": "viewer"}, after={"role": f"admin{n}"}))
    return ids


def test_every_relayed_change_is_found_and_proven(
    producer, service_url, tenant, client, settings, tmp_path
):
    ids = _record(producer, 6)
    _relay(producer, HttpTransport(service_url, tenant.tokens["ingest"]), client, tenant)
    report = tmp_path / "report.txt"
    result = _selfaudit(settings, producer, tenant, report, "--sample", "20")
    assert result.exit_code == 0, result.output
    lines = _report(settings, report)
    assert lines[:2] == ["trailseal selfaudit", f"tenant {tenant.name}"]
    assert "sampled 6" in lines and lines[-1] == "result ok"
    changes = [line for line in lines if line.startswith("change ")]
    assert sorted(line.split()[4] for line in changes) == sorted(ids)
    assert all(" ok target,action,before/after,proof@" in line for line in changes)


def test_an_event_lost_on_the_way_is_a_miss(
    producer, service_url, tenant, client, settings, tmp_path
):
    ids = _record(producer, 4)
    lost = ids[2]
    transport = Dropping(HttpTransport(service_url, tenant.tokens["ingest"]), {lost})
    _relay(producer, transport, client, tenant)
    with psycopg.connect(producer) as conn:  # the relay believes it delivered all four
        kept = conn.execute("SELECT count(*) FROM trailseal_outbox_history").fetchone()
    assert kept == (4,)
    report = tmp_path / "report.txt"
    result = _selfaudit(settings, producer, tenant, report)
    assert result.exit_code == 1, result.output
    lines = _report(settings, report)
    assert lines[-1] == "result 1 missed"
    missed = [line for line in lines if " miss " in line]
    assert len(missed) == 1 and f"no event {lost} in the log" in missed[0]


def test_a_refused_outbox_row_is_a_miss(producer, service_url, tenant, client, settings,
                                        tmp_path):
    _record(producer, 2)
    with psycopg.connect(producer, autocommit=True) as conn:
        conn.execute("UPDATE trailseal_outbox SET dead_at = now(), last_error = 'HTTP 422'"
                     " WHERE id = (SELECT min(id) FROM trailseal_outbox)")
    _relay(producer, HttpTransport(service_url, tenant.tokens["ingest"]), client, tenant)
    report = tmp_path / "report.txt"
    result = _selfaudit(settings, producer, tenant, report)
    assert result.exit_code == 1, result.output
    missed = [line for line in _report(settings, report) if " miss " in line]
    assert len(missed) == 1 and "(dead)" in missed[0] and "HTTP 422" in missed[0]


def test_table_rows_match_their_latest_event(
    producer, service_url, tenant, client, settings, tmp_path
):
    with psycopg.connect(producer, autocommit=True) as conn:
        install_capture(conn, "public.accounts", [])
        conn.execute("INSERT INTO accounts (id, plan, seats) VALUES"
                     " (1, 'free', 1), (2, 'team', 5), (3, 'team', 9)")
        conn.execute("UPDATE accounts SET plan = 'enterprise', seats = 50,"
                     " updated_at = now() WHERE id = 2")
    _relay(producer, HttpTransport(service_url, tenant.tokens["ingest"]), client, tenant)
    report = tmp_path / "report.txt"
    source = ("--source", "table:public.accounts")
    result = _selfaudit(settings, producer, tenant, report, *source)
    assert result.exit_code == 0, result.output
    lines = _report(settings, report)
    assert "sampled 3" in lines and lines[-1] == "result ok"

    with psycopg.connect(producer, autocommit=True) as conn:  # a change with no event
        conn.execute("ALTER TABLE accounts DISABLE TRIGGER trailseal_capture")
        conn.execute("UPDATE accounts SET seats = 2, updated_at = now() WHERE id = 1")
    result = _selfaudit(settings, producer, tenant, report, *source)
    assert result.exit_code == 1, result.output
    missed = [line for line in _report(settings, report) if " miss " in line]
    assert len(missed) == 1 and "public.accounts 1 " in missed[0]
    assert "after differs from the row in seats, updated_at" in missed[0]


def test_cannot_run_without_the_outbox_history(settings, tenant, database_url, tmp_path):
    result = _selfaudit(settings, database_url, tenant, tmp_path / "r.txt")
    assert result.exit_code == 2
    assert "trailseal_outbox_history" in result.output
