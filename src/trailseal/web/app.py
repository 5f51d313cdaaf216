"""The application factory."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from trailseal import __version__, ingest
from trailseal.alerts import HealthReader
from trailseal.model import EventV1
from trailseal.reading.tree import TileCache
from trailseal.runtime import build_archiver, build_sequencer, build_warm
from trailseal.sequencer import SequencerThread
from trailseal.settings import Settings
from trailseal.store import create_pool
from trailseal.store.migrate import available
from trailseal.web import events, export, health, log, metrics, sources, stream, targets, ui
from trailseal.web.auth import KnownKeys
from trailseal.web.logs import RequestIdMiddleware
from trailseal.web.meta import MetaAudit, MetaAuditMiddleware
from trailseal.web.problems import HANDLERS
from trailseal.web.timing import ServerTimingMiddleware


def create_app(
    settings: Settings,
    database_url: str,
    cursor_key: bytes,
    *,
    clock: Callable[[], datetime] = ingest.now,
) -> FastAPI:
    """The API over ``database_url``; with ``settings.run_sequencer`` it also runs the
    sequencer, on a thread of its own. ``clock`` tells the meta-audit which minute a log
    read falls in (see ``trailseal.web.meta``)."""
    meta_audit = MetaAudit(clock)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = create_pool(
            database_url, min_size=settings.pool_min_size, max_size=settings.pool_max_size
        )
        await pool.open(wait=True)
        app.state.pool = pool
        app.state.metrics.open(HealthReader(pool, settings.metrics_cache_seconds), app.state)
        stop = asyncio.Event()
        sequencing = None
        if settings.run_sequencer:  # on a thread of its own: see SequencerThread
            sequencing = SequencerThread(
                lambda: create_pool(database_url, min_size=1, max_size=2),
                lambda own_pool: build_sequencer(own_pool, settings),
            )
            app.state.sequencer = await sequencing.start()
        archiver_task = None
        if settings.run_archiver:
            archiver_task = asyncio.create_task(build_archiver(settings).run(
                pool.connection, stop, settings.archiver_idle_seconds))
        meta_audit.open(pool)
        meta_stop = asyncio.Event()
        meta_task = asyncio.create_task(meta_audit.run(meta_stop))
        try:
            yield
        finally:
            meta_stop.set()
            await meta_task  # the last minute's log-read tallies, while the pool is open
            stop.set()
            if sequencing is not None:
                await sequencing.stop()
            if archiver_task is not None:
                await archiver_task
            await pool.close()

    app = FastAPI(
        title="trailseal",
        version=__version__,
        summary="Tamper-evident audit log",
        lifespan=lifespan,
        exception_handlers=HANDLERS,  # type: ignore[arg-type]
    )
    app.state.settings = settings
    app.state.cursor_key = cursor_key
    app.state.warm = build_warm(settings)  # events that left PostgreSQL, read from segments
    app.state.sequencer = None
    app.state.schema_version = len(available())
    app.state.meta_audit = meta_audit
    app.state.tile_cache = TileCache()  # full tiles never change: kept per process
    app.state.known_keys = KnownKeys()  # reads' keys, to send a read with its key's lookup
    app.state.metrics = metrics.Metrics(settings)
    app.add_middleware(MetaAuditMiddleware, recorder=meta_audit)
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(ServerTimingMiddleware)  # outermost: the whole time to the answer
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(events.router)
    app.include_router(log.router)
    app.include_router(sources.router)
    app.include_router(export.router)
    app.include_router(stream.router)
    app.include_router(targets.router)
    app.include_router(ui.router)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, summary=app.summary, routes=app.routes
            )
            event_schema = EventV1.model_json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(event_schema.pop("$defs", {}))
            components["EventV1"] = event_schema
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
