"""The broker consumer behind ``trailseal consume``: takes events from a RabbitMQ queue or
a JetStream subject and writes them to one tenant's inbox.

Messages are taken in batches (up to ``batch_size``, or whatever arrived within
``max_delay`` of the first), run through the same path as ``POST /v1/events``
(``ingest.parse_body``, ``ingest.prepare``, ``ingest.write_inbox``) and written in one
transaction per batch. A message is acknowledged only after that transaction committed,
so a consumer that dies at any point loses nothing: the broker delivers the unacked
messages again, and the inbox's (tenant, id) dedupe makes the second write a no-op.

- A message that is not a valid event is set aside, never retried: RabbitMQ rejects it
  without requeue (the queue dead-letters it to ``<queue>.dead``), JetStream terms it.
  The valid messages of its batch are written as usual.
- A database error keeps the whole batch unacknowledged and retries it with backoff; the
  messages stay with this consumer meanwhile (JetStream is told the work is in progress,
  so its ack wait does not run out). Holding them, rather than requeueing at once, keeps
  an outage from inflating redelivery counts, which a quorum queue with a delivery limit
  would turn into dead letters. On stop, a held batch is handed back for redelivery.
- A lost broker connection is reopened with backoff; what was unacked is redelivered.

The tenant is the caller's: the key the consumer was started with, never the message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
from dataclasses import dataclass, field
from typing import Protocol

import psycopg
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from psycopg_pool import AsyncConnectionPool

from trailseal import ingest
from trailseal.errors import ConfigurationError, InvalidInput
from trailseal.pipeline.brokers import (
    BROKER_ERRORS,
    DEFAULT_STREAM,
    broker_kind,
    connect_amqp,
    connect_nats,
    declare_queue,
    default_destination,
    destination_kind,
    ensure_stream,
)
from trailseal.tenants import authenticate

log = logging.getLogger("trailseal.pipeline")

POLL_SECONDS = 0.5  # how often an idle consumer looks at its stop event
BACKOFF_BASE = 0.2
BACKOFF_CAP = 30.0
DEFAULT_ACK_WAIT = 60.0


@dataclass
class ConsumeStats:
    """What a consumer did so far."""

    messages: int = 0  # taken from the broker (redeliveries count again)
    written: int = 0  # new events in the inbox
    duplicates: int = 0  # events the tenant already had: a re-publish or a redelivery
    dead: int = 0  # messages set aside as invalid
    batches: int = 0  # batches committed
    retries: int = 0  # database or broker failures retried
    last_error: str = field(default="")


async def ingest_tenant(pool: AsyncConnectionPool, token: str) -> str:
    """The tenant of API key ``token``, which must carry the ``ingest`` scope."""
    async with pool.connection() as conn:
        principal = await authenticate(conn, token)
    if principal is None:
        raise ConfigurationError("the token is not a live API key")
    if "ingest" not in principal.scopes:
        have = ", ".join(sorted(principal.scopes))
        raise ConfigurationError(
            f"the key of tenant {principal.tenant!r} lacks the ingest scope (it has: {have})"
        )
    return principal.tenant


class _Backoff:
    """Exponential backoff with jitter, cut short by ``stop``."""

    def __init__(self) -> None:
        self.attempt = 0

    async def wait(self, stop: asyncio.Event) -> bool:
        """Sleep the next delay; True when ``stop`` was set meanwhile."""
        self.attempt += 1
        ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2**self.attempt)
        delay = random.uniform(ceiling / 2, ceiling)  # noqa: S311 (jitter, not secrets)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        return stop.is_set()

    def reset(self) -> None:
        self.attempt = 0


# -- where messages come from -----------------------------------------------------------


class _Delivery(Protocol):
    """One message taken from the broker, not yet settled."""

    body: bytes
    label: str  # names the message in log lines

    async def ack(self) -> None: ...
    async def reject(self) -> None: ...  # never deliver again (dead letter)
    async def release(self) -> None: ...  # deliver again, soon
    async def touch(self) -> None: ...  # still working on it


class _Source(Protocol):
    """An open consumer on the broker."""

    async def take(self, batch_size: int, max_delay: float) -> list[_Delivery]:
        """Up to ``batch_size`` messages: what arrives within ``max_delay`` of the first;
        none after a short idle wait."""

    async def close(self) -> None:
        """Close the connection; unacked messages go back to the broker."""


class _AmqpDelivery:
    def __init__(self, message: AbstractIncomingMessage) -> None:
        self.message = message
        self.body = message.body
        self.label = f"message {message.message_id or message.delivery_tag}"

    async def ack(self) -> None:
        await self.message.ack()

    async def reject(self) -> None:
        await self.message.reject(requeue=False)

    async def release(self) -> None:
        await self.message.nack(requeue=True)

    async def touch(self) -> None:
        """RabbitMQ keeps an unacked message with its consumer while the channel lives."""


class _AmqpSource:
    """A manual-ack consumer on a quorum queue; prefetch is one batch."""

    def __init__(self, connection: AbstractConnection, channel: AbstractChannel) -> None:
        self.connection = connection
        self.channel = channel
        self.arrived: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()

    @classmethod
    async def open(cls, url: str, queue: str, batch_size: int) -> _AmqpSource:
        connection = await connect_amqp(url)
        try:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=batch_size)
            source = cls(connection, channel)
            declared = await declare_queue(channel, queue)
            await declared.consume(source.arrived.put, no_ack=False)
        except BaseException:
            await connection.close()
            raise
        return source

    async def _next(self, timeout: float) -> AbstractIncomingMessage | None:
        try:
            return await asyncio.wait_for(self.arrived.get(), timeout)
        except TimeoutError:
            if self.channel.is_closed or self.connection.is_closed:
                raise ConnectionError("the RabbitMQ channel closed") from None
            return None

    async def take(self, batch_size: int, max_delay: float) -> list[_Delivery]:
        first = await self._next(POLL_SECONDS)
        if first is None:
            return []
        batch: list[_Delivery] = [_AmqpDelivery(first)]
        deadline = time.monotonic() + max_delay
        while len(batch) < batch_size:
            if not self.arrived.empty():
                batch.append(_AmqpDelivery(self.arrived.get_nowait()))
                continue
            remaining = deadline - time.monotonic()
            message = await self._next(remaining) if remaining > 0 else None
            if message is None:
                break
            batch.append(_AmqpDelivery(message))
        return batch

    async def close(self) -> None:
        # Closing the channel hands every unacked message back to the queue.
        with contextlib.suppress(*BROKER_ERRORS):
            await self.connection.close()


class _NatsDelivery:
    def __init__(self, message: Msg) -> None:
        self.message = message
        self.body = message.data
        msg_id = (message.headers or {}).get("Nats-Msg-Id")
        self.label = f"message {msg_id or message.metadata.sequence.stream}"

    async def ack(self) -> None:
        await self.message.ack()

    async def reject(self) -> None:
        await self.message.term()

    async def release(self) -> None:
        await self.message.nak()

    async def touch(self) -> None:
        await self.message.in_progress()


def durable_name(subject: str) -> str:
    """The durable JetStream consumer of ``subject``: one per subject, shared by every
    ``trailseal consume`` process that reads it."""
    return "trailseal-" + re.sub(r"[^A-Za-z0-9_-]", "_", subject)


class _NatsSource:
    """A durable pull consumer with explicit acks."""

    def __init__(self, client: NatsClient, subscription: JetStreamContext.PullSubscription):
        self.client = client
        self.subscription = subscription

    @classmethod
    async def open(
        cls, url: str, subject: str, stream: str, batch_size: int, ack_wait: float
    ) -> _NatsSource:
        client = await connect_nats(url)
        try:
            js = client.jetstream()
            await ensure_stream(js, stream, subject)
            name = durable_name(subject)
            # Create, or bring an existing durable consumer to this configuration.
            await js.add_consumer(
                stream,
                ConsumerConfig(
                    name=name,
                    durable_name=name,
                    filter_subject=subject,
                    ack_policy=AckPolicy.EXPLICIT,
                    deliver_policy=DeliverPolicy.ALL,
                    ack_wait=ack_wait,
                    max_ack_pending=max(1000, 2 * batch_size),
                ),
            )
            subscription = await js.pull_subscribe_bind(durable=name, stream=stream)
        except BaseException:
            await client.close()
            raise
        return cls(client, subscription)

    async def _fetch(self, count: int, timeout: float) -> list[Msg]:
        if not self.client.is_connected:
            raise ConnectionError("the NATS connection closed")
        try:
            return await self.subscription.fetch(count, timeout=timeout)
        except TimeoutError:  # nothing arrived in time (nats' TimeoutError is one too)
            return []

    async def take(self, batch_size: int, max_delay: float) -> list[_Delivery]:
        messages = await self._fetch(batch_size, POLL_SECONDS)
        if not messages:
            return []
        deadline = time.monotonic() + max_delay
        while len(messages) < batch_size:
            remaining = deadline - time.monotonic()
            if remaining < 0.01:
                break
            more = await self._fetch(batch_size - len(messages), remaining)
            if not more:
                break
            messages.extend(more)
        return [_NatsDelivery(m) for m in messages]

    async def close(self) -> None:
        with contextlib.suppress(*BROKER_ERRORS):
            await self.client.close()


# -- the loop ---------------------------------------------------------------------------


def _why(exc: InvalidInput) -> str:
    details = "; ".join(f"{p.path or '(event)'}: {p.message}" for p in exc.problems[:3])
    return f"{exc} ({details})" if details else str(exc)


async def _write(
    pool: AsyncConnectionPool,
    tenant: str,
    batch: list[_Delivery],
    stats: ConsumeStats,
    stop: asyncio.Event,
) -> None:
    """Write the valid events of ``batch``, then ack them and reject the invalid ones.
    Stopped while the database fails, hand the whole batch back unacked instead."""
    received_at = ingest.now()
    prepared: list[ingest.Prepared] = []
    valid: list[_Delivery] = []
    invalid: list[tuple[_Delivery, str]] = []
    for delivery in batch:
        try:
            events = ingest.prepare(ingest.parse_body(delivery.body), tenant, received_at)
        except InvalidInput as exc:
            invalid.append((delivery, _why(exc)))
            continue
        prepared.extend(events)
        valid.append(delivery)
    backoff = _Backoff()
    while prepared:
        try:
            async with pool.connection() as conn:
                result = await ingest.write_inbox(conn, tenant, prepared, received_at)
        except psycopg.Error as exc:
            stats.retries += 1
            stats.last_error = f"database: {exc}"
            log.warning("database error (%s); %d message(s) held unacked, retrying",
                        str(exc).strip() or type(exc).__name__, len(batch))
            for delivery in batch:
                await delivery.touch()
            if await backoff.wait(stop):
                for delivery in batch:
                    await delivery.release()
                return
            continue
        stats.written += len(result.accepted)
        stats.duplicates += len(result.duplicates)
        break
    for delivery in valid:
        await delivery.ack()
    for delivery, reason in invalid:
        log.error("tenant %s: %s is not a valid event; dead-lettered: %s",
                  tenant, delivery.label, reason)
        await delivery.reject()
    stats.dead += len(invalid)
    stats.batches += 1


async def _open(
    url: str, tenant: str, queue: str | None, subject: str | None, stream: str,
    batch_size: int, ack_wait: float,
) -> _Source:
    if broker_kind(url) == "amqp":
        return await _AmqpSource.open(url, queue or default_destination(tenant), batch_size)
    return await _NatsSource.open(
        url, subject or default_destination(tenant), stream, batch_size, ack_wait
    )


async def consume(
    url: str,
    pool: AsyncConnectionPool,
    tenant: str,
    *,
    queue: str | None = None,
    subject: str | None = None,
    stream: str = DEFAULT_STREAM,
    batch_size: int = 500,
    max_delay: float = 0.2,
    ack_wait: float = DEFAULT_ACK_WAIT,
    stop: asyncio.Event,
    stats: ConsumeStats | None = None,
) -> ConsumeStats:
    """Move events from the broker at ``url`` into ``tenant``'s inbox until ``stop`` is
    set; a stop takes effect after the batch in hand.

    RabbitMQ (amqp://, amqps://) reads ``queue``, by default ``trailseal.events.<tenant>``;
    JetStream (nats://, tls://) reads ``subject`` (same default) of ``stream`` through the
    durable consumer ``durable_name(subject)``, whose unacked messages are redelivered
    after ``ack_wait`` seconds. Failing to reach the broker at the start raises; later
    failures are retried. Returns the counters (also kept in ``stats`` as it goes).
    """
    destination_kind(url, queue=queue, subject=subject)
    stats = stats if stats is not None else ConsumeStats()
    source: _Source | None = await _open(
        url, tenant, queue, subject, stream, batch_size, ack_wait
    )
    backoff = _Backoff()
    try:
        while not stop.is_set():
            try:
                if source is None:
                    source = await _open(
                        url, tenant, queue, subject, stream, batch_size, ack_wait
                    )
                    log.warning("reconnected to the broker")
                batch = await source.take(batch_size, max_delay)
                if batch:
                    stats.messages += len(batch)
                    await _write(pool, tenant, batch, stats, stop)
                backoff.reset()
            except BROKER_ERRORS as exc:
                stats.retries += 1
                stats.last_error = f"broker: {exc}"
                log.warning("broker error (%s); reconnecting", str(exc) or type(exc).__name__)
                if source is not None:
                    await source.close()
                    source = None
                await backoff.wait(stop)
    finally:
        if source is not None:
            await source.close()
    return stats
