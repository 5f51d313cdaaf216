"""Broker transports: publish events to RabbitMQ or NATS JetStream.

A producer (the SDK sender, or ``trailseal relay``) hands a transport a batch of encoded
events; the transport publishes each as one message and returns only once the broker has
confirmed every one of them: publisher confirms on RabbitMQ, a PubAck on JetStream.
Anything short of that raises ``TransportError`` and the caller sends the batch again.
Re-sending is harmless: each message carries its event id (the AMQP ``message_id``, the
``Nats-Msg-Id`` header, which JetStream dedupes within its duplicate window), and the
service keeps one event per (tenant, id) whatever arrives twice.

Where events go, by default, per tenant: the RabbitMQ quorum queue
``trailseal.events.<tenant>`` (with ``trailseal.events.<tenant>.dead`` for messages the
consumer can never take), or the subject ``trailseal.events.<tenant>`` of the JetStream
stream ``TRAILSEAL``. The tenant itself is never read from a message: the consumer writes
everything it takes to the tenant of its own API key.

The broker clients are asyncio libraries and the callers are threads, so each transport
owns one event loop in a private daemon thread and keeps its connection there across
batches; ``send`` hands the loop a coroutine and waits for its result.
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import aiormq.exceptions
import nats
import nats.errors
import nats.js.errors
import orjson
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractQueue
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig

from trailseal.errors import ConfigurationError
from trailseal.pipeline.transport import Delivered, Transport, TransportError

T = TypeVar("T")

log = logging.getLogger("trailseal.pipeline")

AMQP_SCHEMES = frozenset({"amqp", "amqps"})
NATS_SCHEMES = frozenset({"nats", "tls"})
DEFAULT_STREAM = "TRAILSEAL"
SUBJECT_ROOT = "trailseal.events"
DUPLICATE_WINDOW = 600.0  # seconds JetStream remembers a Nats-Msg-Id
CONFIRM_TIMEOUT = 30.0  # longest wait for a broker's confirm of one message
CONNECT_TIMEOUT = 10.0

# What a broker or the network may raise: each means "not taken, try again later".
BROKER_ERRORS: tuple[type[Exception], ...] = (
    aiormq.exceptions.AMQPError,
    aiormq.exceptions.ChannelInvalidStateError,
    nats.errors.Error,
    OSError,  # connection refused or reset, and asyncio's TimeoutError
)


def default_destination(tenant: str) -> str:
    """The queue (RabbitMQ) or subject (JetStream) of ``tenant``'s events."""
    return f"{SUBJECT_ROOT}.{tenant}"


def dead_letter_queue(queue: str) -> str:
    """Where the consumer puts messages of ``queue`` that are not valid events."""
    return f"{queue}.dead"


def broker_kind(url: str) -> str:
    """``"amqp"`` or ``"nats"``, by the URL's scheme; anything else is refused."""
    scheme = urlsplit(url).scheme.lower()
    if scheme in AMQP_SCHEMES:
        return "amqp"
    if scheme in NATS_SCHEMES:
        return "nats"
    raise ConfigurationError(
        f"a broker URL starts with amqp://, amqps://, nats:// or tls://; got {redact(url)!r}"
    )


def destination_kind(url: str, *, queue: str | None, subject: str | None) -> str:
    """``broker_kind(url)``, refusing a queue name for NATS or a subject for RabbitMQ."""
    kind = broker_kind(url)
    if kind == "amqp" and subject is not None:
        raise ConfigurationError("--subject and --stream are for NATS; RabbitMQ takes --queue")
    if kind == "nats" and queue is not None:
        raise ConfigurationError("--queue is for RabbitMQ; NATS takes --subject and --stream")
    return kind


def redact(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def event_id(payload: bytes) -> str | None:
    """The ``id`` of one encoded event, or None when it has none (or is not JSON)."""
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    value = document.get("id") if isinstance(document, dict) else None
    return value if isinstance(value, str) and value else None


# -- RabbitMQ ---------------------------------------------------------------------------


async def connect_amqp(url: str) -> AbstractConnection:
    """A plain (not self-reconnecting) connection: failures surface to the caller, which
    decides when to retry."""
    return await aio_pika.connect(url, timeout=CONNECT_TIMEOUT)


async def declare_queue(channel: AbstractChannel, queue: str) -> AbstractQueue:
    """Declare ``queue`` as a durable quorum queue that dead-letters rejected messages to
    ``<queue>.dead`` (declared too), at least once. Publisher and consumer both declare
    it, with the same arguments, so either may start first."""
    await channel.declare_queue(
        dead_letter_queue(queue), durable=True, arguments={"x-queue-type": "quorum"}
    )
    return await channel.declare_queue(
        queue,
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": dead_letter_queue(queue),
            # At-least-once dead-lettering needs reject-publish overflow; no length limit
            # is set, so nothing is ever refused for length.
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        },
    )


# -- NATS JetStream ---------------------------------------------------------------------


async def _ignore_nats_error(exc: Exception) -> None:
    # The client reports every failed attempt here; the caller sees the failure itself.
    log.debug("nats: %s", exc)


async def connect_nats(url: str) -> NatsClient:
    """A connection that does not reconnect by itself (the caller retries): two attempts,
    then ``NoServersError``."""
    return await nats.connect(
        url,
        connect_timeout=int(CONNECT_TIMEOUT),
        allow_reconnect=False,
        max_reconnect_attempts=1,
        reconnect_time_wait=0.5,
        error_cb=_ignore_nats_error,
    )


def subject_matches(pattern: str, subject: str) -> bool:
    """Whether the NATS subject ``pattern`` (with ``*`` and ``>`` wildcards) takes
    ``subject``."""
    wanted, parts = pattern.split("."), subject.split(".")
    for index, part in enumerate(wanted):
        if part == ">":
            return len(parts) > index
        if index >= len(parts) or part not in ("*", parts[index]):
            return False
    return len(parts) == len(wanted)


async def ensure_stream(js: JetStreamContext, stream: str, subject: str) -> None:
    """Make sure JetStream stream ``stream`` exists and takes ``subject``.

    A missing stream is created with file storage, a duplicate window and work-queue
    retention (a message is gone once the consumer acks it); it takes every
    ``trailseal.events.>`` subject when ``subject`` is one of those, else just ``subject``.
    An existing stream that does not take ``subject`` has it added.
    """
    for _ in range(3):  # another producer may create or change the stream meanwhile
        try:
            info = await js.stream_info(stream)
        except nats.js.errors.NotFoundError:
            every = f"{SUBJECT_ROOT}.>"
            subjects = [every] if subject_matches(every, subject) else [subject]
            try:
                await js.add_stream(
                    StreamConfig(
                        name=stream,
                        subjects=subjects,
                        retention=RetentionPolicy.WORK_QUEUE,
                        storage=StorageType.FILE,
                        duplicate_window=DUPLICATE_WINDOW,
                    )
                )
                return
            except nats.js.errors.BadRequestError:
                continue
        config = info.config
        present = config.subjects or []
        if any(subject_matches(pattern, subject) for pattern in present):
            return
        config.subjects = [*present, subject]
        try:
            await js.update_stream(config)
            return
        except nats.js.errors.BadRequestError:
            continue
    raise nats.js.errors.Error(f"cannot make stream {stream} take subject {subject}")


# -- the sync face ----------------------------------------------------------------------


class _LoopThread:
    """An event loop running in a daemon thread of its own."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def run(self, work: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run ``work`` on the loop and wait for it; cancel it after ``timeout``."""
        future = asyncio.run_coroutine_threadsafe(work, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"no answer from the broker within {timeout:.0f}s") from None

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        if not self.thread.is_alive():
            self.loop.close()


class _BrokerTransport(abc.ABC):
    """What both transports share: id checks, the loop thread, error handling.

    A subclass connects lazily in ``_open`` and publishes one batch in ``_publish``; any
    failure drops the connection, and the next ``send`` opens a new one.
    """

    name = "broker"

    def __init__(self, url: str) -> None:
        broker_kind(url)
        self.url = url
        self._lock = threading.Lock()
        self._loop = _LoopThread(f"trailseal-{self.name}")
        self._closed = False

    def send(self, events: list[bytes]) -> Delivered:
        """Publish ``events``; returns once the broker confirmed every one."""
        delivered = Delivered()
        batch: list[tuple[str, bytes]] = []
        for index, payload in enumerate(events):
            found = event_id(payload)
            if found is None:
                delivered.rejected[index] = "not a JSON event with a string id"
            else:
                batch.append((found, payload))
        if not batch:
            return delivered
        with self._lock:
            if self._closed:
                raise TransportError(f"the {self.name} transport is closed")
            try:
                self._loop.run(self._publish(batch), CONFIRM_TIMEOUT + CONNECT_TIMEOUT)
            except BROKER_ERRORS as exc:
                with contextlib.suppress(*BROKER_ERRORS):
                    self._loop.run(self._disconnect(), CONNECT_TIMEOUT)
                reason = str(exc) or type(exc).__name__
                raise TransportError(f"{self.name} at {redact(self.url)}: {reason}") from exc
        return delivered

    def close(self) -> None:
        """Close the connection and stop the loop thread; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._loop.run(self._disconnect(), CONNECT_TIMEOUT)
            finally:
                self._loop.stop()

    @abc.abstractmethod
    async def _publish(self, batch: list[tuple[str, bytes]]) -> None:
        """Publish one batch and wait for every confirmation."""

    @abc.abstractmethod
    async def _disconnect(self) -> None:
        """Drop the connection, if any."""


async def _all_confirmed(publishes: list[Coroutine[Any, Any, Any]]) -> None:
    """Await every publish (they are in flight together); raise the first failure once
    all have settled."""
    results = await asyncio.gather(*publishes, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


class AmqpTransport(_BrokerTransport):
    """Publishes to a RabbitMQ quorum queue: persistent messages, ``message_id`` = event
    id, publisher confirms, unroutable messages refused (``mandatory``)."""

    name = "RabbitMQ"

    def __init__(self, url: str, queue: str) -> None:
        super().__init__(url)
        self.queue = queue
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None

    async def _open(self) -> AbstractChannel:
        if self._channel is None or self._channel.is_closed:
            await self._disconnect()
            self._connection = await connect_amqp(self.url)
            channel = await self._connection.channel(
                publisher_confirms=True, on_return_raises=True
            )
            await declare_queue(channel, self.queue)
            self._channel = channel
        return self._channel

    async def _publish(self, batch: list[tuple[str, bytes]]) -> None:
        exchange = (await self._open()).default_exchange
        await _all_confirmed(
            [
                exchange.publish(
                    aio_pika.Message(
                        payload,
                        message_id=found,
                        content_type="application/json",
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=self.queue,
                    mandatory=True,
                    timeout=CONFIRM_TIMEOUT,
                )
                for found, payload in batch
            ]
        )

    async def _disconnect(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and not connection.is_closed:
            try:
                await connection.close()
            except BROKER_ERRORS as exc:
                log.debug("closing the RabbitMQ connection: %s", exc)


class NatsTransport(_BrokerTransport):
    """Publishes to a JetStream subject, ``Nats-Msg-Id`` = event id, each message
    acknowledged by the stream (PubAck); creates the stream if it is missing."""

    name = "NATS"

    def __init__(self, url: str, subject: str, stream: str = DEFAULT_STREAM) -> None:
        super().__init__(url)
        self.subject = subject
        self.stream = stream
        self._client: NatsClient | None = None
        self._js: JetStreamContext | None = None

    async def _open(self) -> JetStreamContext:
        if self._js is None or self._client is None or not self._client.is_connected:
            await self._disconnect()
            self._client = await connect_nats(self.url)
            js = self._client.jetstream(timeout=CONFIRM_TIMEOUT)
            await ensure_stream(js, self.stream, self.subject)
            self._js = js
        return self._js

    async def _publish(self, batch: list[tuple[str, bytes]]) -> None:
        js = await self._open()
        await _all_confirmed(
            [
                js.publish(
                    self.subject,
                    payload,
                    stream=self.stream,
                    headers={"Nats-Msg-Id": found},
                    timeout=CONFIRM_TIMEOUT,
                )
                for found, payload in batch
            ]
        )

    async def _disconnect(self) -> None:
        client, self._client, self._js = self._client, None, None
        if client is not None and not client.is_closed:
            try:
                await client.close()
            except BROKER_ERRORS as exc:
                log.debug("closing the NATS connection: %s", exc)


def broker_transport(
    url: str,
    *,
    tenant: str,
    queue: str | None = None,
    subject: str | None = None,
    stream: str = DEFAULT_STREAM,
) -> Transport:
    """The transport for ``url``'s scheme (amqp, amqps: RabbitMQ; nats, tls: NATS),
    publishing to ``tenant``'s default queue or subject unless one is named."""
    if destination_kind(url, queue=queue, subject=subject) == "amqp":
        return AmqpTransport(url, queue or default_destination(tenant))
    return NatsTransport(url, subject or default_destination(tenant), stream)
