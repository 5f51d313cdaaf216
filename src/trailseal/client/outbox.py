"""Record events in the application's own database transaction (the outbox pattern).

::

    with conn.transaction():
        conn.execute("UPDATE users SET role = 'admin' WHERE id = 42")
        record_in_transaction(conn, "user.role.updated", target=("user", "42"),
                              before={"role": "viewer"}, after={"role": "admin"})

The event is built exactly as ``AuditClient.record`` builds it (``build_event``) and
INSERTed into ``trailseal_outbox`` (``trailseal outbox install``) on the caller's
connection, so it commits or rolls back with the business change; ``trailseal relay``
ships it later. Unlike ``record()``, a malformed call raises ``InvalidEvent`` (before the
row is written): swallowing it would let the change commit without its event.

``set_audit_context`` tells the database who acts and in which request, for the capture
triggers (``trailseal capture install``): it sets ``trailseal.actor``,
``trailseal.correlation_id`` and ``trailseal.request_id`` with ``set_config(..., true)``,
so they last until the transaction ends, never leak to the next user of a pooled
connection, and work through transaction poolers. ``record_in_transaction`` fills the
settings the transaction lacks from the request context, and takes its correlation and
request ids from them, so an intent event and the row events of its transaction share
one correlation id. Call either before the statements whose row events should carry it.

Both take a psycopg 3 ``Connection`` (autocommit only inside ``conn.transaction()``) or a
SQLAlchemy ``Session`` or ``Connection``. There is no async twin: in asyncio code, use
SQLAlchemy's ``AsyncSession.run_sync``, e.g.
``await session.run_sync(record_in_transaction, "user.role.updated", ...)``, which runs
these functions on the async session's own connection and transaction.
"""

from __future__ import annotations

import inspect
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

from trailseal.client import context
from trailseal.client.core import (
    ACTOR_TYPES,
    InvalidEvent,
    Ref,
    _ref,
    build_event,
    encode_event,
)
from trailseal.client.diff import DEFAULT_REDACT
from trailseal.ids import uuid7_text
from trailseal.model import Actor

ACTOR_SETTING = "trailseal.actor"
CORRELATION_SETTING = "trailseal.correlation_id"
REQUEST_SETTING = "trailseal.request_id"
_SETTINGS = {"actor": ACTOR_SETTING, "correlation_id": CORRELATION_SETTING,
             "request_id": REQUEST_SETTING}
_MAX_ID = 256  # the event schema's limit for correlation and request ids
# A NUL escape in the JSON (an odd number of backslashes before u0000): PostgreSQL's
# jsonb cannot hold it, and the service refuses it anyway.
_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")

Placeholder = Callable[[str], sql.Composable]
Statement = Callable[[Placeholder], sql.Composed]


def _execute(target: Any, statement: Statement, params: Mapping[str, Any]) -> Sequence[Any]:
    """Run one statement on a psycopg connection or a SQLAlchemy session or connection,
    in its current transaction; returns the first row (empty when none)."""
    if isinstance(target, psycopg.Connection):
        if target.autocommit and target.info.transaction_status == TransactionStatus.IDLE:
            raise ValueError(
                "the connection is in autocommit mode outside a transaction: use "
                "`with conn.transaction():` so the event commits with the change"
            )
        cur = target.execute(statement(sql.Placeholder), params)
        return (cur.fetchone() or ()) if cur.description else ()
    execute = getattr(target, "execute", None)
    if execute is None or type(target).__module__.split(".")[0] != "sqlalchemy":
        raise TypeError(
            f"expected a psycopg Connection or a SQLAlchemy Session, not "
            f"{type(target).__name__} (for an AsyncSession, use session.run_sync)"
        )
    if inspect.iscoroutinefunction(execute):
        raise TypeError("an async session: call this through `await session.run_sync(...)`")
    from sqlalchemy import text  # only SQLAlchemy users have it

    query = statement(lambda name: sql.SQL(":" + name)).as_string()
    result = execute(text(query), dict(params))
    return (result.fetchone() or ()) if result.returns_rows else ()


def _check_id(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= _MAX_ID or "\x00" in value:
        raise InvalidEvent(f"{what} must be 1-{_MAX_ID} characters")
    return value


def _actor_json(actor: Ref | None) -> str | None:
    if actor is None:
        return None
    try:
        ref = _ref(actor, "actor")
        if ref["type"] not in ACTOR_TYPES:
            raise InvalidEvent(f"actor type must be one of {sorted(ACTOR_TYPES)}")
        checked = Actor.model_validate(ref).model_dump(exclude_none=True)
    except ValueError as exc:  # InvalidEvent, or pydantic's ValidationError
        raise InvalidEvent(f"actor: {exc}") from None
    return json.dumps(checked, separators=(",", ":"), ensure_ascii=False)


def _config(mode: str) -> Statement:
    """``SELECT set_config(...)`` of the three settings; ``mode`` "set" overwrites with
    the given values (NULL keeps the setting), "fill" only fills empty settings."""

    def statement(ph: Placeholder) -> sql.Composed:
        columns = []
        for key, name in _SETTINGS.items():
            held = sql.SQL("nullif(current_setting({}, true), '')").format(sql.Literal(name))
            given = sql.SQL("CAST({} AS text)").format(ph(key))
            first, second = (given, held) if mode == "set" else (held, given)
            columns.append(
                sql.SQL("set_config({}, coalesce({}, {}, ''), true)").format(
                    sql.Literal(name), first, second
                )
            )
        return sql.SQL("SELECT ") + sql.SQL(", ").join(columns)

    return statement


def set_audit_context(
    conn_or_session: Any,
    *,
    actor: Ref | None = None,
    correlation_id: str | None = None,
    request_id: str | None = None,
) -> None:
    """Set the transaction's actor, correlation id and request id for the capture
    triggers; each one not given comes from the request context
    (``trailseal.client.context.current()``), and one that is neither given nor known is
    left as it is. Transaction-local (``set_config(..., true)``), so pooler-safe.
    Raises ``InvalidEvent`` for an invalid actor or id."""
    request = context.current()
    if request is not None:
        actor = actor if actor is not None else request.actor
        correlation_id = correlation_id if correlation_id is not None else request.correlation_id
        request_id = request_id if request_id is not None else request.request_id
    values = {
        "actor": _actor_json(actor),
        "correlation_id": _check_id(correlation_id, "correlation_id"),
        "request_id": _check_id(request_id, "request_id"),
    }
    if any(v is not None for v in values.values()):
        _execute(conn_or_session, _config("set"), values)


def _insert(schema: str) -> Statement:
    def statement(ph: Placeholder) -> sql.Composed:
        return sql.SQL("INSERT INTO {} (event) VALUES (CAST({} AS jsonb))").format(
            sql.Identifier(schema, "trailseal_outbox"), ph("event")
        )

    return statement


def record_in_transaction(
    conn_or_session: Any,
    action: str,
    actor: Ref | None = None,
    target: Ref | None = None,
    before: object = None,
    after: object = None,
    changes: Mapping[str, Any] | None = None,
    outcome: str | Mapping[str, Any] = "success",
    metadata: Mapping[str, Any] | None = None,
    occurred_at: datetime | None = None,
    *,
    schema: str = "public",
    redact_fields: Iterable[str] = DEFAULT_REDACT,
) -> str:
    """Write one event into the outbox in the caller's transaction; returns its id (a
    UUIDv7). Arguments are those of ``AuditClient.record``; ``schema`` is where the
    outbox is. The actor is ``actor``, else the request context's, else the
    transaction's ``trailseal.actor``. Raises ``InvalidEvent`` for a malformed event,
    before anything is written."""
    now_ms = time.time_ns() // 1_000_000
    event_id = uuid7_text(now_ms)
    request = context.current()
    wanted: dict[str, str | None] = {"actor": None, "correlation_id": None, "request_id": None}
    if request is not None:
        wanted = {
            "actor": _actor_json(request.actor),
            "correlation_id": _check_id(request.correlation_id, "correlation_id"),
            "request_id": _check_id(request.request_id, "request_id"),
        }
    held = _execute(conn_or_session, _config("fill"), wanted)
    held_actor, correlation_id, request_id = (value or None for value in held)
    if actor is None and (request is None or not request.actor) and held_actor:
        try:
            actor = json.loads(held_actor)
        except ValueError:
            raise InvalidEvent(f"{ACTOR_SETTING} is not JSON: {held_actor!r}") from None
    try:
        event = build_event(
            event_id, now_ms, action, actor, target, before, after, changes, outcome,
            metadata, occurred_at, redact_fields=frozenset(redact_fields), defaults={},
        )
        for key, value in (("correlation_id", correlation_id), ("request_id", request_id)):
            if value:
                event["context"][key] = value
        payload = encode_event(event)
    except InvalidEvent:
        raise
    except Exception as exc:  # an argument that cannot be read, or has no JSON form
        raise InvalidEvent(f"{action}: {exc}") from exc
    if _NUL.search(payload):
        raise InvalidEvent(f"{action}: text with a NUL character cannot be stored")
    _execute(conn_or_session, _insert(schema), {"event": payload.decode()})
    return event_id
