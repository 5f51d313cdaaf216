"""The SDK's own figures for the embedding application's Prometheus ``/metrics``.

The service cannot see a producer's spool: an event waiting there has not reached it. So
an application that embeds the SDK exports them itself::

    from trailseal.client.metrics import register
    register(client)  # into prometheus_client's default registry

``trailseal_sdk_spool_depth`` (events recorded, not yet delivered) is the one to alert on:
it grows while the service cannot take events, and falls back to 0 once they are in.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from trailseal.client.sender import Stats

COUNTERS = ("recorded", "spooled", "spool_errors", "invalid", "in_memory", "dropped",
            "sent", "duplicates", "dead", "retries")


class _Client(Protocol):
    stats: Stats

    def pending(self) -> int: ...


class SdkCollector(Collector):
    """Reads one client's spool depth and counters at each scrape."""

    def __init__(self, client: _Client) -> None:
        self.client = client

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        yield GaugeMetricFamily("trailseal_sdk_spool_depth",
                                "Events recorded by this process, not yet delivered",
                                value=self.client.pending())
        for name in COUNTERS:
            yield CounterMetricFamily(f"trailseal_sdk_{name}",
                                      f"SDK events {name.replace('_', ' ')}",
                                      value=getattr(self.client.stats, name))


def register(client: _Client, registry: CollectorRegistry = REGISTRY) -> SdkCollector:
    """Export ``client``'s figures in ``registry``; returns the collector (to unregister)."""
    collector = SdkCollector(client)
    registry.register(collector)
    return collector
