"""The outbox table and the SDK's writes into it: ``record_in_transaction`` in the
caller's transaction (psycopg and SQLAlchemy), ``set_audit_context``."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from tests.pipeline.support import assert_acceptable, outbox
from trailseal.client import AuditClient, InvalidEvent, request_context
from trailseal.client.core import observers
from trailseal.client.outbox import record_in_transaction, set_audit_context
from trailseal.pipeline.outbox import install_outbox


def _columns(url: str, schema: str = "public") -> list[tuple[str, str]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = 'trailseal_outbox'"
            " ORDER BY ordinal_position",
            (schema,),
        ).fetchall()


def test_install_is_idempotent_and_keeps_rows(app_url):
    with psycopg.connect(app_url, autocommit=True) as conn:
        conn.execute("INSERT INTO trailseal_outbox (event) VALUES ('{\"kept\": true}')")
        install_outbox(conn)
        install_outbox(conn)
    assert _columns(app_url) == [
        ("id", "bigint"), ("event", "jsonb"), ("created_at", "timestamp with time zone"),
        ("attempts", "integer"), ("last_error", "text"), ("dead_at", "timestamp with time zone"),
    ]
    assert outbox(app_url) == [{"kept": True}]


def test_install_in_a_schema_of_ones_choice(app_url):
    with psycopg.connect(app_url, autocommit=True) as conn:
        install_outbox(conn, schema="Audit Box")
        install_outbox(conn, schema="Audit Box")
    assert [c for c, _ in _columns(app_url, "Audit Box")][:2] == ["id", "event"]
    with psycopg.connect(app_url) as conn:
        record_in_transaction(conn, "user.invited", actor=("user", "1"), target=("user", "2"),
                              schema="Audit Box")
    assert [e["action"] for e in outbox(app_url, "Audit Box")] == ["user.invited"]


def test_uuid7_in_sql(app_url):
    at = datetime(2026, 3, 12, 9, 2, 0, 123_456, tzinfo=UTC)
    with psycopg.connect(app_url) as conn:
        ids = [r[0] for r in conn.execute(
            "SELECT trailseal_uuid7(%s) FROM generate_series(1, 1000)", (at,))]
        (now_id, now_ms), = conn.execute(
            "SELECT trailseal_uuid7(), floor(extract(epoch FROM clock_timestamp()) * 1000)")
    assert len(set(ids)) == 1000
    for value in ids:
        assert value.version == 7 and value.variant == uuid.RFC_4122
        assert value.int >> 80 == int(at.timestamp() * 1000) == 1_773_306_120_123
    assert abs((now_id.int >> 80) - int(now_ms)) < 1000


def test_psycopg_commit_writes_the_event_and_rollback_does_not(app_url):
    with psycopg.connect(app_url) as conn:
        with conn.transaction():
            conn.execute("INSERT INTO users (id, email, role) VALUES (1, 'a@x', 'viewer')")
            kept = record_in_transaction(conn, "user.created", actor=("user", "7"),
                                         target=("user", "1"), after={"role": "viewer"})
        with pytest.raises(RuntimeError), conn.transaction():
            record_in_transaction(conn, "user.deleted", actor=("user", "7"),
                                  target=("user", "1"))
            raise RuntimeError("the business change failed")
    [event] = outbox(app_url)
    assert event["id"] == kept and event["action"] == "user.created"
    assert event["changes"] == {"role": {"before": None, "after": "viewer"}}
    assert_acceptable([event])


def test_autocommit_inside_a_transaction_block_works(app_url):
    with psycopg.connect(app_url, autocommit=True) as conn:
        with pytest.raises(ValueError, match="autocommit"):
            record_in_transaction(conn, "user.created", actor=("user", "7"), target=("user", "1"))
        with conn.transaction():
            record_in_transaction(conn, "user.created", actor=("user", "7"), target=("user", "1"))
    assert len(outbox(app_url)) == 1


def test_sqlalchemy_session_commit_and_rollback(app_url):
    engine = create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(app_url))
    try:
        with Session(engine) as session:
            session.execute(text("INSERT INTO users (id, email) VALUES (2, 'b@x')"))
            kept = record_in_transaction(session, "user.created", actor=("user", "7"),
                                         target=("user", "2"))
            session.commit()
            record_in_transaction(session, "user.deleted", actor=("user", "7"),
                                  target=("user", "2"))
            session.rollback()
        with engine.begin() as connection:  # a SQLAlchemy Connection works too
            record_in_transaction(connection, "user.viewed", actor=("user", "7"),
                                  target=("user", "2"))
    finally:
        engine.dispose()
    events = outbox(app_url)
    assert [e["action"] for e in events] == ["user.created", "user.viewed"]
    assert events[0]["id"] == kept


def test_the_event_is_built_as_record_builds_it(app_url, tmp_path):
    seen: list[dict] = []
    observers.append(seen.append)
    client = AuditClient("http://127.0.0.1:9", "tsk_x", tmp_path / "spool", max_delay=60)
    client.sender.stop(0.1)
    arguments = dict(
        actor=("user", "7", "Alice"), target={"type": "invoice", "id": 12},
        before={"total": 10, "password": "a"}, after={"total": 12, "password": "b"},
        outcome={"status": "failure", "reason": "declined"},
        metadata={"api_key": "sk-1", "when": datetime(2026, 1, 2, tzinfo=UTC)},
        occurred_at=datetime(2026, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC),
    )
    try:
        with request_context(ip="203.0.113.9", request_id="req-1", correlation_id="cor-1"):
            client.record("invoice.total.updated", **arguments)
            with psycopg.connect(app_url) as conn:
                record_in_transaction(conn, "invoice.total.updated", **arguments)
    finally:
        observers.remove(seen.append)
        client.close(0.1)
    [recorded] = seen
    [written] = outbox(app_url)
    expected_event = json.loads(client._encode(recorded))  # as it would be sent
    for event in (expected_event, written):
        del event["id"]
        event["context"].pop("source", None)
        event["context"].pop("source_seq", None)
    assert written == expected_event
    assert written["changes"]["password"] == {"before": "[REDACTED]", "after": "[REDACTED]"}


def test_invalid_events_raise_before_anything_is_written(app_url):
    with psycopg.connect(app_url) as conn, conn.transaction():
        for bad in (
            {"action": "Not An Action", "actor": ("user", "1"), "target": ("x", "1")},
            {"action": "user.deleted", "actor": None, "target": ("x", "1")},
            {"action": "user.deleted", "actor": ("robot", "1"), "target": ("x", "1")},
            {"action": "user.deleted", "actor": ("user", "1"), "target": ("x", "1"),
             "metadata": {"thing": object()}},
            {"action": "user.deleted", "actor": ("user", "1"), "target": ("x", "1"),
             "metadata": {"note": "nul\x00here"}},
        ):
            with pytest.raises(InvalidEvent):
                record_in_transaction(conn, **bad)
        # The transaction is still usable: nothing failed in the database.
        conn.execute("INSERT INTO users (id) VALUES (3)")
    assert outbox(app_url) == []


def test_a_literal_backslash_u0000_is_text_not_nul(app_url):
    with psycopg.connect(app_url) as conn:
        record_in_transaction(conn, "note.written", actor=("user", "1"), target=("note", "1"),
                              metadata={"text": "\\u0000"})
        conn.commit()
    assert outbox(app_url)[0]["metadata"] == {"text": "\\u0000"}


def test_other_objects_are_refused():
    with pytest.raises(TypeError, match="psycopg Connection or a SQLAlchemy Session"):
        record_in_transaction(object(), "user.created", actor=("user", "1"), target=("u", "1"))


def _settings(conn: psycopg.Connection) -> tuple[str, str, str]:
    row = conn.execute(
        "SELECT current_setting('trailseal.actor', true),"
        " current_setting('trailseal.correlation_id', true),"
        " current_setting('trailseal.request_id', true)"
    ).fetchone()
    assert row is not None
    return row


def test_set_audit_context_is_transaction_local(app_url):
    with psycopg.connect(app_url) as conn:
        with conn.transaction():
            set_audit_context(conn, actor=("user", "7", "Alice"), correlation_id="c-1",
                              request_id="r-1")
            assert _settings(conn) == (
                '{"type":"user","id":"7","name":"Alice"}', "c-1", "r-1")
        with conn.transaction():  # the next transaction on the same connection
            assert _settings(conn) in (("", "", ""), (None, None, None))


def test_set_audit_context_defaults_to_the_request_context(app_url):
    with psycopg.connect(app_url) as conn, request_context(
        request_id="r-2", correlation_id="c-2", actor={"type": "service", "id": "billing"}
    ):
        set_audit_context(conn, request_id="explicit")
        assert _settings(conn) == ('{"type":"service","id":"billing"}', "c-2", "explicit")


@pytest.mark.parametrize("kwargs", [
    {"actor": ("robot", "1")},
    {"actor": ("user", "x" * 300)},
    {"correlation_id": ""},
    {"request_id": "r" * 257},
])
def test_set_audit_context_refuses_what_the_schema_refuses(app_url, kwargs):
    with psycopg.connect(app_url) as conn, pytest.raises(InvalidEvent):
        set_audit_context(conn, **kwargs)


def test_the_request_context_fills_the_transaction_and_the_event(app_url):
    with psycopg.connect(app_url) as conn, request_context(
        request_id="r-3", correlation_id="c-3", actor={"type": "user", "id": "7"}
    ):
        record_in_transaction(conn, "user.role.change_requested", target=("user", "1"))
        assert _settings(conn) == ('{"type":"user","id":"7"}', "c-3", "r-3")
        conn.commit()
    [event] = outbox(app_url)
    assert event["actor"] == {"type": "user", "id": "7"}
    assert event["context"] == {"request_id": "r-3", "correlation_id": "c-3"}


def test_what_the_transaction_set_wins_and_supplies_the_actor(app_url):
    with psycopg.connect(app_url) as conn, request_context(correlation_id="from-request"):
        set_audit_context(conn, correlation_id="job-7", actor=("service", "billing"))
        record_in_transaction(conn, "invoice.voided", target=("invoice", "9"))
        conn.commit()
    [event] = outbox(app_url)
    assert event["actor"] == {"type": "service", "id": "billing"}
    assert event["context"]["correlation_id"] == "job-7"
