"""Liveness, readiness (broker, store, models), Prometheus metrics and the status page's data."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.api.deps import core

router = APIRouter(tags=["health"])


@router.get("/livez", summary="The process is up")
def livez() -> dict:
    return {"status": "ok"}


def _broker_check(bootstrap: str | None) -> dict:
    if not bootstrap:
        return {"ok": True, "detail": "no broker configured (API only)"}
    from confluent_kafka.admin import AdminClient

    try:
        meta = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=3)
        return {"ok": bool(meta.brokers), "detail": f"{len(meta.brokers)} broker(s) at {bootstrap}"}
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        return {"ok": False, "detail": f"{bootstrap}: {exc}"}


@router.get("/readyz", summary="Ready to serve: broker reachable, store answers, models loaded")
def readyz(request: Request) -> JSONResponse:
    state = core(request)
    checks = {"broker": _broker_check(state.bootstrap)}
    try:
        state.store.ping()
        checks["store"] = {"ok": True, "detail": state.settings.store_location.split("@")[-1]}
    except Exception as exc:  # noqa: BLE001
        checks["store"] = {"ok": False, "detail": str(exc)}
    checks["models"] = {"ok": bool(state.registry.models), "detail": sorted(state.registry.models)}
    if state.worker_thread is not None:
        alive = state.worker_thread.is_alive()
        checks["worker"] = {"ok": alive, "detail": state.worker_error or ("running" if alive else "stopped")}
    ok = all(c["ok"] for c in checks.values())
    return JSONResponse({"status": "ready" if ok else "not ready", "checks": checks},
                        status_code=200 if ok else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    return Response(generate_latest(core(request).metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/status", summary="Figures for the status page")
def status(request: Request) -> dict:
    state = core(request)
    summary = state.metrics.summary()
    return {**summary, "uptime_s": round(time.time() - state.started, 1),
            "consuming": state.worker is not None, "stored": state.store.count(),
            "models": [{"name": m.name, "version": m.version, "rows_scored": m.rows_scored,
                        "latency_ms": m.latency_ms()} for m in state.registry.models.values()]}
