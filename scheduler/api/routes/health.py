"""``/healthz`` (process up), ``/readyz`` (store, broker, a worker answering), ``/metrics`` (Prometheus)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from scheduler.api.deps import EnqueuerDep, ReadAccess, StoreDep
from scheduler.api.readiness import Readiness
from scheduler.enqueue import Enqueuer
from worker.adapters.stores.sql import SqlResultStore

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up (no key needed)")
async def healthz() -> dict[str, str]:  # async: answers even when every worker thread is busy
    return {"status": "ok"}


def _checks(store: SqlResultStore, enqueuer: Enqueuer) -> dict[str, Any]:
    try:
        store_ok = store.ping()
    except Exception:  # any database failure means "not ready"
        store_ok = False
    broker_ok = enqueuer.broker_ok()
    workers = enqueuer.workers(timeout_s=1.0) if broker_ok else 0
    return {"store": store_ok, "broker": broker_ok, "workers": workers}


@router.get(
    "/readyz",
    summary="Ready: the store answers, the broker answers, at least one worker answers a ping (no key needed)",
    responses={503: {"description": "not ready; the body says which check failed"}},
)
async def readyz(request: Request, store: StoreDep, enqueuer: EnqueuerDep) -> JSONResponse:
    probe = getattr(request.app.state, "readiness", None)
    if probe is None:
        security = request.app.state.settings.security
        probe = request.app.state.readiness = Readiness(security.readiness_cache_s, security.readiness_timeout_s)
    checks = await probe.checks(lambda: _checks(store, enqueuer))
    ready = checks.get("store") and checks.get("broker") and checks.get("workers", 0) > 0
    body = {"status": "ready" if ready else "not ready", "checks": checks}
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics (needs a read key when keys are configured)",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
async def metrics(request: Request, _: ReadAccess) -> Response:
    data = await run_in_threadpool(generate_latest, request.app.state.registry)
    return Response(data, media_type=CONTENT_TYPE_LATEST)
