"""Queries over a tenant's events in a stable order, with keyset pagination.

Every statement names the tenant explicitly as well as relying on row-level security,
and every filter is served by an index that leads with the tenant (migrations 0001,
0004 and 0005). One function builds the SELECT (:func:`select_events`), so the API, the
streaming reader and the plan tests all run the very same SQL.
"""

from __future__ import annotations

import ipaddress
import json
import re
import secrets
import uuid
from binascii import hexlify
from collections.abc import AsyncIterator, Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from psycopg import AsyncConnection, sql

from trailseal.errors import FieldProblem, InvalidInput
from trailseal.model import ACTION_PATTERN, FUTURE_TOLERANCE
from trailseal.reading import cursor
from trailseal.store import Role, scoped

if TYPE_CHECKING:
    from trailseal.reading.warm import Warm

MAX_LIMIT = 1000
MAX_ACTIONS = 50
MIN_TEXT = 3  # the trigram index serves searches of three characters or more
MAX_TEXT = 256

Order = Literal["asc", "desc"]

_EXACT = re.compile(ACTION_PATTERN)
_PREFIX = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*\.\*$")
_COLUMNS = sql.SQL("seq, occurred_at, canonical, leaf_hash, chain_hash")
# Row-level security lets an index serve only LEAKPROOF operators (see migration 0005):
# so a prefix and a network are ranges (of actions, of addresses), and text the
# leakproof ILIKE trailseal_ext.~~*, served by the trigram index events_names.
_ILIKE = sql.SQL("OPERATOR(trailseal_ext.~~*)")
_NAMED = ("actor_id", "actor_name", "target_id", "target_name")
# Filters added after the first release: left out of the fingerprint while unset, so
# cursors issued before they existed stay valid.
_LATER = ("correlation_id", "request_id", "actor_type", "service", "ip", "q", "include_meta")


def _invalid(parameter: str, message: str) -> InvalidInput:
    return InvalidInput(f"{parameter} {message}", [FieldProblem(None, parameter, message)])


def _actions(value: str | Iterable[str]) -> tuple[str, ...]:
    found = [value] if isinstance(value, str) else list(value)
    if len(found) > MAX_ACTIONS:
        raise _invalid("action", f"takes at most {MAX_ACTIONS} actions")
    for action in found:
        if not (_EXACT.match(action) or _PREFIX.match(action)) or len(action) > 128:
            raise _invalid(
                "action",
                f"{action!r} is neither an action such as user.role.updated nor a prefix "
                "such as user.* or user.role.*",
            )
    return tuple(sorted(set(found)))


def _network(value: str) -> str:
    try:
        network = ipaddress.ip_network(value.strip(), strict=False)
        if isinstance(network, ipaddress.IPv6Network) and network.network_address.scope_id:
            raise ValueError("stored addresses carry no IPv6 zone")
    except ValueError:
        raise _invalid(
            "ip", f"{value!r} is not an IP address or a CIDR network such as 10.0.0.0/8 "
            "or 2001:db8::/32"
        ) from None
    return str(network)


@dataclass(frozen=True)
class EventFilter:
    """What to look for in a tenant's events; None (or empty) means "any".

    Building one checks and normalises it (``InvalidInput`` naming the parameter), so
    every holder of an ``EventFilter`` has a valid one: actions are sorted and
    deduplicated, ``ip`` is a network in its canonical text.
    """

    actor_id: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    action: tuple[str, ...] = ()  # any of: exact actions, and prefixes written "user.*"
    outcome: str | None = None
    since: datetime | None = None  # occurred_at >= since
    until: datetime | None = None  # occurred_at < until
    correlation_id: str | None = None
    request_id: str | None = None
    actor_type: str | None = None
    service: str | None = None
    ip: str | None = None  # an address or a CIDR network: ip <<= network
    q: str | None = None  # case-insensitive text in actor and target ids and names
    include_meta: bool = False  # also the meta-audit's own audit.* events

    def __post_init__(self) -> None:
        object.__setattr__(self, "action", _actions(self.action))
        if self.ip is not None:
            object.__setattr__(self, "ip", _network(self.ip))
        if self.q is not None and not MIN_TEXT <= len(self.q) <= MAX_TEXT:
            raise _invalid("q", f"must be {MIN_TEXT} to {MAX_TEXT} characters long")
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise _invalid(name, "must carry a time zone offset (RFC 3339)")

    def fingerprint(self) -> str:
        """A stable text of the filters, which a cursor is bound to."""
        values: dict[str, Any] = {
            k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(self).items()
        }
        # One action is written as it always was; several as a sorted list.
        if len(self.action) == 1:
            values["action"] = self.action[0]
        else:
            values["action"] = list(self.action) or None
        for later in _LATER:
            if values[later] in (None, False):
                del values[later]
        return json.dumps(values, sort_keys=True, separators=(",", ":"))

    def asked(self) -> dict[str, Any]:
        """The filters that are set, as JSON values (for the meta-audit, for instance)."""
        values: dict[str, Any] = {}
        for key, value in asdict(self).items():
            if value is None or value == () or value is False:
                continue
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, tuple):
                value = list(value)
            values[key] = value
        return values


@dataclass(frozen=True)
class Page:
    """One page of events (as stored: seq, occurred_at, canonical, leaf and chain hash)
    and the cursor of the next, if any."""

    rows: list[tuple[Any, ...]]
    next_cursor: str | None

    @property
    def events(self) -> list[dict[str, Any]]:
        """The page's events in their API form (:func:`event_view`)."""
        return [event_view(row) for row in self.rows]

    def json(self) -> bytes:
        """The page as ``GET /v1/events`` answers it: ``{"events": [...],
        "next_cursor": ...}``, each event by :func:`event_json`, in one join."""
        after = b"null" if self.next_cursor is None else json.dumps(self.next_cursor).encode()
        parts = [b'{"events":[']
        for at, row in enumerate(self.rows):
            if at:
                parts.append(b",")
            _event_parts(row, parts)
        parts += (b'],"next_cursor":', after, b"}")
        return b"".join(parts)


def event_view(row: tuple[Any, ...]) -> dict[str, Any]:
    """The API form of a stored event: its document plus seq and hex hashes."""
    seq, _, canonical, leaf, chain = row
    document: dict[str, Any] = json.loads(bytes(canonical))
    document["seq"] = seq
    document["leaf_hash"] = bytes(leaf).hex()
    document["chain_hash"] = bytes(chain).hex()
    return document


def event_json(row: tuple[Any, ...]) -> bytes:
    """:func:`event_view` as JSON, written around the stored canonical bytes rather than
    parsed and encoded again: the document's members as they were hashed, then ``seq`` and
    the hex hashes (names a stored document never has)."""
    parts: list[bytes] = []
    _event_parts(row, parts)
    return b"".join(parts)


def _event_parts(row: tuple[Any, ...], parts: list[bytes]) -> None:
    seq, _, canonical, leaf, chain = row
    document = bytes(canonical)
    parts += (document[:-1], b',"seq":' if len(document) > 2 else b'"seq":', b"%d" % seq,
              b',"leaf_hash":"', hexlify(leaf), b'","chain_hash":"', hexlify(chain), b'"}')


def like_escape(text: str) -> str:
    """``text`` with the LIKE wildcards and the escape character taken literally."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _action_condition(actions: tuple[str, ...], params: list[Any]) -> sql.Composable:
    exact = [a for a in actions if not a.endswith("*")]
    prefixes = [a[:-1] for a in actions if a.endswith("*")]
    parts: list[sql.Composable] = []
    if len(exact) == 1:
        parts.append(sql.SQL("action = %s"))
        params.append(exact[0])
    elif exact:
        parts.append(sql.SQL("action = ANY(%s)"))
        params.append(exact)
    for prefix in prefixes:
        # A prefix ends with "." and action has the C collation, so the actions starting
        # with "user." are those from "user." up to, not including, "user/" ('/' follows
        # '.' in bytes). Written as that range rather than ^@, because the planner's
        # extended statistics (migration 0010) estimate a range together with the target
        # columns, and ^@ only apart from them.
        parts.append(sql.SQL("(action >= %s AND action < %s)"))
        params.extend([prefix, prefix[:-1] + "/"])
    if len(parts) == 1:
        return parts[0]
    return sql.SQL("({})").format(sql.SQL(" OR ").join(parts))


def conditions(tenant: str, flt: EventFilter) -> tuple[list[sql.Composable], list[Any]]:
    """The WHERE conditions (to be joined with AND) and their parameters that select
    ``tenant``'s events matching ``flt``, over ``trailseal.events`` unaliased."""
    where: list[sql.Composable] = [sql.SQL("tenant = %s")]
    params: list[Any] = [tenant]
    for column in (
        "actor_type", "actor_id", "target_type", "target_id", "outcome", "correlation_id",
        "request_id", "service",
    ):
        value = getattr(flt, column)
        if value is not None:
            where.append(sql.SQL("{} = %s").format(sql.Identifier(column)))
            params.append(value)
    if flt.action:
        # Naming actions is asking for exactly those, so audit.* ones are not left out.
        where.append(_action_condition(flt.action, params))
    elif not flt.include_meta:
        # Written as a literal, the same text as the predicate of the partial index
        # events_time_recorded (0005), so the planner can use it.
        where.append(sql.SQL("action NOT LIKE 'audit.%%'"))
    if flt.ip is not None:
        # Stored addresses are hosts (ingest keeps the address alone), so the range is
        # exact. No `<<=` besides: the planner multiplied its estimate into the range's,
        # expected a few matches, and read every row of the network to sort them.
        network = ipaddress.ip_network(flt.ip)
        where.append(sql.SQL("ip >= %s::inet AND ip <= %s::inet"))
        params.extend([flt.ip, str(network.broadcast_address)])
    if flt.q is not None:
        pattern = "%" + like_escape(flt.q) + "%"
        where.append(sql.SQL("({})").format(sql.SQL(" OR ").join(
            sql.SQL("{} {} %s").format(sql.Identifier(column), _ILIKE) for column in _NAMED
        )))
        params.extend([pattern] * len(_NAMED))
    if flt.since is not None:
        # No event is more than FUTURE_TOLERANCE ahead of its receipt (the database's
        # CHECK, migration 0011), so this also bounds received_at, by which the log is
        # partitioned: the partitions received over a day before it are neither planned
        # nor read.
        where.append(sql.SQL("occurred_at >= %s"))
        params.append(flt.since)
        if flt.since.year > 1:  # else there is no earlier time to bound it by
            where.append(sql.SQL("received_at >= %s"))
            params.append(flt.since - FUTURE_TOLERANCE)
    if flt.until is not None:
        where.append(sql.SQL("occurred_at < %s"))
        params.append(flt.until)
    return where, params


def select_events(
    tenant: str,
    flt: EventFilter,
    *,
    order: Order = "desc",
    after: tuple[datetime, int] | None = None,
    limit: int | None = None,
) -> tuple[sql.Composed, list[Any]]:
    """The SELECT of ``tenant``'s events matching ``flt`` in (occurred_at, seq) ``order``,
    from just past the position ``after``, at most ``limit`` rows; and its parameters.
    Rows are what :func:`event_view` takes."""
    where, params = conditions(tenant, flt)
    direction = sql.SQL("DESC" if order == "desc" else "ASC")
    if after is not None:
        where.append(sql.SQL("(occurred_at, seq) {} (%s, %s)").format(
            sql.SQL("<" if order == "desc" else ">")
        ))
        params.extend(after)
    statement = sql.SQL(
        "SELECT {} FROM trailseal.events WHERE {} ORDER BY occurred_at {}, seq {}"
    ).format(_COLUMNS, sql.SQL(" AND ").join(where), direction, direction)
    if limit is not None:
        statement = sql.SQL("{} LIMIT %s").format(statement)
        params.append(limit)
    return statement, params


def _cursor_query(flt: EventFilter, order: Order) -> str:
    # Newest first was the only order once, so its cursors carry no order mark.
    fingerprint = flt.fingerprint()
    return fingerprint if order == "desc" else fingerprint + "|order=asc"


async def query_events(
    conn: AsyncConnection,
    tenant: str,
    flt: EventFilter,
    *,
    limit: int,
    cursor_key: bytes,
    after: str | None = None,
    order: Order = "desc",
    warm: Warm | None = None,
) -> Page:
    """One page of ``tenant``'s events matching ``flt``: newest first by (occurred_at,
    seq), or oldest first with ``order="asc"``. ``after`` is the ``next_cursor`` of the
    page before; it must come from the same tenant, filters and order."""
    async with scoped(conn, Role.READER, tenant):
        return await read_page(conn, tenant, flt, limit=limit, cursor_key=cursor_key,
                               after=after, order=order, warm=warm)


async def read_page(
    conn: AsyncConnection,
    tenant: str,
    flt: EventFilter,
    *,
    limit: int,
    cursor_key: bytes,
    after: str | None = None,
    order: Order = "desc",
    warm: Warm | None = None,
) -> Page:
    """``query_events`` on ``conn`` in the caller's reader transaction, scoped to
    ``tenant`` already (the API's, in which the key was authenticated)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise _invalid("limit", f"must be between 1 and {MAX_LIMIT}")
    query = _cursor_query(flt, order)
    position = cursor.decode(cursor_key, tenant, query, after) if after is not None else None
    statement, params = select_events(tenant, flt, order=order, after=position, limit=limit + 1)
    # Planned for its values every time, never prepared: a plan made once for any values
    # (PostgreSQL's generic plan, which a prepared statement switches to) cannot tell a
    # network of a few addresses from one holding a large share of the log, and read and sorted
    # every match of the wide one (363 ms for a page of failed logins at 400,000 events,
    # against under 20 planned for the values).
    async with conn.pipeline():  # the page and the list of warm segments: one round trip
        cur = await conn.execute(statement, params, prepare=False)
        listing = None if warm is None else await warm.list_segments(conn, tenant, flt)
    rows = await cur.fetchall()
    if warm is not None and listing is not None:  # events that left PostgreSQL
        from trailseal.reading.warm import merge

        segments = await warm.segments_of(listing)
        if segments:
            found = await warm.rows(conn, tenant, flt, order=order, after=position,
                                    limit=limit + 1, segments=segments)
            rows = list(merge(rows, found, order))[: limit + 1]
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = cursor.encode(cursor_key, tenant, query, last[1], last[0])
    return Page(rows, next_cursor)


async def stream_rows(
    conn: AsyncConnection, statement: sql.Composed, params: list[Any], *, batch: int
) -> AsyncIterator[tuple[Any, ...]]:
    """The rows of ``statement`` through a server-side cursor, ``batch`` at a time, so
    memory stays constant however many there are. Needs an open transaction on ``conn``."""
    async with conn.cursor(name=f"trailseal_rows_{secrets.token_hex(6)}") as cur:
        cur.itersize = batch
        await cur.execute(statement, params)
        async for row in cur:
            yield row


async def iter_events(
    conn: AsyncConnection,
    tenant: str,
    flt: EventFilter,
    *,
    order: Order = "asc",
    batch: int = 1000,
    warm: Warm | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """Every event of ``tenant`` matching ``flt``, in (occurred_at, seq) ``order``, as
    :func:`event_view` dicts, read ``batch`` rows at a time in constant memory.

    Precondition: ``conn`` is inside ``scoped(conn, Role.READER, tenant)``; the
    server-side cursor lives in that transaction, so consume the iterator before it
    ends (and one transaction sees one snapshot, so the events are consistent)."""
    statement, params = select_events(tenant, flt, order=order)
    rows = stream_rows(conn, statement, params, batch=batch)
    if warm is not None:  # events that left PostgreSQL, from their segments
        from trailseal.reading.warm import merge_async

        rows = merge_async(rows, warm.stream(conn, tenant, flt, order=order, batch=batch),
                           order)
    async for row in rows:
        yield event_view(row)


async def get_event(
    conn: AsyncConnection, tenant: str, event_id: uuid.UUID
) -> dict[str, Any] | None:
    """One event of ``tenant`` by id; None when missing or another tenant's."""
    statement = sql.SQL("SELECT {} FROM trailseal.events WHERE tenant = %s AND id = %s").format(
        _COLUMNS
    )
    async with scoped(conn, Role.READER, tenant):
        cur = await conn.execute(statement, (tenant, event_id))
        row = await cur.fetchone()
    return event_view(row) if row else None


async def sequenced(
    conn: AsyncConnection, tenant: str, ids: list[uuid.UUID]
) -> dict[uuid.UUID, tuple[int, bytes]]:
    """Seq and leaf hash of those of ``ids`` already in the log."""
    async with scoped(conn, Role.READER, tenant):
        cur = await conn.execute(
            "SELECT e.id, e.seq, e.leaf_hash FROM trailseal.event_ids i"
            " JOIN trailseal.events e"
            "   ON e.tenant = i.tenant AND e.id = i.id AND e.received_at = i.received_at"
            " WHERE i.tenant = %s AND i.id = ANY(%s)",
            (tenant, ids),
        )
        return {row[0]: (row[1], bytes(row[2])) for row in await cur.fetchall()}
