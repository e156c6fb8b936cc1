"""Open an untrusted upload in a child process with memory, CPU and wall-clock limits.

At registration the artifact is unzipped, unpickled or skops-loaded, and probed on the schema's
rows in a child forked from a forkserver (which has the loaders and skops imported, so a
registration pays a fork, not an interpreter start). The child lowers its own limits first
(``RLIMIT_AS`` to what it already maps plus ``memory_bytes``, ``RLIMIT_CPU``), drops the
``MODELSERVE_*`` environment, and answers only data: the output description, the scikit-learn
version the file names, warnings, and for skops the serving-form bytes. They come back as bytes
and JSON, never unpickled: the parent then loads the model itself with the same restricted
loaders (a skops upload from its serving form). A zip archive's declared sizes are checked here
before any child starts, so an archive bomb is refused without inflating a byte.
"""

from __future__ import annotations

import atexit
import io
import json
import logging
import os
import resource
import select
import signal
import subprocess
import sys
import threading
import warnings
import zipfile
from dataclasses import dataclass
from typing import Any

from modelserve.config import Settings
from modelserve.core.errors import (
    AppError,
    ArtifactLimitExceeded,
    ArtifactTooLarge,
    InvalidArtifact,
    UnsafeArtifact,
    ValidationFailed,
)
from modelserve.registry import probe
from modelserve.registry.formats.libraries import LibraryMissing
from modelserve.registry.formats.schema import complete_schema
from modelserve.registry.loaders import ArtifactFormat, load_artifact, serving_form
from modelserve.registry.schemas import InputSchema, OutputSpec

logger = logging.getLogger(__name__)

RATIO_FLOOR_BYTES = 16 * 1024**2
"""Archives inflating to less than this are not held to the compression-ratio limit."""
MAX_MEMBERS = 100_000
"""Most members an archive may declare (read from its end record, before its directory)."""
_MAX_WARNINGS = 20
_READY = b"R"
_START_SECONDS = 300.0
_ERRORS: dict[str, type[AppError]] = {
    UnsafeArtifact.code: UnsafeArtifact,
    InvalidArtifact.code: InvalidArtifact,
    ArtifactLimitExceeded.code: ArtifactLimitExceeded,
    LibraryMissing.code: LibraryMissing,
    ValidationFailed.code: ValidationFailed,
}


@dataclass(frozen=True)
class SandboxLimits:
    """What opening one upload may take (defaults: the settings' defaults)."""

    memory_bytes: int = 2 * 1024**3
    timeout_seconds: float = 60.0
    cpu_seconds: int = 60
    max_inflated_bytes: int = 1024**3
    max_compression_ratio: float = 200.0

    @classmethod
    def of(cls, settings: Settings) -> SandboxLimits:
        """The limits ``settings`` configure."""
        return cls(
            memory_bytes=settings.sandbox_memory_bytes,
            timeout_seconds=settings.sandbox_timeout_seconds,
            cpu_seconds=settings.sandbox_cpu_seconds,
            max_inflated_bytes=settings.artifact_max_inflated_bytes,
            max_compression_ratio=settings.artifact_max_compression_ratio,
        )


@dataclass(frozen=True)
class Vetted:
    """What the child learnt about an upload that opened and predicted within the limits."""

    schema: InputSchema
    """The schema given, or the one built from the model's feature names."""
    schema_source: str | None
    """Where ``schema`` came from: None when given (see ``formats.schema.complete_schema``)."""
    output: OutputSpec
    trained_sklearn_version: str | None
    serving_form: bytes | None
    warnings: tuple[str, ...]


def check_archive(data: bytes, limits: SandboxLimits) -> None:
    """Refuse (ArtifactTooLarge) a zip whose members declare more than the limits allow, from
    its end record and central directory only; anything unreadable is left to the loader."""
    if not data.startswith(b"PK\x03\x04"):
        return
    try:
        end = zipfile._EndRecData(io.BytesIO(data))  # type: ignore[attr-defined]
        if end is not None and end[zipfile._ECD_ENTRIES_TOTAL] > MAX_MEMBERS:  # type: ignore[attr-defined]
            _too_large("members", end[zipfile._ECD_ENTRIES_TOTAL], MAX_MEMBERS)  # type: ignore[attr-defined]
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return
    if len(members) > MAX_MEMBERS:
        _too_large("members", len(members), MAX_MEMBERS)
    inflated = sum(m.file_size for m in members)
    if inflated > limits.max_inflated_bytes:
        _too_large("inflated_bytes", inflated, limits.max_inflated_bytes)
    ratio = inflated / max(sum(m.compress_size for m in members), 1)
    if inflated > RATIO_FLOOR_BYTES and ratio > limits.max_compression_ratio:
        _too_large("compression_ratio", round(ratio, 1), limits.max_compression_ratio)


def _too_large(limit: str, declared: float, allowed: float) -> None:
    raise ArtifactTooLarge(
        f"The archive declares {declared} ({limit}), over the limit of {allowed}.",
        details={"limit": limit, "declared": declared, "allowed": allowed},
    )


def vet(
    data: bytes, fmt: ArtifactFormat, schema: InputSchema | None, limits: SandboxLimits
) -> Vetted:
    """Open ``data`` and probe it on ``schema`` (None: one built from the feature names the
    model carries) in a limited child process; raise what the child found (UnsafeArtifact,
    InvalidArtifact, ValidationFailed), or ArtifactLimitExceeded if it ran out of memory or time
    (it is killed then)."""
    check_archive(data, limits)
    request = {
        "format": fmt,
        "schema": None if schema is None else schema.model_dump(mode="json"),
        "memory_bytes": limits.memory_bytes,
        "cpu_seconds": limits.cpu_seconds,
    }
    header = json.dumps(request).encode()
    child = _CHILDREN.take()
    try:
        _await_ready(child)
        out, err = child.communicate(_framed(header, data), timeout=limits.timeout_seconds)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        raise ArtifactLimitExceeded(
            f"Opening the artifact took more than {limits.timeout_seconds} s.",
            details={"limit": "timeout_seconds", "allowed": limits.timeout_seconds},
        ) from None
    if child.returncode != 0 or len(out) < 4:
        logger.info("sandbox exited %s: %s", child.returncode, err[-2000:].decode(errors="replace"))
        raise _died(child.returncode, limits)
    return _vetted(out)


def _await_ready(child: subprocess.Popen[bytes]) -> None:
    """Wait until the child has done its imports: the limits are for the upload, not for
    starting an interpreter on a busy machine."""
    assert child.stdout is not None
    ready, _, _ = select.select([child.stdout], [], [], _START_SECONDS)
    if not ready or os.read(child.stdout.fileno(), 1) != _READY:
        child.kill()
        _, err = child.communicate()
        raise RuntimeError(f"the sandbox did not start: {err[-2000:].decode(errors='replace')}")


def _framed(header: bytes, body: bytes) -> bytes:
    return len(header).to_bytes(4, "big") + header + body


def _unframed(payload: bytes) -> tuple[dict[str, Any], bytes]:
    size = int.from_bytes(payload[:4], "big")
    header: dict[str, Any] = json.loads(payload[4 : 4 + size])
    return header, payload[4 + size :]


def _died(returncode: int, limits: SandboxLimits) -> AppError:
    if returncode == -signal.SIGXCPU:
        return ArtifactLimitExceeded(
            f"Opening the artifact used more than {limits.cpu_seconds} s of CPU.",
            details={"limit": "cpu_seconds", "allowed": limits.cpu_seconds},
        )
    return ArtifactLimitExceeded(
        "Opening the artifact exhausted the sandbox's memory and killed it.",
        details={"limit": "memory_bytes", "allowed": limits.memory_bytes, "exit": returncode},
    )


def _vetted(payload: bytes) -> Vetted:
    header, form = _unframed(payload)
    error = header.get("error")
    if error is not None:
        kind = _ERRORS.get(error["code"], InvalidArtifact)
        raise kind(str(error["message"]), details=error.get("details"))
    return Vetted(
        schema=InputSchema.model_validate(header["schema"]),
        schema_source=header["schema_source"],
        output=OutputSpec.model_validate(header["output"]),
        trained_sklearn_version=header["trained_sklearn_version"],
        serving_form=form if header["serving_form"] else None,
        warnings=tuple(header["warnings"]),
    )


class _Children:
    """Starts sandbox children, keeping one started and waiting (its imports done) so that a
    registration pays neither the interpreter's start nor numpy's, scikit-learn's and skops'
    imports; each child opens one upload and exits."""

    def __init__(self) -> None:
        self._spare: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._registered = False

    def take(self) -> subprocess.Popen[bytes]:
        """A started child (the spare if it is alive); a new spare is started behind it."""
        with self._lock:
            child, self._spare = self._spare, None
            if child is not None and child.poll() is not None:
                child.communicate()  # it died waiting: collect it
                child = None
            if child is None:
                child = _start_child()
            self._spare = _start_child()
            if not self._registered:
                atexit.register(self.discard)
                self._registered = True
        return child

    def discard(self) -> None:
        """Stop the spare (at exit)."""
        with self._lock:
            child, self._spare = self._spare, None
        if child is not None:
            child.kill()
            child.communicate()


def _start_child() -> subprocess.Popen[bytes]:
    # The child needs no secret and no database: none of our settings go with it.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSERVE_")}
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    command = [sys.executable, "-m", "modelserve.registry.sandbox"]  # fixed: no input in it
    pipes = subprocess.PIPE
    return subprocess.Popen(command, stdin=pipes, stdout=pipes, stderr=pipes, env=env)  # noqa: S603


_CHILDREN = _Children()


# --- in the child ------------------------------------------------------------------------------


def _main() -> None:
    _warm_up()  # before the request arrives: see _Children
    results = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed goes to stderr, not into the answer
    results.write(_READY)
    results.flush()
    payload = sys.stdin.buffer.read()
    if not payload:
        return  # the parent went away before using this spare
    request, data = _unframed(payload)
    del payload
    _lower_limits(request["memory_bytes"], request["cpu_seconds"])
    form = b""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            given = request["schema"]
            schema = None if given is None else InputSchema.model_validate(given)
            header, form = _open(data, request["format"], schema)
        except MemoryError:
            message = "Opening the artifact needed more memory than the sandbox allows."
            details = {"limit": "memory_bytes", "allowed": request["memory_bytes"]}
            header = _error(ArtifactLimitExceeded(message, details=details))
        except AppError as exc:
            header = _error(exc)
        except Exception as exc:  # anything the model's code raised while probed
            error = f"{type(exc).__name__}: {exc}"[:500]
            header = _error(InvalidArtifact("The artifact cannot be opened.", {"error": error}))
    header["warnings"] = sorted({str(w.message)[:300] for w in caught})[:_MAX_WARNINGS]
    results.write(_framed(json.dumps(header, default=str).encode(), form))
    results.close()


def _warm_up() -> None:
    """Run one tiny registration through the restricted unpickler and the probe, so that their
    first-use costs are paid while the child waits, not while a caller does. skops is left to
    be imported by the uploads that need it: importing it costs most of a second, in every
    child, and most uploads are joblib or pickle files."""
    import pickle

    import numpy as np
    from sklearn.linear_model import LogisticRegression

    try:
        model = LogisticRegression().fit(np.eye(2), [0, 1])
        features = [{"name": n, "type": "number"} for n in ("a", "b")]
        schema = InputSchema.model_validate({"features": features})
        _open(pickle.dumps(model, protocol=5), "pickle", schema)
    except Exception:  # a warm-up only: the real request reports its own errors
        logger.exception("sandbox warm-up failed")


def _lower_limits(memory_bytes: int, cpu_seconds: int) -> None:
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    with open("/proc/self/statm") as statm:
        mapped = int(statm.read().split()[0]) * resource.getpagesize()
    ceiling = mapped + memory_bytes
    resource.setrlimit(resource.RLIMIT_AS, (ceiling, ceiling))


def _open(data: bytes, fmt: str, given: InputSchema | None) -> tuple[dict[str, Any], bytes]:
    loaded = load_artifact(data, fmt)  # type: ignore[arg-type]
    schema, source = complete_schema(given, loaded.estimator)
    output = probe.describe_output(loaded.estimator, schema)
    form = serving_form(loaded.estimator) if fmt == "skops" else None
    header = {
        "schema": schema.model_dump(mode="json"),
        "schema_source": source,
        "output": output.model_dump(mode="json"),
        "trained_sklearn_version": loaded.trained_sklearn_version,
        "serving_form": form is not None,
    }
    return header, form or b""


def _error(exc: AppError) -> dict[str, Any]:
    return {"error": {"code": exc.code, "message": exc.message, "details": exc.details}}


if __name__ == "__main__":
    _main()
