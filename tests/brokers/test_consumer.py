"""The consumer moves published events into the inbox of its key's tenant, where the
running service's sequencer gives them their seq; it acks only after the commit."""

from __future__ import annotations

import asyncio
import logging

import httpx
import psycopg
import pytest

from tests.brokers.support import (
    Broker,
    ConsumerThread,
    encoded,
    landed,
    sequenced_ids,
    wait_until,
)
from tests.support import Tenant, an_event
from trailseal.pipeline.brokers import BROKER_ERRORS
from trailseal.pipeline.consumer import ConsumeStats, consume
from trailseal.store import create_pool


def _all_readable(client: httpx.Client, tenant: Tenant, ids: list[str]) -> None:
    for event_id in ids:
        answer = client.get(f"/v1/events/{event_id}", headers=tenant.auth("read"))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["tenant"] == tenant.name and body["seq"] >= 0


def test_published_events_land_in_the_tokens_tenant_and_get_sequenced(
    broker: Broker, tenant: Tenant, database_url: str, client: httpx.Client
):
    events = [an_event() for _ in range(120)]
    ids = [str(e["id"]) for e in events]
    broker.publish(encoded(events))
    with ConsumerThread(broker, database_url, batch_size=50) as consumer:
        wait_until(lambda: len(sequenced_ids(database_url, tenant.name)) == 120,
                   what="120 sequenced events")
        stats = consumer.stop()
    assert sorted(sequenced_ids(database_url, tenant.name)) == sorted(ids)
    _all_readable(client, tenant, ids)
    assert (stats.messages, stats.written, stats.duplicates, stats.dead) == (120, 120, 0, 0)
    assert stats.batches >= 3  # at most 50 per batch
    wait_until(lambda: broker.waiting() == 0, what="every message settled")


def test_republished_events_land_once(
    broker: Broker, tenant: Tenant, database_url: str, client: httpx.Client
):
    events = [an_event() for _ in range(30)]
    payloads = encoded(events)
    broker.publish(payloads)
    # The same events again under new message ids, past any broker-side dedupe.
    broker.publish_raw(payloads)
    with ConsumerThread(broker, database_url) as consumer:
        wait_until(lambda: consumer.stats.messages == 60, what="60 messages taken")
        wait_until(lambda: len(sequenced_ids(database_url, tenant.name)) == 30,
                   what="30 sequenced events")
        stats = consumer.stop()
    assert sorted(sequenced_ids(database_url, tenant.name)) == sorted(str(e["id"]) for e in events)
    assert (stats.written, stats.duplicates) == (30, 30)
    _all_readable(client, tenant, [str(e["id"]) for e in events[:3]])
    wait_until(lambda: broker.waiting() == 0, what="every message settled")


def test_an_invalid_message_is_set_aside_and_its_batch_still_lands(
    broker: Broker, tenant: Tenant, database_url: str, caplog: pytest.LogCaptureFixture
):
    good = [an_event(), an_event()]
    bad_action = an_event(action="Not An Action")
    bodies = [encoded(good)[0], b"{not json", encoded([bad_action])[0], encoded(good)[1]]
    broker.publish_raw(bodies)
    caplog.set_level(logging.ERROR, logger="trailseal.pipeline")
    with ConsumerThread(broker, database_url, max_delay=1.0) as consumer:
        wait_until(lambda: consumer.stats.dead == 2 and consumer.stats.written == 2,
                   what="two written, two dead")
        stats = consumer.stop()
    assert stats.batches == 1  # all four arrived together
    assert landed(database_url, tenant.name) == 2
    wait_until(lambda: len(sequenced_ids(database_url, tenant.name)) == 2)
    assert sorted(sequenced_ids(database_url, tenant.name)) == sorted(str(e["id"]) for e in good)
    wait_until(lambda: broker.waiting() == 0, what="every message settled")
    if broker.kind == "amqp":
        assert sorted(broker.dead_letters()) == sorted([bodies[1], bodies[2]])
    dead_lines = [r.getMessage() for r in caplog.records if "not a valid event" in r.getMessage()]
    assert len(dead_lines) == 2
    assert any("action" in line for line in dead_lines)
    assert any("not valid JSON" in line for line in dead_lines)
    # Set aside for good: a new consumer finds nothing to redeliver.
    with ConsumerThread(broker, database_url) as again:
        pass
    assert again.stats.messages == 0


def test_a_database_outage_acks_nothing_and_a_stop_hands_the_batch_back(
    broker: Broker, tenant: Tenant, database_url: str
):
    events = [an_event() for _ in range(40)]
    broker.publish(encoded(events))
    absent = psycopg.conninfo.make_conninfo(database_url, dbname="trailseal_no_such_db")
    with ConsumerThread(broker, absent, pool_timeout=0.3) as failing:
        wait_until(lambda: failing.stats.retries >= 2, what="two failed writes")
        stats = failing.stop()
    assert (stats.written, stats.batches) == (0, 0)
    assert "database" in stats.last_error
    assert landed(database_url, tenant.name) == 0
    # Handed back at the stop, not acked: a consumer with a database takes them all.
    wait_until(lambda: broker.waiting() == 40, what="40 messages back in the queue")
    with ConsumerThread(broker, database_url) as consumer:
        wait_until(lambda: landed(database_url, tenant.name) == 40, what="40 events")
        stats = consumer.stop()
    assert stats.written == 40
    wait_until(lambda: broker.waiting() == 0, what="every message settled")


@pytest.mark.parametrize("url", ["amqp://guest:guest@127.0.0.1:1/", "nats://127.0.0.1:1"])
def test_an_unreachable_broker_at_the_start_is_an_error(url: str, database_url: str):
    async def go() -> ConsumeStats:
        pool = create_pool(database_url, min_size=1, max_size=1)
        await pool.open()
        try:
            return await consume(url, pool, "nobody", stop=asyncio.Event())
        finally:
            await pool.close()

    with pytest.raises(BROKER_ERRORS):
        asyncio.run(go())
