"""The machine's RabbitMQ (127.0.0.1:5672) and NATS with JetStream (127.0.0.1:4222),
started with the machine's own commands when they are not running. A broker that still
cannot be reached fails every test here: these tests never skip."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.brokers.support import AMQP_URL, NATS_URL, Broker, ensure_running
from tests.support import Tenant

START_WAIT = 90.0  # RabbitMQ takes a while to boot

SERVICES = {
    "RabbitMQ": (5672, ["rabbitmq-server", "-detached"]),
    "NATS": (
        4222,
        [
            "start-stop-daemon", "--start", "--oknodo", "--background",
            "--exec", "/usr/sbin/nats-server", "--",
            "-a", "127.0.0.1", "-p", "4222", "-js",
            "-sd", "/var/lib/nats-server", "-l", "/var/log/nats-server.log",
        ],
    ),
}


@pytest.fixture(scope="session", autouse=True)
def brokers() -> None:
    """Both brokers, answering their own protocol."""
    ensure_running(SERVICES, START_WAIT)


@pytest.fixture(params=["amqp", "nats"])
def broker(request: pytest.FixtureRequest, tenant: Tenant) -> Iterator[Broker]:
    """The tenant's default queue (RabbitMQ) or subject (JetStream), emptied and removed
    after the test."""
    place = Broker(AMQP_URL if request.param == "amqp" else NATS_URL, tenant.name)
    yield place
    place.remove()


@pytest.fixture
def amqp_broker(tenant: Tenant) -> Iterator[Broker]:
    """The tenant's default queue on RabbitMQ, removed after the test."""
    place = Broker(AMQP_URL, tenant.name)
    yield place
    place.remove()


@pytest.fixture
def nats_broker(tenant: Tenant) -> Iterator[Broker]:
    """The tenant's default subject on JetStream, emptied after the test."""
    place = Broker(NATS_URL, tenant.name)
    yield place
    place.remove()
