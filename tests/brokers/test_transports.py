"""AmqpTransport and NatsTransport publish to the machine's RabbitMQ and NATS; what they
published is read back with the plain clients."""

from __future__ import annotations

import secrets
import time

import aio_pika
import aiormq.exceptions
import nats
import pytest

from tests.brokers.support import AMQP_URL, NATS_URL, Broker, encoded, ensure_running
from tests.support import an_event, free_port, run
from trailseal.errors import ConfigurationError
from trailseal.pipeline.brokers import (
    DEFAULT_STREAM,
    AmqpTransport,
    NatsTransport,
    broker_transport,
    dead_letter_queue,
    default_destination,
    redact,
    subject_matches,
)
from trailseal.pipeline.transport import Delivered, TransportError


def test_every_event_is_published_confirmed_with_its_id(broker: Broker):
    events = [an_event() for _ in range(25)]
    assert broker.publish(encoded(events)) == Delivered()
    found = broker.messages()
    assert sorted(m.body for m in found) == sorted(encoded(events))
    assert {m.message_id for m in found} == {e["id"] for e in events}
    assert all(m.persistent for m in found)


def test_a_payload_without_an_id_is_reported_not_published(broker: Broker):
    good = encoded([an_event(), an_event()])
    delivered = broker.publish([good[0], b"not json", b'{"action": "user.created"}', good[1]])
    assert sorted(delivered.rejected) == [1, 2]
    assert sorted(m.body for m in broker.messages()) == sorted(good)


def test_an_empty_batch_needs_no_broker():
    transport = broker_transport("amqp://guest:guest@127.0.0.1:1/", tenant="t")
    try:
        assert transport.send([]) == Delivered()
    finally:
        transport.close()


@pytest.mark.parametrize("url", ["amqp://guest:secret@127.0.0.1:1/", "nats://127.0.0.1:1"])
def test_an_unreachable_broker_raises_transport_error(url: str):
    transport = broker_transport(url, tenant="t")
    started = time.monotonic()
    try:
        with pytest.raises(TransportError) as caught:
            transport.send(encoded([an_event()]))
    finally:
        transport.close()
    assert time.monotonic() - started < 10
    assert "secret" not in str(caught.value) and "127.0.0.1:1" in str(caught.value)


def test_a_closed_transport_refuses_to_send():
    transport = broker_transport(NATS_URL, tenant="t")
    transport.close()
    transport.close()  # idempotent
    with pytest.raises(TransportError, match="closed"):
        transport.send(encoded([an_event()]))


def test_the_amqp_queue_is_a_durable_quorum_queue_with_a_dead_letter_queue(
    amqp_broker: Broker,
):
    broker = amqp_broker
    broker.publish(encoded([an_event()]))

    async def redeclare_as_classic() -> None:
        async with await aio_pika.connect(AMQP_URL) as connection:
            channel = await connection.channel()
            await channel.declare_queue(
                broker.destination,
                durable=True,
                arguments={
                    "x-queue-type": "classic",  # all else as declared
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": dead_letter_queue(broker.destination),
                    "x-dead-letter-strategy": "at-least-once",
                    "x-overflow": "reject-publish",
                },
            )

    with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed, match="x-queue-type"):
        run(redeclare_as_classic())

    async def dead_queue_exists() -> int:
        async with await aio_pika.connect(AMQP_URL) as connection:
            channel = await connection.channel()
            queue = await channel.get_queue(dead_letter_queue(broker.destination))
            return int(queue.declaration_result.message_count or 0)

    assert run(dead_queue_exists()) == 0


def test_jetstream_drops_a_republished_event_by_its_msg_id(nats_broker: Broker):
    broker = nats_broker
    payloads = encoded([an_event() for _ in range(10)])
    broker.publish(payloads)
    broker.publish(payloads[:5])  # a half-confirmed batch sent again
    assert broker.waiting() == 10


def test_the_default_stream_keeps_files_and_a_duplicate_window(nats_broker: Broker):
    broker = nats_broker
    broker.publish(encoded([an_event()]))

    async def config():  # type: ignore[no-untyped-def]
        client = await nats.connect(NATS_URL)
        try:
            return (await client.jetstream().stream_info(DEFAULT_STREAM)).config
        finally:
            await client.close()

    found = run(config())
    assert found.storage == "file" and found.duplicate_window > 0
    assert found.retention == "workqueue"
    assert any(subject_matches(s, broker.destination) for s in found.subjects)


def test_a_missing_stream_is_created_and_an_existing_one_takes_a_new_subject():
    token = secrets.token_hex(4)
    stream, first, second = f"TSTEST_{token}", f"tstest.{token}.one", f"tstest.{token}.two"
    try:
        for subject in (first, second):
            transport = NatsTransport(NATS_URL, subject, stream)
            try:
                transport.send(encoded([an_event()]))
            finally:
                transport.close()

        async def info():  # type: ignore[no-untyped-def]
            client = await nats.connect(NATS_URL)
            try:
                return await client.jetstream().stream_info(stream, subjects_filter=">")
            finally:
                await client.close()

        found = run(info())
        assert found.config.subjects == [first, second]
        assert found.state.subjects == {first: 1, second: 1}
    finally:

        async def delete() -> None:
            client = await nats.connect(NATS_URL)
            try:
                await client.jetstream().delete_stream(stream)
            finally:
                await client.close()

        run(delete())


def test_broker_transport_chooses_by_scheme():
    made = [
        broker_transport("amqp://h/", tenant="acme"),
        broker_transport("amqps://h/", tenant="acme", queue="audit"),
        broker_transport("nats://h:4222", tenant="acme"),
        broker_transport("tls://h:4222", tenant="acme", subject="audit.acme", stream="AUDIT"),
    ]
    try:
        assert isinstance(made[0], AmqpTransport) and made[0].queue == "trailseal.events.acme"
        assert isinstance(made[1], AmqpTransport) and made[1].queue == "audit"
        assert isinstance(made[2], NatsTransport)
        assert (made[2].subject, made[2].stream) == ("trailseal.events.acme", "TRAILSEAL")
        assert isinstance(made[3], NatsTransport)
        assert (made[3].subject, made[3].stream) == ("audit.acme", "AUDIT")
    finally:
        for transport in made:
            transport.close()
    assert default_destination("acme") == "trailseal.events.acme"
    with pytest.raises(ConfigurationError, match="amqp://"):
        broker_transport("http://h/", tenant="acme")
    with pytest.raises(ConfigurationError, match="--queue"):
        broker_transport("nats://h", tenant="acme", queue="q")
    with pytest.raises(ConfigurationError, match="--subject"):
        broker_transport("amqp://h", tenant="acme", subject="s")


def test_a_broker_that_cannot_be_started_fails_the_tests():
    port = free_port()
    with pytest.raises(pytest.fail.Exception, match=f"127.0.0.1:{port} did not answer"):
        ensure_running({"Nothing": (port, ["true"])}, wait=0.5)
    with pytest.raises(pytest.fail.Exception, match="could not start it"):
        ensure_running({"Nothing": (port, ["/nonexistent/broker-server"])}, wait=0.5)


def test_subject_patterns_and_redaction():
    assert subject_matches("trailseal.events.>", "trailseal.events.acme")
    assert subject_matches("trailseal.*.acme", "trailseal.events.acme")
    assert not subject_matches("trailseal.events.>", "trailseal.events")
    assert not subject_matches("trailseal.events.*", "trailseal.events.acme.x")
    assert not subject_matches("trailseal.events.acme", "trailseal.events.acme2")
    assert redact("amqp://guest:guest@h:5672/v") == "amqp://guest:***@h:5672/v"
    assert redact("nats://h:4222") == "nats://h:4222"
