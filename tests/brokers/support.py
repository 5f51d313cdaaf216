"""Helpers of the broker tests: a tenant's place on a broker, looked at with the plain
aio-pika and nats-py clients, and the consumer run in a thread of its own."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aio_pika
import nats
import nats.js.errors
import orjson
import psycopg
import pytest

from tests.support import run
from trailseal.pipeline.brokers import (
    DEFAULT_STREAM,
    broker_kind,
    broker_transport,
    dead_letter_queue,
    declare_queue,
    default_destination,
    ensure_stream,
)
from trailseal.pipeline.consumer import ConsumeStats, consume, durable_name
from trailseal.pipeline.transport import Delivered
from trailseal.store import create_pool

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
NATS_URL = "nats://127.0.0.1:4222"


def greets(port: int) -> bool:
    """Whether the broker on 127.0.0.1:``port`` answers its protocol's first frame."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.settimeout(2)
            if port == 5672:
                sock.sendall(b"AMQP\x00\x00\x09\x01")  # AMQP 0-9-1 protocol header
            return bool(sock.recv(8))
    except OSError:
        return False


def ensure_running(services: dict[str, tuple[int, list[str]]], wait: float) -> None:
    """Start each service ``name: (port, command)`` whose port does not greet, then wait
    up to ``wait`` seconds for it; fail the test (never skip it) when one stays silent."""
    started: dict[str, str] = {}
    for name, (port, command) in services.items():
        if greets(port):
            continue
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as exc:
            pytest.fail(f"{name} is not running on 127.0.0.1:{port}, and "
                        f"`{' '.join(command)}` could not start it: {exc}", pytrace=False)
        started[name] = (done.stdout + done.stderr).strip()
    deadline = time.monotonic() + wait
    for name, output in started.items():
        port = services[name][0]
        while not greets(port):
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{name} on 127.0.0.1:{port} did not answer within {wait:.0f}s of being "
                    f"started ({output or 'the start command printed nothing'})",
                    pytrace=False,
                )
            time.sleep(0.5)


@dataclass(frozen=True)
class Message:
    """A message as it sits in the queue or stream."""

    body: bytes
    message_id: str | None  # AMQP message_id, or the Nats-Msg-Id header
    persistent: bool


class Broker:
    """A tenant's queue on RabbitMQ or subject on JetStream."""

    def __init__(self, url: str, tenant: str) -> None:
        self.url = url
        self.tenant = tenant
        self.kind = broker_kind(url)
        self.destination = default_destination(tenant)
        self.stream = DEFAULT_STREAM

    def __repr__(self) -> str:
        return f"Broker({self.kind}, {self.destination})"

    # -- publishing ---------------------------------------------------------------------

    def publish(self, payloads: list[bytes]) -> Delivered:
        """Publish through the transport under test."""
        transport = broker_transport(self.url, tenant=self.tenant)
        try:
            return transport.send(payloads)
        finally:
            transport.close()

    def publish_raw(self, bodies: list[bytes]) -> None:
        """Publish with the plain client, each message with a new id of its own: what a
        foreign producer (or a re-publish past JetStream's duplicate window) sends."""
        run(self._publish_raw(bodies, secrets.token_hex(8)))

    async def _publish_raw(self, bodies: list[bytes], tag: str) -> None:
        if self.kind == "amqp":
            async with await aio_pika.connect(self.url) as connection:
                channel = await connection.channel()
                await declare_queue(channel, self.destination)
                for index, body in enumerate(bodies):
                    await channel.default_exchange.publish(
                        aio_pika.Message(body, message_id=f"{tag}-{index}"),
                        routing_key=self.destination,
                    )
            return
        client = await nats.connect(self.url)
        try:
            js = client.jetstream()
            await ensure_stream(js, self.stream, self.destination)
            for index, body in enumerate(bodies):
                await js.publish(
                    self.destination, body, headers={"Nats-Msg-Id": f"{tag}-{index}"}
                )
        finally:
            await client.close()

    # -- looking -------------------------------------------------------------------------

    def waiting(self) -> int:
        """Messages not yet acknowledged (RabbitMQ: ready ones only, as the quorum queue
        counts them, which it does a moment after the acks: wait for a count, rather
        than read it once)."""
        return run(self._waiting())

    async def _waiting(self) -> int:
        if self.kind == "amqp":
            async with await aio_pika.connect(self.url) as connection:
                channel = await connection.channel()
                queue = await channel.declare_queue(self.destination, passive=True)
                return int(queue.declaration_result.message_count or 0)
        client = await nats.connect(self.url)
        try:
            info = await client.jetstream().stream_info(
                self.stream, subjects_filter=self.destination
            )
            return int((info.state.subjects or {}).get(self.destination, 0))
        finally:
            await client.close()

    def messages(self) -> list[Message]:
        """Every message waiting, in order, left in place."""
        return run(self._messages())

    async def _messages(self) -> list[Message]:
        found: list[Message] = []
        if self.kind == "amqp":
            async with await aio_pika.connect(self.url) as connection:
                channel = await connection.channel()
                queue = await channel.get_queue(self.destination)
                while (message := await queue.get(no_ack=False, fail=False)) is not None:
                    found.append(Message(message.body, message.message_id,
                                         message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT))
                # Closing the channel unacked puts every message back.
            return found
        client = await nats.connect(self.url)
        try:
            js = client.jetstream()
            seq = 0
            while True:
                try:
                    raw = await js.get_msg(self.stream, seq=seq + 1, subject=self.destination,
                                           next=True)
                except nats.js.errors.NotFoundError:
                    return found
                seq = raw.seq or seq + 1
                headers = raw.headers or {}
                found.append(Message(raw.data or b"", headers.get("Nats-Msg-Id"), True))
        finally:
            await client.close()

    def dead_letters(self) -> list[bytes]:
        """The bodies in ``<queue>.dead`` (RabbitMQ only), left in place."""
        assert self.kind == "amqp"

        async def go() -> list[bytes]:
            async with await aio_pika.connect(self.url) as connection:
                channel = await connection.channel()
                queue = await channel.get_queue(dead_letter_queue(self.destination))
                bodies = []
                while (message := await queue.get(no_ack=False, fail=False)) is not None:
                    bodies.append(message.body)
                return bodies

        return run(go())

    def remove(self) -> None:
        """Delete the queues, or the durable consumer and the subject's messages."""
        run(self._remove())

    async def _remove(self) -> None:
        if self.kind == "amqp":
            async with await aio_pika.connect(self.url) as connection:
                channel = await connection.channel()
                await channel.queue_delete(self.destination)
                await channel.queue_delete(dead_letter_queue(self.destination))
            return
        client = await nats.connect(self.url)
        try:
            js = client.jetstream()
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_consumer(self.stream, durable_name(self.destination))
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.purge_stream(self.stream, subject=self.destination)
        finally:
            await client.close()


def encoded(events: list[dict[str, Any]]) -> list[bytes]:
    """Events as the SDK spools them."""
    return [orjson.dumps(e) for e in events]


class ConsumerThread:
    """``consume`` as an asyncio task in a thread of its own, with a pool of its own."""

    def __init__(
        self,
        broker: Broker,
        database_url: str,
        *,
        pool_timeout: float = 30.0,
        **options: Any,
    ) -> None:
        self.broker = broker
        self.database_url = database_url
        self.pool_timeout = pool_timeout
        self.options = options
        self.stats = ConsumeStats()
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="consumer", daemon=True)

    def __enter__(self) -> ConsumerThread:
        self._thread.start()
        assert self._ready.wait(10), "the consumer thread did not start"
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by stop()
            self.error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        pool = create_pool(self.database_url, min_size=1, max_size=2)
        pool.timeout = self.pool_timeout
        await pool.open()
        self._ready.set()
        try:
            await consume(self.broker.url, pool, self.broker.tenant, stop=self._stop,
                          stats=self.stats, **self.options)
        finally:
            await pool.close()

    def stop(self, timeout: float = 30.0) -> ConsumeStats:
        """Stop after the current batch; raise what the consumer raised, if anything."""
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the consumer did not stop"
        if self.error is not None:
            raise self.error
        return self.stats


def landed(database_url: str, tenant: str) -> int:
    """Events the tenant's inbox ever took (whether sequenced yet or not)."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM trailseal.event_ids WHERE tenant = %s", (tenant,)
        ).fetchone()
    return int(row[0]) if row else 0


def sequenced_ids(database_url: str, tenant: str) -> list[str]:
    """The ids in the tenant's log, in seq order, repeats included."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT id FROM trailseal.events WHERE tenant = %s ORDER BY seq", (tenant,)
        ).fetchall()
    return [str(row[0]) for row in rows]


def wait_until(check: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    """Poll ``check`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what or check}"
        time.sleep(0.05)
