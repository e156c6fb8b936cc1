"""The predict path: resolve the version, validate, predict off the event loop, log."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from modelserve.auth.caller import Caller
from modelserve.config import Settings
from modelserve.core.clock import utcnow
from modelserve.core.db import Database
from modelserve.core.errors import AppError, v2_status
from modelserve.inference.batching import Batcher, Batchers
from modelserve.inference.cache import LoadedVersion, ModelCache, cache_key
from modelserve.inference.intake import MatrixPayload, validate
from modelserve.inference.loading import load_version
from modelserve.inference.predictor import PredictionResult
from modelserve.inference.probabilities import probabilities_json
from modelserve.inference.validation import ValidatedBatch, WarningCounter
from modelserve.lifecycle.routing import Route, RouteTable, Target, Variant
from modelserve.predictions.encoding import loggable, raw_json
from modelserve.predictions.schemas import PredictionRecord, PredictionStatus
from modelserve.predictions.service import PredictionLog
from modelserve.registry.probe import probe_instances
from modelserve.registry.schemas import ModelsPublic, Runtime
from modelserve.registry.service import RegistryService, ResolvedVersion


class InferenceFailed(AppError):
    """The model raised on validated input."""

    status_code = 500
    code = "inference_error"


@dataclass(frozen=True)
class Choice:
    """The version serving one request, how it was picked, and the shadow to run beside it."""

    version: ResolvedVersion
    variant: Variant = "primary"
    shadow: ResolvedVersion | None = None


@dataclass(frozen=True)
class PredictCall:
    """One prediction request as the transport hands it over."""

    target: Target
    payload: Any
    payload_error: AppError | None
    request_id: uuid.UUID
    started: float
    caller: Caller | None = None
    protocol: str = "v1"
    choice: Choice | None = None
    """The version, when the transport already chose it (no second lookup)."""
    text: bytes | None = None
    """The body's JSON text, when the log may keep it as it came (``core.http.parse_json_text``):
    then a payload that is logged whole and validated on the fast path (``intake.fast_batch``,
    where every value was checked) is logged as this text, not encoded again."""


@dataclass(frozen=True)
class Served:
    """A successful prediction."""

    version: ResolvedVersion
    result: PredictionResult
    warnings: list[dict[str, Any]] | None = None
    """Values served though outside the training range (see ``ValidatedBatch.warnings``)."""
    runtime: Runtime = "sklearn"
    """What answered: scikit-learn (or the model's own library), or ONNX Runtime."""


@dataclass(frozen=True)
class _Admitted:
    """A validated request, waiting for what the model gives for its rows."""

    call: PredictCall
    version: ResolvedVersion
    variant: Variant
    shadow: ResolvedVersion | None
    batch: ValidatedBatch
    runtime: Runtime


def _choice(route: Route, caller: Caller | None) -> Choice:
    version, variant = route.pick(f"user:{caller.user_id}" if caller else "anonymous")
    return Choice(version, variant, route.shadow)


def _rows(payload: Any) -> int:
    """How many rows a payload says it has (at least 1), before validation."""
    if isinstance(payload, MatrixPayload):
        return max(payload.n_rows, 1)
    if isinstance(payload, dict):
        rows = payload.get("instances", payload.get("data"))
        if isinstance(rows, list):
            return max(len(rows), 1)
    return 1


def _timed_predict(
    loaded: LoadedVersion, batch: ValidatedBatch, width: int, *, reraise: bool = False
) -> PredictionResult | BaseException:
    """The predictor's result for ``batch`` (or the exception it raised); the CPU time a small
    batch took counts towards the version's ``PredictCost``. CPU time of this thread, not wall
    time: under load a worker thread's wall time is mostly waiting for the GIL, which would
    make a cheap model look slow and keep it off the event loop for good."""
    started = time.thread_time()
    try:
        result = loaded.predictor.predict(batch)
    except Exception as exc:
        if reraise:
            raise
        return exc
    values = batch.n_rows * width
    if values <= INLINE_MAX_VALUES:
        loaded.cost.add(time.thread_time() - started, large=values > SMALL_VALUES)
    return result


def _status_of(exc: AppError) -> PredictionStatus:
    return "invalid" if exc.status_code < 500 else "error"


def _logged_inputs(payload: Any, text: bytes | None, *, checked: bool) -> tuple[Any, str | None]:
    """What the log keeps of a payload, and its ``inputs_encoding``: its instances (records),
    or the whole payload, which, once ``checked`` (validated on the matrix path), is logged as
    its JSON text (the body's own, ``text``), or as ``MatrixPayload.logged``."""
    if isinstance(payload, MatrixPayload):
        if not checked:
            return payload.columnar(), None
        return (raw_json(text), None) if text is not None else payload.logged()
    if isinstance(payload, dict) and "instances" in payload:
        return payload["instances"], None
    return (raw_json(text) if checked and text is not None else payload), None


class ShadowSink(Protocol):
    """Where served requests go to be predicted by a shadow version (``shadow.ShadowRunner``)."""

    completed: int
    skipped: int

    def submit(self, call: PredictCall, version: ResolvedVersion) -> None:
        """Queue a shadow run; return at once."""

    def close(self) -> None:
        """Finish queued shadow runs, then stop."""


class _NotLoaded(Exception):
    """The version is not in the cache (and must not be loaded here)."""


def _not_loaded() -> LoadedVersion:
    raise _NotLoaded


INLINE_MAX_VALUES = 4096
"""A request holding at most this many values (rows x features: 100 rows of 40 features) may be
validated, and queued for a batching model or served by a cheap one, on the event loop
(``start_inline``): that costs less than handing the request to a worker thread and back."""
SMALL_VALUES = 1024
"""Requests of at most this many values and larger ones have their own ``PredictCost``: one
row of a model may be cheap enough for the event loop where a hundred are not."""


class Routes(RouteTable):
    """The route table, plus ``cached``: a look-up that never reaches the database, for the
    event loop. It keeps what ``route`` answered until ``invalidate`` (a registry change)."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self._known: dict[Target, Route] = {}
        self._known_lock = threading.Lock()
        self._known_epoch = 0

    def route(self, target: Target) -> Route:
        """As ``RouteTable.route``; remembered for ``cached`` unless invalidated meanwhile."""
        with self._known_lock:
            epoch = self._known_epoch
        route = super().route(target)
        with self._known_lock:
            if epoch == self._known_epoch:
                self._known[target] = route
        return route

    def invalidate(self) -> None:
        """Forget every route (the table's first, so nothing stale is remembered after)."""
        super().invalidate()
        with self._known_lock:
            self._known_epoch += 1
            self._known.clear()

    def cached(self, target: Target) -> Route | None:
        """The route ``route`` would answer from memory, or None."""
        with self._known_lock:
            return self._known.get(target)


class InferenceService:
    """Serves predictions for every transport; call ``predict`` from a worker thread."""

    def __init__(self, db: Database, cache: ModelCache, log: PredictionLog, settings: Settings):
        self.db = db
        self.cache = cache
        self.log = log
        self.settings = settings
        self.routes = Routes(db)
        self.shadows: ShadowSink | None = None
        """Runs shadow versions off the request path; without one, shadows are skipped."""
        self.batchers = Batchers()
        """Adaptive batching, for versions of models whose serving settings turn it on."""
        self.input_warnings = WarningCounter()
        """Values served outside their training range, per model and feature."""
        self.served_inline = 0
        """Requests answered on the event loop by ``start_inline`` (for /metrics)."""

    def resolve(self, target: Target) -> ResolvedVersion:
        """The version ``target`` names, before any traffic policy (NotFound when none)."""
        return self.routes.route(target).primary

    def choose(self, target: Target, caller: Caller | None) -> Choice:
        """The version serving this caller: the alias's canary for a sticky share of callers,
        else the target's version; plus the alias's shadow, if any."""
        return _choice(self.routes.route(target), caller)

    def choose_cached(self, target: Target, caller: Caller | None) -> Choice | None:
        """``choose`` from the routes in memory only (for the event loop); None when the route
        must be read."""
        route = self.routes.cached(target)
        return None if route is None else _choice(route, caller)

    def registry_listing(self) -> ModelsPublic:
        """Every registered model (for protocol indexes)."""
        with self.db.sessions() as session:
            return RegistryService(session).list_models()

    def load(self, version: ResolvedVersion) -> LoadedVersion:
        """The cached loaded version, loading (and checking its sha256) on first use."""
        return self.cache.get(
            cache_key(version),
            lambda: load_version(self.db, version, max_rows=self.settings.max_batch_size),
        )

    def warm(self, version: ResolvedVersion) -> None:
        """Load ``version`` and have it answer a probe prediction (so its first request is not
        slow); raises AppError when it cannot."""
        loaded = self.load(version)
        instances = probe_instances(version.input_schema)
        batch = loaded.validator.validate({"instances": instances})
        try:
            loaded.predictor.predict(batch)
            single = loaded.validator.validate({"instances": instances[:1]})
            width = len(version.input_schema.features)
            for _ in range(3):  # what a small request costs, for ``start_inline``
                _timed_predict(loaded, single, width, reraise=True)
        except AppError:
            raise
        except Exception as exc:
            raise InferenceFailed(
                "The model failed its probe prediction.",
                details={"error": f"{type(exc).__name__}: {exc}"},
            ) from exc

    def predict(self, call: PredictCall) -> Served:
        """Serve one request and log it, success or failure; then hand a copy to the shadow.
        Blocks while a batched request waits for its batch (``start`` does not)."""
        outcome = self.start(call)
        return outcome if isinstance(outcome, Served) else outcome.result()

    def start(self, call: PredictCall) -> Served | Future[Served]:
        """Serve one request as far as it goes without waiting for other requests: its answer,
        or, when its model batches, a future of it, resolved once its batch has run and it is
        logged (await it without holding a thread). Raises, once logged, what refused it. Call
        from a worker thread."""
        choice = call.choice or self.choose(call.target, call.caller)
        return self._start(call, choice.version, choice.variant, choice.shadow)

    def start_inline(self, call: PredictCall) -> Served | Future[Served] | None:
        """For the event loop: serve or queue a small request (at most ``INLINE_MAX_VALUES``
        values) with no thread hand-over, when that needs no database read and no model load:
        queued, for a batching model; answered and logged, for a model whose recent predictions
        of this size (``PredictCost``) took less than ``inline_max_ms`` (raising, once logged,
        what refused it). None otherwise, and then ``start`` it on a worker thread."""
        if call.payload_error is not None:
            return None
        choice = call.choice
        if choice is None:
            route = self.routes.cached(call.target)
            if route is None:
                return None
            choice = _choice(route, call.caller)
        version = choice.version
        batching = version.serving.batching
        key = cache_key(version)
        if key not in self.cache:
            return None
        values = _rows(call.payload) * len(version.input_schema.features)
        if values > INLINE_MAX_VALUES:
            return None
        try:
            loaded = self.cache.get(key, _not_loaded)
        except _NotLoaded:
            return None
        if batching is None:
            cost = loaded.cost.of(large=values > SMALL_VALUES)
            if cost * 1000.0 >= self.settings.inline_max_ms:
                return None
            self.served_inline += 1  # counted on the event loop only: no lock needed
            return self._start(call, version, choice.variant, choice.shadow, loaded)
        try:
            batch = validate(loaded.validator, call.payload, loaded.rules)
        except AppError:
            return None  # refused: ``start`` logs it
        batcher = self.batchers.get(key)
        if batcher.closed:  # shutting down: the model would run right here
            return None
        admitted = _Admitted(call, version, choice.variant, choice.shadow, batch, loaded.runtime)
        return batcher.submit(batch, loaded.predictor, batching, partial(self._finish, admitted))

    def serve(self, call: PredictCall, version: ResolvedVersion, variant: Variant) -> Served:
        """Predict with one version and log the outcome as ``variant`` (no shadow of its own)."""
        outcome = self._start(call, version, variant, None)
        return outcome if isinstance(outcome, Served) else outcome.result()

    def _start(
        self,
        call: PredictCall,
        version: ResolvedVersion,
        variant: Variant,
        shadow: ResolvedVersion | None,
        loaded: LoadedVersion | None = None,
    ) -> Served | Future[Served]:
        batching = version.serving.batching
        batcher: Batcher | None = None
        try:
            if call.payload_error is not None:
                raise call.payload_error
            if batching is not None:
                batcher = self.batchers.get(cache_key(version))
                batcher.reserve()  # a batch being gathered waits for this request
            if loaded is None:
                loaded = self.load(version)
            batch = validate(loaded.validator, call.payload, loaded.rules)
        except AppError as exc:
            if batcher is not None:
                batcher.cancel()
            self._log_failure(call, version, variant, exc)
            raise
        except BaseException:
            if batcher is not None:
                batcher.cancel()
            raise
        admitted = _Admitted(call, version, variant, shadow, batch, loaded.runtime)
        finish = partial(self._finish, admitted)
        if batcher is not None and batching is not None:
            return batcher.submit(batch, loaded.predictor, batching, finish, reserved=True)
        return finish(_timed_predict(loaded, batch, len(version.input_schema.features)))

    def _finish(self, admitted: _Admitted, outcome: PredictionResult | BaseException) -> Served:
        """Log what the model gave for this request's rows and answer with it (raise its
        error); then hand a copy of the request to the shadow."""
        call, version, variant = admitted.call, admitted.version, admitted.variant
        if isinstance(outcome, BaseException):
            error = outcome
            if not isinstance(error, AppError):
                error = InferenceFailed(
                    "The model failed on this input.",
                    details={"error": f"{type(outcome).__name__}: {outcome}"},
                )
            self._log_failure(call, version, variant, error, runtime=admitted.runtime)
            raise error from (None if error is outcome else outcome)
        outputs: dict[str, Any] = {"predictions": outcome.predictions}
        if outcome.probabilities is not None:
            outputs["probabilities"] = probabilities_json(outcome.probabilities)
        warnings = admitted.batch.warnings
        if warnings is not None:
            outputs["warnings"] = warnings
            self.input_warnings.add(version.model_name, admitted.batch.warning_counts or {})
        self._log(
            call,
            version,
            variant,
            status="ok",
            http_status=200,
            outputs=outputs,
            n_rows=admitted.batch.n_rows,
            inputs_log_safe=admitted.batch.log_safe,
            inputs_checked=admitted.batch.matrix is not None,
            runtime=admitted.runtime,
        )
        if admitted.shadow is not None and self.shadows is not None:
            self.shadows.submit(call, admitted.shadow)
        return Served(version, outcome, warnings, admitted.runtime)

    def _log_failure(
        self,
        call: PredictCall,
        version: ResolvedVersion,
        variant: Variant,
        exc: AppError,
        *,
        runtime: Runtime | None = None,
    ) -> None:
        self._log(
            call,
            version,
            variant,
            status=_status_of(exc),
            http_status=exc.status_code,
            error=exc.to_body().model_dump(),
            runtime=runtime,
        )

    def _log(
        self,
        call: PredictCall,
        version: ResolvedVersion,
        variant: Variant,
        *,
        status: PredictionStatus,
        http_status: int,
        outputs: Any = None,
        error: Any = None,
        n_rows: int = 0,
        inputs_log_safe: bool = False,
        inputs_checked: bool = False,
        runtime: Runtime | None = None,
    ) -> None:
        if call.protocol == "v2":
            http_status = v2_status(http_status)  # what the client was answered
        inputs, encoding = _logged_inputs(call.payload, call.text, checked=inputs_checked)
        self.log.write(
            PredictionRecord(
                request_id=call.request_id,
                model_id=version.model_id,
                model_version_id=version.version_id,
                user_id=call.caller.user_id if call.caller else None,
                api_key_id=call.caller.api_key_id if call.caller else None,
                caller=call.caller.label if call.caller else None,
                protocol=call.protocol,
                status=status,
                http_status=http_status,
                latency_ms=(time.perf_counter() - call.started) * 1000.0,
                n_rows=n_rows,
                # A validated payload is logged as it came unless it holds something to escape.
                inputs=inputs if inputs_log_safe else loggable(inputs),
                outputs=outputs,
                error=None if error is None else loggable(error),
                created_at=utcnow(),
                variant=variant,
                runtime=runtime,
                inputs_encoding=encoding,
            )
        )
