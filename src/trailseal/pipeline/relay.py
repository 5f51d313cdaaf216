"""The relay: ships outbox rows to the service (or a broker) and deletes them once taken.

Each batch is one transaction on the producer's database::

    SELECT id, event FROM trailseal_outbox WHERE dead_at IS NULL
        ORDER BY id LIMIT n FOR UPDATE SKIP LOCKED
    -- send through the transport; it returns once the batch is taken
    DELETE the delivered rows, moving them into trailseal_outbox_history;
    mark the refused ones dead (dead_at, last_error)
    COMMIT

The history keeps each delivered event for ``keep_days`` (rows older are pruned in the
same transaction), so ``trailseal selfaudit`` can check the log against what was sent.
With ``keep_days=0``, or an outbox installed before the history existed, delivered rows
are only deleted.

``SKIP LOCKED`` lets several relays run at once, each with rows no other holds. There is
no high-water mark: every pass starts again from the lowest id still there, so a row
whose transaction took its id early and committed late is shipped on the next pass,
never skipped. A transport failure rolls the batch back (the rows stay, their
``attempts`` counted in a short transaction of their own) and the relay backs off with
full jitter, waiting at least what the service asked for in ``Retry-After``. A crash
between the service's 2xx and the commit sends those rows again; the service stores an
event id once, so delivery is at-least-once and exactly-once in effect.

``HttpTransport`` posts batches to ``/v1/events`` as the SDK's sender does.
"""

from __future__ import annotations

import logging
import random
import threading
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
from psycopg import sql

from trailseal.client.sender import BACKOFF_BASE, BACKOFF_CAP, MAX_BATCH_BYTES, _retry_after
from trailseal.ingest import MAX_BATCH_EVENTS
from trailseal.pipeline.outbox import history_exists, history_table, outbox_table
from trailseal.pipeline.transport import Delivered, Transport, TransportError

log = logging.getLogger("trailseal.relay")

MAX_ERROR_TEXT = 2000
KEEP_DAYS = 30


class HttpTransport:
    """Sends batches to a trailseal service: ``POST {url}/v1/events``.

    2xx: taken. 422: the events the problem document names (``errors[].index``) are
    reported as rejected and the rest sent again. 400/413: the batch is split in halves,
    down to single events, which are then rejected. 429, 5xx, 401/403 and network errors:
    ``TransportError`` (with the ``Retry-After`` the service gave). Batches are cut to
    what the service takes in one request (1,000 events, 4 MiB).
    """

    def __init__(
        self, url: str, token: str, timeout: float = 10.0, *, http: httpx.Client | None = None
    ) -> None:
        self.endpoint = url.rstrip("/") + "/v1/events"
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.http = http or httpx.Client(timeout=timeout)

    def send(self, events: list[bytes]) -> Delivered:
        """Send ``events``; returns once every one is taken or rejected for good."""
        rejected: dict[int, str] = {}
        start = 0
        while start < len(events):
            end, size = start, 0
            while end < len(events) and end - start < MAX_BATCH_EVENTS:
                if end > start and size + len(events[end]) > MAX_BATCH_BYTES:
                    break
                size += len(events[end])
                end += 1
            self._post(events, list(range(start, end)), rejected)
            start = end
        return Delivered(rejected)

    def _post(self, events: list[bytes], indexes: list[int], rejected: dict[int, str]) -> None:
        body = b'{"events":[' + b",".join(events[i] for i in indexes) + b"]}"
        try:
            response = self.http.post(self.endpoint, content=body, headers=self.headers)
        except httpx.HTTPError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from None
        status = response.status_code
        if 200 <= status < 300:
            return
        if status == 422:
            refused = {n: why for n, why in _refused(response).items() if n < len(indexes)}
            if refused:
                for position, why in refused.items():
                    rejected[indexes[position]] = why
                rest = [i for n, i in enumerate(indexes) if n not in refused]
                if rest:  # a refused batch is refused whole: the rest was not taken
                    self._post(events, rest, rejected)
                return
            # A 422 that names no event is treated as a 400: halve until it does.
        if status in (400, 413, 422):
            if len(indexes) > 1:
                half = len(indexes) // 2
                self._post(events, indexes[:half], rejected)
                self._post(events, indexes[half:], rejected)
            else:
                rejected[indexes[0]] = _reason(response)
            return
        if status in (401, 403):
            log.error("trailseal relay: the service refuses the token (%s); rows stay", status)
        raise TransportError(f"HTTP {status}", _retry_after(response))

    def close(self) -> None:
        """Close the HTTP connections."""
        self.http.close()


def _problem(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _reason(response: httpx.Response) -> str:
    problem = _problem(response)
    detail = problem.get("detail") or problem.get("title") or response.reason_phrase
    return f"HTTP {response.status_code}: {detail}"[:MAX_ERROR_TEXT]


def _refused(response: httpx.Response) -> dict[int, str]:
    """Position in the batch -> why, for every event a 422 problem document names."""
    found: dict[int, list[str]] = {}
    errors = _problem(response).get("errors")
    for error in errors if isinstance(errors, list) else ():
        index = error.get("index") if isinstance(error, dict) else None
        if isinstance(index, int) and index >= 0:
            path, message = error.get("path") or "", error.get("message") or "invalid"
            found.setdefault(index, []).append(f"{path}: {message}" if path else message)
    return {i: "; ".join(msgs)[:MAX_ERROR_TEXT] for i, msgs in found.items()}


@dataclass
class RelayStats:
    """What a relay did since it started."""

    delivered: int = 0
    dead: int = 0
    failures: int = 0
    last_error: str = field(default="")


class Relay:
    """Forwards the outbox of the database at ``dsn`` through ``transport``."""

    def __init__(
        self,
        dsn: str,
        transport: Transport,
        batch_size: int = 500,
        schema: str = "public",
        *,
        poll_interval: float = 0.5,
        keep_days: int = KEEP_DAYS,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if keep_days < 0:
            raise ValueError("keep_days must be 0 or more")
        self.dsn = dsn
        self.schema = schema
        self.keep_days = keep_days
        self.keeps_history = False
        self.transport = transport
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.stats = RelayStats()
        self.conn: psycopg.Connection | None = None
        table = outbox_table(schema)
        self._claim = sql.SQL(
            "SELECT id, event::text FROM {} WHERE dead_at IS NULL"
            " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED"
        ).format(table)
        self._delete = sql.SQL("DELETE FROM {} WHERE id = ANY(%s)").format(table)
        history = history_table(schema)
        self._move = sql.SQL(
            "WITH gone AS (DELETE FROM {table} WHERE id = ANY(%s)"
            " RETURNING id, event, created_at)"
            " INSERT INTO {history} (outbox_id, event, created_at)"
            " SELECT id, event, created_at FROM gone ORDER BY id"
        ).format(table=table, history=history)
        self._prune = sql.SQL(
            "DELETE FROM {} WHERE delivered_at < now() - make_interval(days => %s)"
        ).format(history)
        self._bury = sql.SQL(
            "UPDATE {} o SET dead_at = now(), last_error = d.reason, attempts = attempts + 1"
            " FROM unnest(%s::bigint[], %s::text[]) AS d(id, reason) WHERE o.id = d.id"
        ).format(table)
        # Only rows no other relay holds: a busy one must not make this one wait.
        self._count_failure = sql.SQL(
            "UPDATE {table} SET attempts = attempts + 1, last_error = %s WHERE id IN"
            " (SELECT id FROM {table} WHERE id = ANY(%s) FOR UPDATE SKIP LOCKED)"
        ).format(table=table)

    def connect(self) -> psycopg.Connection:
        """The relay's connection to the producer's database, opened if need be."""
        if self.conn is None or self.conn.closed:
            self.conn = psycopg.connect(self.dsn, autocommit=True,
                                        application_name="trailseal-relay")
            self.keeps_history = self.keep_days > 0 and history_exists(self.conn, self.schema)
            if self.keep_days > 0 and not self.keeps_history:
                log.warning("trailseal relay: no %s.trailseal_outbox_history (run `trailseal "
                            "outbox install` again); delivered rows are not kept for "
                            "selfaudit", self.schema)
        return self.conn

    def run_once(self) -> int:
        """Ship one batch; returns how many rows it took off the queue (delivered or
        set aside as dead), 0 when there was nothing to ship. Raises ``TransportError``
        when the batch was not taken (the rows stay) and ``psycopg.Error`` when the
        database fails."""
        conn = self.connect()
        ids: list[int] = []
        delivered: list[int] = []
        dead: dict[int, str] = {}
        try:
            with conn.transaction():
                rows = conn.execute(self._claim, (self.batch_size,)).fetchall()
                if not rows:
                    return 0
                ids = [row[0] for row in rows]
                outcome = self.transport.send([row[1].encode() for row in rows])
                dead = {ids[i]: reason for i, reason in outcome.rejected.items()}
                delivered = [i for i in ids if i not in dead]
                if delivered and self.keeps_history:
                    conn.execute(self._move, (delivered,))
                    conn.execute(self._prune, (self.keep_days,))
                elif delivered:
                    conn.execute(self._delete, (delivered,))
                if dead:
                    conn.execute(self._bury, (list(dead), list(dead.values())))
        except TransportError as exc:
            self._failed(conn, ids, str(exc))
            raise
        except psycopg.OperationalError:
            conn.close()  # reconnect on the next pass
            raise
        self.stats.delivered += len(delivered)
        if dead:
            self.stats.dead += len(dead)
            log.error("trailseal relay: the service refused %d event(s) for good; kept as "
                      "dead in the outbox (ids %s): %s", len(dead), sorted(dead),
                      next(iter(dead.values())))
        return len(rows)

    def _failed(self, conn: psycopg.Connection, ids: list[int], reason: str) -> None:
        self.stats.failures += 1
        self.stats.last_error = reason
        if not ids:
            return
        try:
            conn.execute(self._count_failure, (reason[:MAX_ERROR_TEXT], ids))
        except psycopg.Error:  # counting is a courtesy; the rows are safe either way
            log.warning("trailseal relay: could not count the failed attempt", exc_info=True)

    def run(self, stop_event: threading.Event) -> None:
        """Ship until ``stop_event`` is set: batch after batch while rows wait, then poll
        every ``poll_interval`` seconds; failures back off with full jitter."""
        attempt = 0
        while not stop_event.is_set():
            try:
                taken = self.run_once()
                attempt = 0
                if taken < self.batch_size:
                    stop_event.wait(self.poll_interval)
                continue
            except TransportError as exc:
                wait_at_least = exc.retry_after or 0.0
                reason = str(exc)
            except psycopg.Error as exc:
                wait_at_least = 0.0
                reason = f"database: {exc}"
                self.stats.failures += 1
                self.stats.last_error = reason
            except Exception as exc:  # the relay must outlive any surprise
                log.exception("trailseal relay: unexpected error")
                wait_at_least, reason = 1.0, repr(exc)
            attempt += 1
            ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt)
            delay = min(max(wait_at_least, random.uniform(0, ceiling)),  # noqa: S311 (jitter)
                        BACKOFF_CAP * 2)
            log.warning("trailseal relay: %s; retrying in %.2fs", reason, delay)
            stop_event.wait(delay)

    def close(self) -> None:
        """Close the database connection and the transport."""
        if self.conn is not None:
            self.conn.close()
        self.transport.close()
