"""What the lifespan opens and every request shares, per process."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import anyio
from prometheus_client import CollectorRegistry

from modelserve.auth.caller import Authenticator, Caller
from modelserve.auth.ratelimit import RateLimiter
from modelserve.auth.service import AuthContext
from modelserve.config import Settings
from modelserve.core.db import Database
from modelserve.inference.cache import ModelCache
from modelserve.inference.service import InferenceService
from modelserve.lifecycle.service import LifecycleService
from modelserve.lifecycle.watcher import RegistryWatcher
from modelserve.predictions.writer import LogWriter


@dataclass
class AppState:
    """Per-process resources, created by the lifespan and closed on shutdown."""

    settings: Settings
    db: Database
    cache: ModelCache
    inference: InferenceService
    model_threads: anyio.CapacityLimiter
    model_executor: ThreadPoolExecutor
    """The ``INFERENCE_THREADS`` worker threads predictions run on (``inference.router.serve``)."""
    authenticator: Authenticator
    auth: AuthContext
    limiter: RateLimiter
    watcher: RegistryWatcher
    lifecycle: LifecycleService
    log_writer: LogWriter
    metrics: CollectorRegistry
    anonymous: Caller | None = None
    """Who a request without credentials is, when auth is disabled (a mesh authenticates)."""
