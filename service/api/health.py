"""Liveness, readiness (broker, store, models), Prometheus metrics and the status page's data."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.api.deps import core
from service.api.explorer import notable
from service.api.schemas import Live, Ready, ServiceStatus

router = APIRouter(tags=["health"])


@router.get("/livez", summary="The process is up", response_model=Live)
async def livez() -> dict:
    return {"status": "ok"}


def _broker_check(bootstrap: str, security) -> dict:
    """The cluster answers us (the error names the cause, never a secret)."""
    from streaming.kafka import connect_admin

    try:
        meta = connect_admin(bootstrap, security, timeout_s=3).list_topics(timeout=3)
        return {"ok": bool(meta.brokers), "detail": f"{len(meta.brokers)} broker(s) at {bootstrap} "
                                                    f"({security.describe()})"}
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        return {"ok": False, "detail": str(exc)}


def _worker_check(state) -> dict:
    alive = state.worker_thread.is_alive()
    if not alive:
        return {"ok": False, "detail": state.worker_error or "stopped"}
    stalled = state.worker.stalled_seconds()
    if stalled:
        return {"ok": False, "detail": f"stalled: one batch retried for {stalled:.0f} s "
                                       f"({state.worker.retry_reason})", "stalled_s": round(stalled, 1)}
    return {"ok": True, "detail": "running"}


@router.get("/readyz", summary="Ready to serve: store answers, models loaded; with a worker: broker "
                               "reachable, worker running and not stalled",
            response_model=Ready,
            responses={503: {"model": Ready, "description": "not ready: the checks say why"}})
def readyz(request: Request) -> JSONResponse:
    state = core(request)
    checks = {}
    settings = state.settings
    # `serve` (API only) never uses Kafka: its readiness does not ask
    if state.worker is not None or state.worker_error is not None:
        checks["broker"] = _broker_check(state.bootstrap, settings.input_security())
        output = settings.output_bootstrap(state.bootstrap)
        if output != state.bootstrap:
            checks["output_broker"] = _broker_check(output, settings.output_security())
    if state.worker is None and state.worker_error:  # it could not start (e.g. refused credentials)
        checks["worker"] = {"ok": False, "detail": state.worker_error}
    try:
        state.store.ping()
        checks["store"] = {"ok": True, "detail": state.settings.store_location.split("@")[-1]}
    except Exception as exc:  # noqa: BLE001
        checks["store"] = {"ok": False, "detail": str(exc)}
    checks["models"] = {"ok": bool(state.registry.models), "detail": sorted(state.registry.models)}
    if state.worker_thread is not None:
        checks["worker"] = _worker_check(state)
    ok = all(c["ok"] for c in checks.values())
    return JSONResponse({"status": "ready" if ok else "not ready", "checks": checks},
                        status_code=200 if ok else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    return Response(generate_latest(core(request).metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/status", summary="Figures for the status page", response_model=ServiceStatus)
def status(request: Request) -> dict:
    state = core(request)
    summary = state.metrics.summary()
    worker = state.worker
    summary["lag"] = {str(p): n for p, n in summary["lag"].items()}
    return {**summary, "uptime_s": round(time.time() - state.started, 1),
            "consuming": worker is not None, "stored": state.store.count(),
            "stalled_s": round(worker.stalled_seconds(), 1) if worker else 0.0,
            "stall_reason": worker.retry_reason if worker and worker.stalled_seconds() else None,
            "notable": notable(state.store),
            "models": [{"name": m.name, "version": m.version, "rows_scored": m.rows_scored,
                        "latency_ms": m.latency_ms()} for m in state.registry.models.values()]}
