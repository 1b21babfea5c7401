"""``create_app(settings)``: the FastAPI service. The lifespan builds the adapters once per process.

Routers: jobs, schedules, health, plus (when installed) exports, search and the review page, which
plug in through ``OPTIONAL_ROUTERS``. OpenAPI at ``/openapi.json``, docs at ``/docs``.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi

from scheduler.api import errors
from scheduler.api.feed import FeedCollector, JobFeed, feed_events, listen_redis
from scheduler.api.guards import RequestGuard
from scheduler.api.models import JobCreate
from scheduler.api.routes import health, job_events, job_submit, jobs, schedules
from scheduler.enqueue import CeleryEnqueuer, Enqueuer, InlineEnqueuer
from scheduler.metrics import build_registry, http_labels
from scheduler.ops_metrics import OpsCollector
from scheduler.schedules import ScheduleMirror, configure_redbeat
from worker.adapters.queue.changes import CHANNEL
from worker.adapters.stores.schedules import ScheduleStore
from worker.adapters.stores.sql import SqlResultStore
from worker.bootstrap import service_ports
from worker.config import Settings, get_settings

log = logging.getLogger(__name__)

OPTIONAL_ROUTERS = (
    "scheduler.api.routes.exports",
    "scheduler.api.routes.search",
    "scheduler.web.routes",
    "scheduler.api.routes.ask",
    "scheduler.api.routes.streams",
    "scheduler.api.routes.internal",
)


def include_optional_routers(app: FastAPI) -> list[str]:
    """Include the routers other modules provide, when they are installed."""
    found = []
    for name in OPTIONAL_ROUTERS:
        try:
            if importlib.util.find_spec(name) is None:
                continue
        except ModuleNotFoundError:
            continue
        module = importlib.import_module(name)
        app.include_router(module.router)
        found.append(name)
    return found


def _openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """The generated schema plus ``JobCreate`` (POST /v1/jobs reads its body by hand to stream uploads)."""

    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        schema = JobCreate.model_json_schema(ref_template="#/components/schemas/{model}")
        comps = spec.setdefault("components", {}).setdefault("schemas", {})
        comps.update(schema.pop("$defs", {}))
        comps["JobCreate"] = schema
        app.openapi_schema = spec
        return spec

    return build


def create_app(
    settings: Settings | None = None,
    *,
    enqueuer: Enqueuer | None = None,
    mirror: ScheduleMirror | None = None,
    inline: bool = False,
    beat_interval_s: float = 5.0,
) -> FastAPI:
    """The service. Without ``enqueuer``, jobs go to Celery over ``settings.broker_url`` (or run in this
    process with ``inline=True``); schedules are mirrored into RedBeat on the same Redis."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = SqlResultStore(settings.resolved_database_url)
        feed = JobFeed(store, settings.security.event_fallback_poll_s)  # the event streams' change feed
        ports = service_ports(settings, store, enqueuer=enqueuer, inline=inline, on_event=feed_events(feed))
        queue = ports.queue()
        if not isinstance(queue, InlineEnqueuer):  # workers elsewhere announce row changes on the broker's Redis
            feed.listen_with(functools.partial(listen_redis, settings.broker_url, CHANNEL))
        beat_mirror = mirror
        if beat_mirror is None and isinstance(queue, CeleryEnqueuer):
            configure_redbeat(queue.app, settings, max_interval_s=beat_interval_s)
            beat_mirror = ScheduleMirror(queue.app)
        sched_store = ScheduleStore(store.engine)
        if beat_mirror is not None:
            try:
                beat_mirror.sync(sched_store.page(limit=1_000_000))
            except Exception as exc:  # Redis down at start: the API still serves; beat syncs on its start
                log.warning("cannot sync schedules into Redis at start: %s", exc)
        registry, http = build_registry(store, queue.queue_depth)
        registry.register(FeedCollector(feed))
        registry.register(OpsCollector(store, settings))  # stuck jobs, errors, spend, heartbeats (ops/)
        app.state.settings = settings
        app.state.store = store
        app.state.schedules = sched_store
        app.state.enqueuer = queue
        app.state.ports = ports
        app.state.feed = feed
        app.state.mirror = beat_mirror
        app.state.registry = registry
        app.state.http_latency = http
        try:
            yield
        finally:
            await feed.close()
            if enqueuer is None:
                queue.close()
            store.close()

    app = FastAPI(
        title="framescribe",
        version="1",
        description="Turn video into timed descriptions: jobs, schedules, webhooks. Errors are "
        '{"error": {"code", "message", "field"}}. Auth: Authorization: Bearer <key>.',
        lifespan=lifespan,
    )
    errors.install(app)
    app.add_middleware(RequestGuard, settings=settings)

    @app.middleware("http")
    async def observe(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        hist = getattr(request.app.state, "http_latency", None)
        if hist is not None:
            labels = http_labels(request.method, request.scope.get("route"), response.status_code)
            hist.labels(*labels).observe(time.perf_counter() - started)
        return response

    app.include_router(health.router)
    app.include_router(job_submit.router)
    app.include_router(jobs.router)
    app.include_router(job_events.router)
    app.include_router(schedules.router)
    include_optional_routers(app)
    app.openapi = _openapi(app)  # type: ignore[method-assign]
    return app
