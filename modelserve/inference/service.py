"""The predict path: resolve the version, validate, predict off the event loop, log."""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from modelserve.auth.caller import Caller
from modelserve.config import Settings
from modelserve.core.clock import utcnow
from modelserve.core.db import Database
from modelserve.core.errors import AppError, ArtifactIntegrityError, v2_status
from modelserve.inference.cache import LoadedVersion, ModelCache
from modelserve.inference.predictor import PredictionResult, Predictor
from modelserve.inference.validation import CompiledValidator
from modelserve.lifecycle.routing import RouteTable, Target, Variant
from modelserve.predictions.schemas import PredictionRecord, PredictionStatus
from modelserve.predictions.service import PredictionLog
from modelserve.registry.loaders import ArtifactFormat, load_artifact
from modelserve.registry.probe import probe_instances
from modelserve.registry.schemas import ModelsPublic
from modelserve.registry.service import RegistryService, ResolvedVersion, sha256_hex

if TYPE_CHECKING:
    from modelserve.inference.shadow import ShadowRunner


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


@dataclass(frozen=True)
class Served:
    """A successful prediction."""

    version: ResolvedVersion
    result: PredictionResult


def _status_of(exc: AppError) -> PredictionStatus:
    return "invalid" if exc.status_code < 500 else "error"


def loggable(value: Any) -> Any:
    """``value`` with non-finite floats spelled as strings (JSON has no NaN) and NUL characters
    escaped, so any request can be logged."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, int) and not -(2**63) <= value < 2**64:
        return str(value)  # beyond what JSON encoders take as an integer
    if isinstance(value, str):
        return value.replace("\x00", "\\u0000")  # PostgreSQL text cannot hold NUL
    if isinstance(value, list):
        return [loggable(v) for v in value]
    if isinstance(value, dict):
        return {loggable(str(k)): loggable(v) for k, v in value.items()}
    return value


class InferenceService:
    """Serves predictions for every transport; call ``predict`` from a worker thread."""

    def __init__(self, db: Database, cache: ModelCache, log: PredictionLog, settings: Settings):
        self.db = db
        self.cache = cache
        self.log = log
        self.settings = settings
        self.routes = RouteTable(db)
        self.shadows: ShadowRunner | None = None
        """Runs shadow versions off the request path; without one, shadows are skipped."""

    def resolve(self, target: Target) -> ResolvedVersion:
        """The version ``target`` names, before any traffic policy (NotFound when none)."""
        return self.routes.route(target).primary

    def choose(self, target: Target, caller: Caller | None) -> Choice:
        """The version serving this caller: the alias's canary for a sticky share of callers,
        else the target's version; plus the alias's shadow, if any."""
        route = self.routes.route(target)
        key = f"user:{caller.user_id}" if caller else "anonymous"
        version, variant = route.pick(key)
        return Choice(version, variant, route.shadow)

    def registry_listing(self) -> ModelsPublic:
        """Every registered model (for protocol indexes)."""
        with self.db.sessions() as session:
            return RegistryService(session).list_models()

    def load(self, version: ResolvedVersion) -> LoadedVersion:
        """The cached loaded version, loading (and checking its sha256) on first use."""
        return self.cache.get(version.version_id, lambda: self._load(version))

    def _load(self, version: ResolvedVersion) -> LoadedVersion:
        with self.db.sessions() as session:
            data = RegistryService(session).artifact(version.version_id)
        if sha256_hex(data) != version.sha256:
            raise ArtifactIntegrityError(
                f"Artifact of {version.model_name} v{version.number} does not match its sha256; "
                "refusing to load it.",
                details={"expected_sha256": version.sha256},
            )
        loaded = load_artifact(data, cast(ArtifactFormat, version.format))
        return LoadedVersion(
            version_id=version.version_id,
            validator=CompiledValidator(
                version.input_schema, max_rows=self.settings.max_batch_size
            ),
            predictor=Predictor(loaded.estimator, version.input_schema, version.output),
        )

    def warm(self, version: ResolvedVersion) -> None:
        """Load ``version`` and have it answer a probe prediction (so its first request is not
        slow); raises AppError when it cannot."""
        loaded = self.load(version)
        batch = loaded.validator.validate({"instances": probe_instances(version.input_schema)})
        try:
            loaded.predictor.predict(batch)
        except AppError:
            raise
        except Exception as exc:
            raise InferenceFailed(
                "The model failed its probe prediction.",
                details={"error": f"{type(exc).__name__}: {exc}"},
            ) from exc

    def predict(self, call: PredictCall) -> Served:
        """Serve one request and log it, success or failure; then hand a copy to the shadow."""
        choice = call.choice or self.choose(call.target, call.caller)
        served = self.serve(call, choice.version, choice.variant)
        if choice.shadow is not None and self.shadows is not None:
            self.shadows.submit(call, choice.shadow)
        return served

    def serve(self, call: PredictCall, version: ResolvedVersion, variant: Variant) -> Served:
        """Predict with one version and log the outcome as ``variant``."""
        try:
            if call.payload_error is not None:
                raise call.payload_error
            loaded = self.load(version)
            batch = loaded.validator.validate(call.payload)
            try:
                result = loaded.predictor.predict(batch)
            except AppError:
                raise
            except Exception as exc:
                raise InferenceFailed(
                    "The model failed on this input.",
                    details={"error": f"{type(exc).__name__}: {exc}"},
                ) from exc
        except AppError as exc:
            self._log(
                call,
                version,
                variant,
                status=_status_of(exc),
                http_status=exc.status_code,
                error=exc.to_body().model_dump(),
            )
            raise
        outputs: dict[str, Any] = {"predictions": result.predictions}
        if result.probabilities is not None:
            outputs["probabilities"] = result.probabilities
        self._log(
            call,
            version,
            variant,
            status="ok",
            http_status=200,
            outputs=outputs,
            n_rows=batch.n_rows,
        )
        return Served(version=version, result=result)

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
    ) -> None:
        if call.protocol == "v2":
            http_status = v2_status(http_status)  # what the client was answered
        payload = call.payload
        inputs = payload.get("instances", payload) if isinstance(payload, dict) else payload
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
                inputs=loggable(inputs),
                outputs=outputs,
                error=loggable(error),
                created_at=utcnow(),
                variant=variant,
            )
        )
