"""Trigger capture: row changes become events in the outbox, in the same transaction."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import psycopg
import pytest

from tests.pipeline.support import assert_acceptable, outbox
from trailseal.client import request_context
from trailseal.client.outbox import record_in_transaction, set_audit_context
from trailseal.errors import InvalidInput, NotFound
from trailseal.pipeline.capture import install_capture


def _db_actor(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT current_user").fetchone()
    assert row is not None
    return {"type": "system", "id": f"db:{row[0]}"}


@pytest.fixture
def captured(app_url: str) -> str:
    with psycopg.connect(app_url, autocommit=True) as conn:
        assert install_capture(conn, "public.users", ["password_hash"]) == ["id"]
    return app_url


def test_insert_update_delete(captured):
    with psycopg.connect(captured, autocommit=True) as conn:
        conn.execute("INSERT INTO users VALUES (1, 'a@x', 'viewer', 'secret-1')")
        conn.execute("UPDATE users SET role = 'admin' WHERE id = 1")
        conn.execute("DELETE FROM users WHERE id = 1")
    created, updated, deleted = events = outbox(captured)
    assert [e["action"] for e in events] == ["users.created", "users.updated", "users.deleted"]
    assert {e["target"]["type"] for e in events} == {"public.users"}
    assert {e["target"]["id"] for e in events} == {"1"}
    assert created["changes"] == {
        "id": {"before": None, "after": 1},
        "email": {"before": None, "after": "a@x"},
        "role": {"before": None, "after": "viewer"},
    }
    assert updated["changes"] == {"role": {"before": "viewer", "after": "admin"}}
    assert deleted["changes"] == {
        "id": {"before": 1, "after": None},
        "email": {"before": "a@x", "after": None},
        "role": {"before": "admin", "after": None},
    }
    for event in events:
        assert event["actor"] == _db_actor(captured)
        assert event["context"] == {} and event["outcome"] == {"status": "success"}
        # The id is a UUIDv7 of the very millisecond in occurred_at.
        event_id = uuid.UUID(event["id"])
        at = datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00"))
        assert event_id.version == 7 and event_id.int >> 80 == int(at.timestamp() * 1000)
        assert at.tzinfo == UTC and len(event["occurred_at"]) == 24
    assert_acceptable(events)


def test_an_excluded_column_never_appears(captured):
    with psycopg.connect(captured, autocommit=True) as conn:
        conn.execute("INSERT INTO users VALUES (1, 'a@x', 'viewer', 'secret-1')")
        conn.execute("UPDATE users SET password_hash = 'secret-2' WHERE id = 1")
        conn.execute("UPDATE users SET role = role WHERE id = 1")  # changes nothing
        conn.execute("UPDATE users SET password_hash = 'secret-3', email = 'b@x'")
        conn.execute("DELETE FROM users")
    events = outbox(captured)
    assert [e["action"] for e in events] == ["users.created", "users.updated", "users.deleted"]
    assert events[1]["changes"] == {"email": {"before": "a@x", "after": "b@x"}}
    for event in events:
        assert "password_hash" not in event["changes"]
        assert "secret" not in str(event)


def test_installing_again_replaces_the_exclusions(captured):
    with psycopg.connect(captured, autocommit=True) as conn:
        install_capture(conn, "public.users", ["password_hash", "email"])
        conn.execute("INSERT INTO users VALUES (1, 'a@x', 'viewer', 'secret-1')")
        triggers = conn.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.users'::regclass"
            " AND NOT tgisinternal").fetchone()
    assert triggers == (1,)
    [event] = outbox(captured)
    assert set(event["changes"]) == {"id", "role"}


def test_composite_primary_key(app_url):
    with psycopg.connect(app_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS public.memberships (user_id bigint,"
                     " org text, role text, PRIMARY KEY (org, user_id))")
        conn.execute("TRUNCATE public.memberships")
        assert install_capture(conn, "public.memberships") == ["org", "user_id"]
        conn.execute("INSERT INTO memberships VALUES (7, 'acme', 'owner')")
        conn.execute("UPDATE memberships SET role = 'member'")
    events = outbox(app_url)
    assert [(e["action"], e["target"]) for e in events] == [
        ("memberships.created", {"type": "public.memberships", "id": "acme:7"}),
        ("memberships.updated", {"type": "public.memberships", "id": "acme:7"}),
    ]
    assert_acceptable(events)


def test_a_bulk_update_writes_one_event_per_row(captured):
    with psycopg.connect(captured, autocommit=True) as conn:
        conn.execute("INSERT INTO users (id, role)"
                     " SELECT n, 'viewer' FROM generate_series(1, 150) n")
        conn.execute("TRUNCATE trailseal_outbox")
        conn.execute("UPDATE users SET role = 'admin' WHERE id <= 100")
    events = outbox(captured)
    assert len(events) == 100 and len({e["id"] for e in events}) == 100
    assert sorted(int(e["target"]["id"]) for e in events) == list(range(1, 101))
    assert all(e["changes"] == {"role": {"before": "viewer", "after": "admin"}} for e in events)
    assert_acceptable(events)


def test_the_transaction_context_is_carried_and_then_gone(captured):
    with psycopg.connect(captured) as conn:
        with conn.transaction():
            set_audit_context(conn, actor=("user", "7", "Alice"), correlation_id="c-1",
                              request_id="r-1")
            conn.execute("INSERT INTO users (id, role) VALUES (1, 'viewer')")
        with conn.transaction():  # the same connection, as a pooler would hand it on
            conn.execute("UPDATE users SET role = 'admin'")
    first, second = outbox(captured)
    assert first["actor"] == {"type": "user", "id": "7", "name": "Alice"}
    assert first["context"] == {"correlation_id": "c-1", "request_id": "r-1"}
    assert second["actor"] == _db_actor(captured)
    assert second["context"] == {}


def test_intent_and_row_events_share_the_request_correlation_id(captured):
    with psycopg.connect(captured) as conn, request_context(
        correlation_id="flow-1", request_id="req-1", actor={"type": "user", "id": "7"}
    ), conn.transaction():
        record_in_transaction(conn, "user.role.change_requested", target=("user", "1"))
        conn.execute("INSERT INTO users (id, role) VALUES (1, 'admin')")
    intent, row = outbox(captured)
    assert intent["context"] == row["context"] == {"correlation_id": "flow-1",
                                                   "request_id": "req-1"}
    assert intent["actor"] == row["actor"] == {"type": "user", "id": "7"}


def test_numbers_past_2_53_become_strings(app_url):
    with psycopg.connect(app_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS public.ledger (id bigint PRIMARY KEY,"
                     " amount numeric, parts bigint[], doc jsonb)")
        install_capture(conn, "public.ledger")
        conn.execute("INSERT INTO ledger VALUES (9007199254740993, 12.5,"
                     " '{1, -9007199254740993}', '{\"n\": [1e400, 2]}')")
    [event] = outbox(app_url)
    assert event["target"]["id"] == "9007199254740993"
    assert event["changes"]["id"]["after"] == "9007199254740993"
    assert event["changes"]["amount"]["after"] == 12.5
    assert event["changes"]["parts"]["after"] == [1, "-9007199254740993"]
    assert event["changes"]["doc"]["after"]["n"][1] == 2
    assert isinstance(event["changes"]["doc"]["after"]["n"][0], str)
    assert_acceptable([event])


def test_an_actor_setting_that_is_not_json_fails_the_statement(captured):
    with psycopg.connect(captured) as conn:
        conn.execute("SELECT set_config('trailseal.actor', 'alice', true)")
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            conn.execute("INSERT INTO users (id) VALUES (1)")


@pytest.mark.parametrize(("table", "error", "message"), [
    ("public.nowhere", NotFound, "no table public.nowhere"),
    ("nowhere", NotFound, "no table public.nowhere"),
    ("public.no_key", InvalidInput, "has no primary key"),
    ("public.Bad Name", InvalidInput, "cannot form an action"),
    ("public.2fa", InvalidInput, "cannot form an action"),
    ("public.a_view", InvalidInput, "is not a table"),
    (".users", InvalidInput, "is not a table name"),
])
def test_what_cannot_be_captured_is_refused_clearly(app_url, table, error, message):
    with psycopg.connect(app_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS public.no_key (a int)")
        conn.execute('CREATE TABLE IF NOT EXISTS public."Bad Name" (id int PRIMARY KEY)')
        conn.execute('CREATE TABLE IF NOT EXISTS public."2fa" (id int PRIMARY KEY)')
        conn.execute("CREATE OR REPLACE VIEW public.a_view AS SELECT 1 AS id")
        with pytest.raises(error, match=message):
            install_capture(conn, table)


def test_an_unknown_excluded_column_is_refused(app_url):
    with psycopg.connect(app_url, autocommit=True) as conn, pytest.raises(
        InvalidInput, match="no column 'password'"
    ):
        install_capture(conn, "public.users", ["password"])


def test_capture_needs_an_outbox(app_url):
    with psycopg.connect(app_url, autocommit=True) as conn, pytest.raises(
        NotFound, match="no outbox in schema elsewhere"
    ):
        install_capture(conn, "public.users", schema="elsewhere")


def test_a_long_schema_name_cannot_be_a_target_type(app_url):
    schema = "s" * 60
    with psycopg.connect(app_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        conn.execute(f'CREATE TABLE IF NOT EXISTS "{schema}".things (id int PRIMARY KEY)')
        with pytest.raises(InvalidInput, match="cannot be a target type"):
            install_capture(conn, f"{schema}.things")
