"""``create_app(settings)``: routers, error handlers, middleware and the lifespan."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import timedelta

import anyio
from fastapi import FastAPI, params
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute, APIRouter
from fastapi.telemetry import TelemetryConfig
from starlette.routing import Match
from starlette.types import Scope

from modelserve import __version__
from modelserve.audit.router import router as audit_router
from modelserve.auth.caller import Authenticator
from modelserve.auth.ratelimit import RateLimiter
from modelserve.auth.router import router as auth_router
from modelserve.auth.secret import load_secret_key
from modelserve.auth.service import AuthContext
from modelserve.auth.tokens import TokenSigner
from modelserve.config import Settings
from modelserve.core.db import Database
from modelserve.core.errors import install_error_handlers
from modelserve.core.http import RequestBodyMiddleware, SecurityHeadersMiddleware
from modelserve.core.responses import ORJSONResponse
from modelserve.health.router import router as health_router
from modelserve.inference.cache import ModelCache
from modelserve.inference.router import router as predict_router
from modelserve.inference.service import InferenceService
from modelserve.inference.shadow import ShadowRunner
from modelserve.lifecycle.router import router as lifecycle_router
from modelserve.lifecycle.service import LifecycleService, LifecycleSettings
from modelserve.lifecycle.watcher import RegistryWatcher
from modelserve.monitoring.metrics import build_registry
from modelserve.monitoring.router import router as monitoring_router
from modelserve.predictions.journal import Journal
from modelserve.predictions.router import router as predictions_router
from modelserve.predictions.service import PredictionLog
from modelserve.predictions.spill import SpillStore
from modelserve.predictions.writer import LogWriter
from modelserve.protocols.v2.router import infer_router as v2_infer_router
from modelserve.protocols.v2.router import router as v2_router
from modelserve.registry.router import router as registry_router
from modelserve.server.predict_routes import PredictRoutes
from modelserve.server.startup import anonymous_caller
from modelserve.state import AppState
from modelserve.users.router import router as users_router


def open_state(settings: Settings) -> AppState:
    """Open the engine and caches for one process."""
    settings.ensure_data_dir()
    db = Database(settings.resolved_database_url, pool_size=settings.inference_threads + 4)
    cache = ModelCache(settings.model_cache_size)
    spill = SpillStore(settings.data_dir / "spill")
    journal = None
    if settings.log_journal and settings.prediction_log:
        journal = Journal(spill, fsync_ms=settings.log_journal_fsync_ms)
    log_writer = LogWriter(
        db,
        spill,
        journal=journal,
        queue_size=settings.log_queue_size,
        batch_size=settings.log_batch_size,
        replay_seconds=settings.log_replay_seconds,
    )
    log = PredictionLog(db, log_writer, enabled=settings.prediction_log)
    inference = InferenceService(db, cache, log, settings)
    inference.shadows = ShadowRunner(inference, backlog=settings.shadow_backlog)
    watcher = RegistryWatcher(
        db,
        inference.routes,
        inference.warm,
        is_loaded=cache.__contains__,
        poll_seconds=settings.registry_poll_seconds,
        listen_url=settings.resolved_listen_url,
        heartbeat_seconds=settings.heartbeat_seconds,
        warm_limit=settings.model_cache_size,
    )
    signer = TokenSigner(
        load_secret_key(settings),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        lifetime=timedelta(minutes=settings.access_token_minutes),
    )
    limiter = RateLimiter(db)
    return AppState(
        settings=settings,
        db=db,
        cache=cache,
        inference=inference,
        model_threads=anyio.CapacityLimiter(settings.inference_threads),
        model_executor=ThreadPoolExecutor(
            settings.inference_threads, thread_name_prefix="modelserve-predict"
        ),
        authenticator=Authenticator.of(settings, db, signer, limiter),
        auth=AuthContext(db=db, signer=signer, limiter=limiter, settings=settings),
        limiter=limiter,
        watcher=watcher,
        lifecycle=LifecycleService(db, inference.warm, LifecycleSettings.of(settings)),
        log_writer=log_writer,
        metrics=build_registry(log_writer, inference, watcher),
    )


def _form_routes(routers: Iterable[APIRouter]) -> list[APIRoute]:
    """The routes that read a form (File or Form parameters) rather than JSON."""
    return [
        route
        for router in routers
        for route in router.routes
        if isinstance(route, APIRoute)
        and route.body_field is not None
        and isinstance(route.body_field.field_info, params.Form)
    ]


def _form_matcher(routes: list[APIRoute]) -> Callable[[Scope], bool]:
    def accepts_form(scope: Scope) -> bool:
        return any(route.matches(scope)[0] == Match.FULL for route in routes)

    return accepts_form


_ROUTERS = (
    # Starlette tries routes in order: the prediction routes, the hot path, go first.
    predict_router,
    v2_infer_router,
    health_router,
    auth_router,
    users_router,
    registry_router,
    lifecycle_router,
    predictions_router,
    audit_router,
    v2_router,
    monitoring_router,
)

_NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}
"""FastAPI's OpenTelemetry, off (``Settings.opentelemetry``)."""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application; nothing touches the database until the lifespan starts."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = open_state(settings)
        app.state.modelserve = state
        if settings.auth_disabled:
            state.anonymous = await anyio.to_thread.run_sync(anonymous_caller, state.db)
        state.log_writer.start()
        # Versions behind aliases are loaded and probed before the first request is accepted.
        await anyio.to_thread.run_sync(state.watcher.start)
        # What start-up made (modules, loaded models: millions of objects) lives as long as the
        # process. Frozen, the cyclic collector stops walking it on every full collection: those
        # took about 100 ms, once a second under 100-row load, and were the whole p99 tail.
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()  # collectable again: a process may build another app (the tests do)
            await anyio.to_thread.run_sync(state.watcher.stop)
            if state.inference.shadows is not None:
                await anyio.to_thread.run_sync(state.inference.shadows.close)
            await anyio.to_thread.run_sync(state.inference.batchers.close)
            await anyio.to_thread.run_sync(state.model_executor.shutdown)
            # Shadow runs have queued their records: write everything before the engine goes.
            await anyio.to_thread.run_sync(
                state.log_writer.close, settings.log_flush_timeout_seconds
            )
            await anyio.to_thread.run_sync(state.authenticator.close)
            state.db.dispose()

    docs = settings.docs_enabled
    app = FastAPI(
        title="modelserve",
        version=__version__,
        summary="Validated, logged predictions from registered scikit-learn models.",
        lifespan=lifespan,
        default_response_class=ORJSONResponse,
        # A body without Content-Type is taken as JSON (RequestBodyMiddleware still requires
        # UTF-8); one with a type other than JSON is refused with 415 there.
        strict_content_type=False,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
        # Off, FastAPI still asks every request whether an OpenTelemetry provider is set up,
        # reading the environment three times: 2-3% of a one-row prediction.
        telemetry=None if settings.opentelemetry else _NO_TELEMETRY,
    )
    install_error_handlers(app)
    app.add_middleware(PredictRoutes)  # innermost: inside the body guard and security headers
    app.add_middleware(
        RequestBodyMiddleware,
        default_limit=settings.max_body_bytes,
        upload_limit=settings.max_upload_bytes,
        body_timeout=settings.body_timeout_seconds,
        accepts_form=_form_matcher(_form_routes(_ROUTERS)),
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    app.add_middleware(SecurityHeadersMiddleware)
    for router in _ROUTERS:
        app.include_router(router)
    return app
