"""Through a broker: the relay publishes the outbox to RabbitMQ or NATS JetStream and
`trailseal consume` writes it to the inbox. SIGKILL the consumer and the relay, break the
network to the broker, kill the broker itself after publishing: every committed event
reaches the log exactly once."""

from __future__ import annotations

import random
import secrets
import subprocess
import time

import psycopg
import pytest

from tests.brokers.conftest import SERVICES
from tests.brokers.support import AMQP_URL, NATS_URL, ensure_running
from tests.faults.harness import Cluster, check, kill, rounds, settle
from tests.faults.proxy import FaultyProxy

PRODUCERS = 2


@pytest.fixture
def cluster(tmp_path):
    ensure_running(SERVICES, 90)
    made = Cluster(tmp_path)
    made.app_database()
    yield made
    made.stop()


def _stop_producers(cluster: Cluster) -> None:
    for proc in list(cluster.processes):
        if proc.poll() is None and "outbox_producer" in " ".join(map(str, proc.args)):
            kill(proc)


def _wait_landed(cluster: Cluster, consumer: subprocess.Popen[bytes]) -> None:
    """Wait until the outbox is relayed and the consumer wrote every committed event."""
    deadline = time.monotonic() + 120
    while True:
        with psycopg.connect(cluster.app_dsn) as conn:
            left = conn.execute("SELECT count(*) FROM public.trailseal_outbox").fetchone()
        with psycopg.connect(cluster.url) as conn:
            landed = conn.execute("SELECT count(*) FROM trailseal.event_ids").fetchone()
        if left == (0,) and landed and landed[0] >= _published_count(cluster):
            return
        assert consumer.poll() is None, "the consumer exited"
        assert time.monotonic() < deadline, (
            f"the pipeline did not drain: outbox {left}, landed {landed}, "
            f"committed {_published_count(cluster)}")
        time.sleep(0.2)


def _assert_clean(cluster: Cluster) -> None:
    settle(cluster)
    counts = check(cluster)
    assert counts.acknowledged > 0
    assert counts.lost == 0 and counts.duplicated == 0, counts
    assert counts.unexpected <= PRODUCERS, counts
    assert counts.verified, counts


def _published_count(cluster: Cluster) -> int:
    acked = 0
    for path in cluster.root.glob("acked-*"):
        acked += sum(1 for line in path.read_text().splitlines() if len(line) == 36)
    return acked


@pytest.mark.parametrize("broker", [AMQP_URL, NATS_URL], ids=["rabbitmq", "nats"])
def test_consumer_and_relay_sigkill_and_a_faulty_network(cluster, broker):
    rng = random.Random(secrets.randbits(32))
    queue = f"trailseal.events.faults-{secrets.token_hex(4)}"
    host, port = broker.split("@")[-1].split("//")[-1].rstrip("/").split(":")
    proxy = FaultyProxy((host, int(port)))
    via_proxy = broker.replace(f"{host}:{port}", f"127.0.0.1:{proxy.port}")
    cluster.start_api()
    cluster.start_sequencer()
    for name in range(PRODUCERS):
        cluster.start_outbox_producer(str(name))
    cluster.wait_acknowledged()
    relay = cluster.start_broker_relay(via_proxy, queue)
    consumer = cluster.start_consumer(broker, queue)
    try:
        for turn in range(rounds(32)):  # 26 consumer kills and 6 relay kills
            time.sleep(rng.uniform(0.05, 0.3))  # only picks the moment of the next fault
            if turn % 5 == 4:
                kill(relay)
                relay = cluster.start_broker_relay(via_proxy, queue)
            else:
                kill(consumer)
                consumer = cluster.start_consumer(broker, queue)
            fault = rng.choice(["drop", "half-close", "none"])
            if fault == "drop":
                proxy.drop()
            elif fault == "half-close":
                proxy.half_close()
        _stop_producers(cluster)
        _wait_landed(cluster, consumer)
    finally:
        proxy.close()
    for proc in list(cluster.processes):
        if proc.poll() is None:
            kill(proc)
    _assert_clean(cluster)


def test_nats_killed_after_publish(cluster):
    """JetStream stores to disk before it acks: messages published (and confirmed) before
    the server is SIGKILLed are there after it restarts."""
    rng = random.Random(secrets.randbits(32))
    subject = f"trailseal.events.faults-{secrets.token_hex(4)}"
    cluster.start_api()
    cluster.start_sequencer()
    for name in range(PRODUCERS):
        cluster.start_outbox_producer(str(name))
    cluster.wait_acknowledged()
    relay = cluster.start_broker_relay(NATS_URL, subject)
    for _ in range(rounds(2)):
        time.sleep(rng.uniform(0.5, 1.5))
        subprocess.run(["pkill", "-KILL", "-x", "nats-server"], check=False)
        time.sleep(0.3)
        ensure_running({"NATS": SERVICES["NATS"]}, 30)
    _stop_producers(cluster)
    kill(relay)
    relay = cluster.start_broker_relay(NATS_URL, subject)
    consumer = cluster.start_consumer(NATS_URL, subject)
    _wait_landed(cluster, consumer)
    kill(relay)
    kill(consumer)
    _assert_clean(cluster)
