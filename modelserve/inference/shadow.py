"""Shadow runs: a copy of a served request predicted by another version, off the request path.

The caller has its answer before the shadow starts; a shadow's outcome is only logged (variant
``shadow``, same request id). A bounded backlog keeps a slow shadow from growing memory without
bound: when it is full, shadow runs are skipped and counted, never the caller's request."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from modelserve.core.errors import AppError
from modelserve.registry.service import ResolvedVersion

if TYPE_CHECKING:
    from modelserve.inference.service import InferenceService, PredictCall

logger = logging.getLogger(__name__)


class ShadowRunner:
    """One background thread running shadow predictions for an InferenceService."""

    def __init__(self, inference: InferenceService, backlog: int = 256) -> None:
        self.inference = inference
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="modelserve-shadow")
        self._slots = threading.BoundedSemaphore(backlog)
        self.completed = 0
        self.skipped = 0

    def submit(self, call: PredictCall, version: ResolvedVersion) -> None:
        """Queue a shadow run of ``call`` on ``version``; returns at once."""
        if not self._slots.acquire(blocking=False):
            self.skipped += 1
            return
        try:
            self._executor.submit(self._run, call, version)
        except RuntimeError:  # shutting down
            self._slots.release()
            self.skipped += 1

    def _run(self, call: PredictCall, version: ResolvedVersion) -> None:
        try:
            shadow_call = dataclasses.replace(call, started=time.perf_counter(), choice=None)
            self.inference.serve(shadow_call, version, "shadow")
        except AppError:
            pass  # logged by serve() as an invalid or failed shadow run
        except Exception:
            logger.exception("shadow run of %s v%s failed", version.model_name, version.number)
        finally:
            self.completed += 1
            self._slots.release()

    def close(self) -> None:
        """Finish queued shadow runs, then stop."""
        self._executor.shutdown(wait=True)
