"""``/metrics`` in the Prometheus text format, and the alerts on ``/readyz``.

Counters of this process (events ingested, exports, witness and meta-audit failures,
events sequenced here) are kept in memory; the state of the logs (inbox depth and age,
sequencer lag, checkpoint age, archive backlog, alerts) is read from PostgreSQL when
scraped, through :class:`trailseal.alerts.HealthReader`'s short cache.

Tenant names are not published unless ``TRAILSEAL_METRICS_TENANT_LABELS`` is set: without
it every gauge is one total (a sum, or the worst value) over all tenants, so an open
``/metrics`` tells a stranger how busy the service is but not whose logs it keeps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from trailseal.alerts import (
    CONDITIONS,
    Health,
    HealthReader,
    TenantHealth,
    Thresholds,
    alerts,
)
from trailseal.settings import Settings

router = APIRouter(tags=["operations"])


class Metrics:
    """The registry of one app, its in-process counters, and the scrape-time gauges."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = CollectorRegistry(auto_describe=True)
        self.ingested = Counter("trailseal_events_ingested", "Events accepted into the inbox",
                                registry=self.registry)
        self.exports = Counter("trailseal_exports", "Exports started, by format",
                               ["format"], registry=self.registry)
        self.thresholds = Thresholds(settings.alert_inbox_age_seconds,
                                     settings.alert_checkpoint_age_seconds)
        self.reader: HealthReader | None = None
        self.state: Any = None  # the app's state: its sequencer and meta-audit
        self._snapshot: _Snapshot | None = None
        self.registry.register(_Scrape(self))

    def open(self, reader: HealthReader, state: Any) -> None:
        self.reader = reader
        self.state = state

    def witness_failing(self) -> bool:
        sequencer = getattr(self.state, "sequencer", None)
        return bool(sequencer and sequencer.witness and sequencer.witness.failing)

    def alerts(self, health: Health) -> dict[str, list[str]]:
        return alerts(health, self.thresholds, witness_failing=self.witness_failing())

    async def render(self) -> bytes:
        health = await self.reader.get() if self.reader else None
        self._snapshot = _Snapshot(health)
        try:
            return generate_latest(self.registry)
        finally:
            self._snapshot = None


class _Snapshot:
    def __init__(self, health: Health | None) -> None:
        self.health = health


class _Scrape(Collector):
    """Yields the gauges of the reading taken for this scrape, and the counters of the
    sequencer, witness and meta-audit running in this process."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        state = m.state
        sequencer = getattr(state, "sequencer", None)
        meta = getattr(state, "meta_audit", None)
        yield _counter("trailseal_events_sequenced", "Events sequenced by this process",
                       sequencer.sequenced if sequencer else 0)
        witness = sequencer.witness if sequencer else None
        yield _counter("trailseal_witness_failures",
                       "Checkpoints this process could not hand to the witness",
                       witness.failures if witness else 0)
        yield _counter("trailseal_meta_audit_failures",
                       "Reads whose meta-audit event could not be written",
                       meta.failures if meta else 0)
        snapshot = m._snapshot
        if snapshot is None or snapshot.health is None:
            return
        yield from _gauges(snapshot.health, m.settings.metrics_tenant_labels)
        fired = m.alerts(snapshot.health)
        alert = GaugeMetricFamily("trailseal_alert", "1 while the condition holds",
                                  labels=["condition"])
        for name in CONDITIONS:
            alert.add_metric([name], 1.0 if fired[name] else 0.0)
        yield alert


def _sum(values: list[float]) -> float:
    return float(sum(values))


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _gauges(health: Health, per_tenant: bool) -> Iterator[Metric]:
    now = health.at
    rows: list[tuple[str, str, Callable[[list[float]], float],
                     Callable[[TenantHealth], float]]] = [
        ("trailseal_inbox_events", "Events accepted and not yet sequenced", _sum,
         lambda t: t.inbox_depth),
        ("trailseal_inbox_age_seconds", "How long the oldest waiting event has waited", max,
         lambda t: t.inbox_age(now)),
        ("trailseal_sequencer_lag_seconds",
         "How far the log is behind ingest: the wait of the oldest unsequenced event", max,
         lambda t: t.inbox_age(now)),
        ("trailseal_log_events", "Events in the log", _sum, lambda t: t.log_size or 0),
        ("trailseal_checkpoint_age_seconds", "Seconds since the newest checkpoint", max,
         lambda t: t.checkpoint_age(now) or 0.0),
        ("trailseal_archive_backlog_events", "Events in the log not yet sealed in a segment",
         _sum, lambda t: t.archive_backlog),
        ("trailseal_verify_failed", "1 if the newest verify run found the log altered", max,
         lambda t: 1.0 if t.verified_ok is False else 0.0),
    ]
    yield GaugeMetricFamily("trailseal_tenants", "Tenants", value=len(health.tenants))
    for name, doc, total, value in rows:
        if per_tenant:
            family = GaugeMetricFamily(name, doc, labels=["tenant"])
            for t in health.tenants:
                family.add_metric([t.tenant], float(value(t)))
        else:
            values = [float(value(t)) for t in health.tenants]
            family = GaugeMetricFamily(name, doc, value=total(values) if values else 0.0)
        yield family


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """The service's metrics in the Prometheus text format (see docs/operations.md)."""
    body = await request.app.state.metrics.render()
    return Response(body, media_type=CONTENT_TYPE_LATEST)
