"""The FastAPI app factory. One app serves the HTTP API; with `consume=True` its lifespan also runs
the streaming worker in a background thread (`alert-classifier run`).

Handlers are thin: parse, call the pipeline or the store, encode. Errors share one JSON shape:
{"error": {"status", "reason", "message", "field"}}.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from models.errors import AlertClassifierError
from models.registry import Registry
from service.metrics import Metrics
from service.runtime import compile_kernels, make_decoder, make_worker, package_version, settle
from service.settings import Settings
from service.store import Store
from streaming.consumer import Worker
from streaming.decode import Decoder
from streaming.kafka import broker

STATIC = Path(__file__).with_name("static")
log = logging.getLogger("alert_classifier.api")
GIL_SWITCH_INTERVAL_S = 0.0005


@dataclass
class AppState:
    settings: Settings
    registry: Registry
    store: Store
    decoder: Decoder
    metrics: Metrics
    started: float = field(default_factory=time.time)
    bootstrap: str | None = None
    worker: Worker | None = None
    worker_thread: threading.Thread | None = None
    worker_error: str | None = None
    # classify requests in progress, off the event loop; bounded (settings.max_concurrent_classify)
    classify_slots: threading.BoundedSemaphore | None = None


def error_body(status: int, reason: str, message: str, field_name: str | None = None) -> dict:
    return {"error": {"status": status, "reason": reason, "message": message, "field": field_name}}


def create_app(settings: Settings | None = None, *, consume: bool = False,
               registry: Registry | None = None, store: Store | None = None,
               before_stop: Callable[[], None] | None = None) -> FastAPI:
    """before_stop: called first on shutdown (`run` stops its simulated feed there, so that the
    worker finishes its last batch without competing with it)."""
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The event loop needs the GIL a dozen times per request; with a CPU-bound thread beside it
        # (classify work, the worker in `run`) each wait lasts up to the switch interval: 5 ms by
        # default, ~70 ms per probe in all. 0.5 ms keeps probes fast at no measurable cost to the work.
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        state = AppState(settings, registry or Registry(extra=settings.retrained_models_dir),
                         store or Store(settings.store_location), make_decoder(settings), Metrics(),
                         classify_slots=threading.BoundedSemaphore(settings.max_concurrent_classify))
        for name, model in state.registry.models.items():
            model.on_inference = _inference_observer(state.metrics, name)
        app.state.core = state
        compile_kernels()
        settle()  # a full collection during a request would otherwise walk all of start-up (~tens of ms)
        with contextlib.ExitStack() as stack:
            if consume:
                state.bootstrap = stack.enter_context(broker(
                    settings.kafka_bootstrap_servers, settings.kafka_cache_dir, settings.kafka_partitions))
                _start_worker(state)
            else:
                state.bootstrap = settings.kafka_bootstrap_servers
            try:
                yield
            finally:
                if before_stop is not None:
                    before_stop()
                if state.worker is not None:
                    state.worker.stop()
                    state.worker_thread.join(60)
                state.store.close()

    app = FastAPI(title="alert-classifier", version=package_version(), lifespan=lifespan,
                  description="Real-time classification of Rubin alerts: RR Lyrae and supernova "
                              "candidates. Results use the ELAsTiCC2 taxonomy.")
    _install_error_handlers(app)
    _install_http_metrics(app)

    from service.api import anomalies, classify, explorer, health, model_status, queries, stats

    for module in (classify, queries, anomalies, stats, model_status, health, explorer):
        app.include_router(module.router)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def status_page() -> HTMLResponse:
        return HTMLResponse((STATIC / "status.html").read_text())

    return app


def _inference_observer(metrics: Metrics, name: str):
    return lambda seconds, _rows: metrics.inference.labels(name).observe(seconds)


def _start_worker(state: AppState) -> None:
    metrics = state.metrics
    try:
        worker = make_worker(state.settings, state.bootstrap, registry=state.registry, store=state.store,
                             observer=metrics.observe_batch, beside_http=True)
    except AlertClassifierError as exc:
        # The API stays up and readiness says why (e.g. the cluster refuses our credentials).
        state.worker_error = f"the worker could not start: {exc}"
        log.error(state.worker_error)
        return
    metrics.watch_worker(worker.stalled_seconds)

    def run() -> None:
        try:
            worker.run()
        except Exception as exc:
            state.worker_error = f"{type(exc).__name__}: {exc}"
            raise

    state.worker = worker
    state.worker_thread = threading.Thread(target=run, name="alert-worker", daemon=True)
    state.worker_thread.start()


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AlertClassifierError)
    async def _domain(_request: Request, exc: AlertClassifierError) -> JSONResponse:
        headers = {"Retry-After": "5"} if exc.transient else None  # the store or registry blinked
        return JSONResponse(error_body(exc.http_status, exc.reason, str(exc)), status_code=exc.http_status,
                            headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        where = ".".join(loc) or None
        message = f"{where}: {first.get('msg')}" if where else str(first.get("msg", "invalid request"))
        return JSONResponse(error_body(422, "validation_error", message, where), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        reason = headers.pop("x-reason", "http_error")  # ours; WWW-Authenticate, Retry-After... go out
        return JSONResponse(error_body(exc.status_code, reason, str(exc.detail)), status_code=exc.status_code,
                            headers=headers or None)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The traceback goes to the log; the client learns nothing of the internals.
        incident = uuid.uuid4().hex[:12]
        log.error("unhandled error %s on %s %s", incident, request.method, request.url.path,
                  exc_info=(type(exc), exc, exc.__traceback__))
        body = error_body(500, "internal_error", f"internal error {incident}: see the service log")
        return JSONResponse(body, status_code=500)


def _install_http_metrics(app: FastAPI) -> None:
    @app.middleware("http")
    async def _measure(request: Request, call_next):
        t0 = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        core = getattr(request.app.state, "core", None)
        if core is not None:
            core.metrics.http_requests.labels(request.method, path, str(response.status_code)).inc()
            core.metrics.http_latency.labels(request.method, path).observe(time.perf_counter() - t0)
        return response
