"""Self-audit: does the log hold, accurately and provably, what the producer changed?

Changes are drawn at random from the producer's own database, because the point is to
catch events that never reached trailseal — something the log alone cannot show:

* ``outbox``: events the relay delivered, from ``trailseal_outbox_history`` (each one
  the exact event the producer wrote), plus every outbox row the service refused for
  good (``dead_at``) in the window, each of which is a committed change with no event;
* ``table:<name>``: rows of an application table whose ``updated_at`` is recent; the
  latest event for the row's target at or before ``updated_at`` (plus a clock
  allowance) must carry ``after`` values equal to the row's columns where both exist.

Each change's event is read from trailseal's database as the reader role of the tenant,
its inclusion proof built against the latest signed checkpoint, and both checked by the
pure core (``integrity.receipt.verify_receipt``) against verifier keys the caller trusts.
The result is a signed note (C2SP) whose body lists every sampled change and its outcome.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import AsyncConnection, sql

from trailseal.errors import InvalidInput
from trailseal.integrity.notes import Signer
from trailseal.integrity.receipt import ReceiptError, verify_receipt
from trailseal.pipeline.outbox import history_table, outbox_table
from trailseal.reading.query import get_event
from trailseal.reading.tree import receipt
from trailseal.store import Role, scoped

_LINE_UNSAFE = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True)
class Change:
    """One state change drawn from the producer's database."""

    label: str
    target: tuple[str, str] | None = None
    event: Mapping[str, Any] | None = None  # outbox: the event as the producer sent it
    row: Mapping[str, Any] | None = None  # table: the row's current columns
    updated_at: datetime | None = None
    refused: str | None = None  # outbox: why the service refused it for good


@dataclass
class Finding:
    """What the log holds for one change."""

    change: Change
    event_id: str | None = None
    seq: int | None = None
    checks: list[str] = field(default_factory=list)
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass(frozen=True)
class Source:
    """Where changes are drawn from: the outbox's history, or a table."""

    kind: str  # "outbox" or "table"
    table: tuple[str, ...] = ()
    target_type: str = ""
    id_column: str = "id"
    schema: str = "public"

    @classmethod
    def parse(
        cls, text: str, *, target_type: str | None = None, id_column: str = "id",
        schema: str = "public",
    ) -> Source:
        """``outbox`` or ``table:<name>`` (``table:<schema>.<name>``)."""
        if text == "outbox":
            return cls("outbox", schema=schema)
        if text.startswith("table:") and text[6:]:
            name = text[6:]
            parts = tuple(name.split(".", 1))
            return cls("table", parts, target_type or name, id_column, schema)
        raise InvalidInput("--source is outbox or table:<name>")

    def describe(self) -> str:
        if self.kind == "outbox":
            return f"outbox {self.schema}.trailseal_outbox_history"
        return f"table {'.'.join(self.table)} as target {self.target_type} by {self.id_column}"


def sample(
    conn: psycopg.Connection, source: Source, size: int, *, window_hours: float,
    min_age_seconds: float,
) -> list[Change]:
    """Up to ``size`` changes of the last ``window_hours``, none younger than
    ``min_age_seconds`` (so an event still on its way is not taken for a lost one),
    drawn at random; for the outbox, every refused row of the window besides, up to
    ``size``."""
    window = (window_hours * 3600, min_age_seconds)
    if source.kind == "outbox":
        return _sample_outbox(conn, source.schema, size, window)
    return _sample_table(conn, source, size, window)


def _sample_outbox(
    conn: psycopg.Connection, schema: str, size: int, window: tuple[float, float]
) -> list[Change]:
    delivered = conn.execute(
        sql.SQL(
            "SELECT outbox_id, event FROM {} WHERE delivered_at >= now() - make_interval("
            "secs => %s) AND delivered_at <= now() - make_interval(secs => %s)"
            " ORDER BY random() LIMIT %s"
        ).format(history_table(schema)),
        (*window, size),
    ).fetchall()
    refused = conn.execute(
        sql.SQL(
            "SELECT id, event, last_error FROM {} WHERE dead_at IS NOT NULL"
            " AND created_at >= now() - make_interval(secs => %s) ORDER BY id LIMIT %s"
        ).format(outbox_table(schema)),
        (window[0], size),
    ).fetchall()
    changes = [_outbox_change(f"outbox {r[0]}", r[1]) for r in delivered]
    changes += [
        _outbox_change(f"outbox {r[0]} (dead)", r[1], refused=r[2] or "refused")
        for r in refused
    ]
    return changes


def _outbox_change(label: str, event: Any, refused: str | None = None) -> Change:
    target = event.get("target") if isinstance(event, dict) else None
    ref = (str(target.get("type")), str(target.get("id"))) if isinstance(target, dict) else None
    return Change(label, ref, event=event if isinstance(event, dict) else {}, refused=refused)


def _sample_table(
    conn: psycopg.Connection, source: Source, size: int, window: tuple[float, float]
) -> list[Change]:
    rows = conn.execute(
        sql.SQL(
            "SELECT to_jsonb(t), t.{key}::text, t.updated_at FROM {table} t"
            " WHERE t.updated_at >= now() - make_interval(secs => %s)"
            " AND t.updated_at <= now() - make_interval(secs => %s)"
            " ORDER BY random() LIMIT %s"
        ).format(key=sql.Identifier(source.id_column), table=sql.Identifier(*source.table)),
        (*window, size),
    ).fetchall()
    return [
        Change(f"{'.'.join(source.table)} {r[1]}", (source.target_type, r[1]), row=r[0],
               updated_at=r[2])
        for r in rows
    ]


async def check(
    conn: AsyncConnection, tenant: str, changes: Sequence[Change], verifier_keys: list[str],
    *, skew_seconds: float = 2.0,
) -> list[Finding]:
    """Find each change's event in ``tenant``'s log, compare it, and prove its inclusion."""
    findings = []
    for change in changes:
        finding = Finding(change)
        try:
            event = await _find(conn, tenant, change, skew_seconds)
            if event is not None:
                finding.event_id, finding.seq = str(event["id"]), int(event["seq"])
                _compare(change, event, finding)
                if finding.ok:
                    await _prove(conn, tenant, event, verifier_keys, finding)
        except _Miss as miss:
            finding.problem = str(miss)
        findings.append(finding)
    return findings


class _Miss(Exception):
    """The log does not hold what the change needs."""


async def _find(
    conn: AsyncConnection, tenant: str, change: Change, skew_seconds: float
) -> dict[str, Any] | None:
    if change.refused is not None:
        raise _Miss(f"refused by the service, never logged: {change.refused}")
    if change.event is not None:
        try:
            event_id = uuid.UUID(str(change.event.get("id")))
        except ValueError:
            raise _Miss("the outbox event has no valid id") from None
        found = await get_event(conn, tenant, event_id)
        if found is None:
            raise _Miss(f"no event {event_id} in the log of {tenant}")
        return found
    assert change.target is not None and change.updated_at is not None
    async with scoped(conn, Role.READER, tenant):
        cur = await conn.execute(
            "SELECT id FROM trailseal.events WHERE tenant = %s AND target_type = %s"
            " AND target_id = %s AND occurred_at <= %s + make_interval(secs => %s)"
            " ORDER BY occurred_at DESC, seq DESC LIMIT 1",
            (tenant, *change.target, change.updated_at, skew_seconds),
        )
        row = await cur.fetchone()
    if row is None:
        raise _Miss(f"no event for {change.target[0]} {change.target[1]} at or before "
                    f"{change.updated_at.isoformat()}")
    return await get_event(conn, tenant, row[0])


def _compare(change: Change, event: Mapping[str, Any], finding: Finding) -> None:
    target = event.get("target") or {}
    if change.target is not None and (target.get("type"), target.get("id")) != change.target:
        raise _Miss(f"target is {target.get('type')} {target.get('id')}")
    finding.checks.append("target")
    if change.event is not None:
        if event.get("action") != change.event.get("action"):
            raise _Miss(f"action is {event.get('action')}, sent {change.event.get('action')}")
        finding.checks.append("action")
        sent, held = change.event.get("changes") or {}, event.get("changes") or {}
        if sent != held:
            fields = sorted(k for k in set(sent) | set(held) if sent.get(k) != held.get(k))
            raise _Miss(f"changes differ in {', '.join(fields)}")
        finding.checks.append("before/after")
        return
    if str(event.get("action", "")).endswith(".deleted"):
        raise _Miss(f"the latest event is {event['action']}, but the row exists")
    finding.checks.append("action")
    row, held = change.row or {}, event.get("changes") or {}
    differ = sorted(
        name for name, diff in held.items()
        if isinstance(diff, dict) and "after" in diff and name in row
        and not _same(row[name], diff["after"])
    )
    if differ:
        raise _Miss(f"after differs from the row in {', '.join(differ)}")
    finding.checks.append("after")


def _same(row_value: Any, logged: Any) -> bool:
    # Capture writes integers past 2^53 as strings, so they survive as exact digits.
    if isinstance(row_value, int) and isinstance(logged, str):
        return str(row_value) == logged
    return bool(row_value == logged)


async def _prove(
    conn: AsyncConnection, tenant: str, event: Mapping[str, Any], verifier_keys: list[str],
    finding: Finding,
) -> None:
    found = await receipt(conn, tenant, uuid.UUID(str(event["id"])))
    if found is None:
        raise _Miss("no signed checkpoint covers the event yet")
    try:
        checked = verify_receipt(found, verifier_keys)
    except ReceiptError as exc:
        raise _Miss(f"inclusion proof: {exc}") from None
    finding.checks.append(f"proof@{checked.size}")


def _one_line(text: str) -> str:
    return _LINE_UNSAFE.sub(" ", text).strip()


def report_body(
    tenant: str, source: Source, findings: Sequence[Finding], at: datetime | None = None
) -> str:
    """The report's text: one line per sampled change, then the result."""
    at = at or datetime.now(UTC)
    missed = sum(1 for f in findings if not f.ok)
    lines = [
        "trailseal selfaudit",
        f"tenant {_one_line(tenant)}",
        f"source {_one_line(source.describe())}",
        f"at {at.isoformat(timespec='seconds')}",
        f"sampled {len(findings)}",
    ]
    for f in findings:
        outcome = "ok " + ",".join(f.checks) if f.ok else f"miss {f.problem}"
        lines.append(_one_line(
            f"change {f.change.label} event {f.event_id or '-'} seq "
            f"{'-' if f.seq is None else f.seq} {outcome}"))
    lines.append(f"result {'ok' if missed == 0 else f'{missed} missed'}")
    return "\n".join(lines) + "\n"


def signed_report(
    signer: Signer, tenant: str, source: Source, findings: Sequence[Finding],
    at: datetime | None = None,
) -> str:
    """The report as a C2SP signed note, signed with the log key."""
    return signer.sign(report_body(tenant, source, findings, at))
