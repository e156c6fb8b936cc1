"""Open an untrusted upload in a child process with memory, CPU and wall-clock limits.

At registration the artifact is unzipped, unpickled or skops-loaded, and probed on the schema's
rows in a child forked from a zygote process (``sandbox_child``: started without the
``MODELSERVE_*`` environment, the loaders and skops imported, so a registration pays a fork, not
an interpreter start). The child lowers its own limits first (``RLIMIT_AS`` to what it already
maps plus ``memory_bytes``, ``RLIMIT_CPU``) and answers only data: the output description, the
scikit-learn version the file names, warnings, and for skops the serving-form bytes. They come
back as bytes and JSON, never unpickled: the parent then loads the model itself with the same
restricted loaders (a skops upload from its serving form). A zip archive's declared sizes are
checked here before any child starts, so an archive bomb is refused without inflating a byte.
"""

from __future__ import annotations

import atexit
import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from modelserve.config import Settings
from modelserve.core.errors import (
    AppError,
    ArtifactLimitExceeded,
    ArtifactTooLarge,
    InvalidArtifact,
    UnsafeArtifact,
    ValidationFailed,
)
from modelserve.registry.formats.libraries import LibraryMissing
from modelserve.registry.loaders import ArtifactFormat
from modelserve.registry.sandbox_child import STATUS, frame, unframe
from modelserve.registry.schemas import InputSchema, OutputSpec

logger = logging.getLogger(__name__)

RATIO_FLOOR_BYTES = 16 * 1024**2
"""Archives inflating to less than this are not held to the compression-ratio limit."""
MAX_MEMBERS = 100_000
"""Most members an archive may declare (read from its end record, before its directory)."""
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
    with _ZYGOTE.fork() as job:
        pid = int.from_bytes(_read_exactly(job, 4, _START_SECONDS), "big")
        try:
            answer = _exchange(job, frame(json.dumps(request).encode(), data), limits)
        except TimeoutError:
            os.kill(pid, signal.SIGKILL)  # still the zygote's unreaped child: it cannot be reused
            _read_to_end(job, _START_SECONDS)
            raise ArtifactLimitExceeded(
                f"Opening the artifact took more than {limits.timeout_seconds} s.",
                details={"limit": "timeout_seconds", "allowed": limits.timeout_seconds},
            ) from None
    if len(answer) < 5 or answer[-5:-4] != STATUS:
        raise RuntimeError("the sandbox zygote went away during a registration")
    returncode = int.from_bytes(answer[-4:], "big", signed=True)
    if returncode != 0 or len(answer) < 9:
        logger.info("sandbox child exited %s", returncode)
        raise _died(returncode, limits)
    return _vetted(answer[:-5])


def _exchange(job: socket.socket, request: bytes, limits: SandboxLimits) -> bytes:
    """Send the request and read everything back, within the timeout (TimeoutError)."""
    deadline = time.monotonic() + limits.timeout_seconds
    job.settimeout(limits.timeout_seconds)
    try:
        job.sendall(request)
        job.shutdown(socket.SHUT_WR)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the child is gone already: what it left, and its exit status, tell why
    except OSError as exc:
        raise TimeoutError from exc
    return _read_to_end(job, deadline - time.monotonic())


def _read_exactly(job: socket.socket, size: int, timeout: float) -> bytes:
    job.settimeout(timeout)
    data = b""
    while len(data) < size:
        chunk = job.recv(size - len(data))
        if not chunk:
            raise RuntimeError("the sandbox did not start a child")
        data += chunk
    return data


def _read_to_end(job: socket.socket, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    while True:
        job.settimeout(max(deadline - time.monotonic(), 0.0))
        try:
            chunk = job.recv(1 << 20)
        except (TimeoutError, BlockingIOError):
            raise TimeoutError from None
        except ConnectionResetError:
            chunk = b""  # the zygote closed with our unread request in its queue
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


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
    header, form = unframe(payload)
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


class Zygote:
    """The process uploads are opened under (``sandbox_child``), started on first use and
    again if it dies; it forks one limited child per upload, so a registration pays a fork,
    not an interpreter start and the imports of numpy, scikit-learn and skops."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._owner = 0
        self._lock = threading.Lock()
        self._registered = False

    @contextmanager
    def fork(self) -> Iterator[socket.socket]:
        """A socket to a freshly forked child (closed afterwards)."""
        with self._lock:
            job = self._send_job()
        try:
            yield job
        finally:
            job.close()

    def _send_job(self) -> socket.socket:
        for _ in range(2):
            control = self._started()
            ours, theirs = socket.socketpair()
            try:
                socket.send_fds(control, [b"J"], [theirs.fileno()])
                return ours
            except OSError:  # it died: start another
                ours.close()
                self._stop()
            finally:
                theirs.close()
        raise RuntimeError("the sandbox zygote cannot be started")

    def _started(self) -> socket.socket:
        alive = self._process is not None and self._process.poll() is None
        if self._control is not None and alive and self._owner == os.getpid():
            return self._control
        self._stop()
        ours, theirs = socket.socketpair()
        # It needs no secret and no database: none of our settings go with it.
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSERVE_")}
        env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        command = [sys.executable, "-m", "modelserve.registry.sandbox_child", str(theirs.fileno())]
        self._process = subprocess.Popen(  # noqa: S603 (fixed command: no input in it)
            command, stdin=subprocess.DEVNULL, env=env, pass_fds=(theirs.fileno(),)
        )
        theirs.close()
        self._control, self._owner = ours, os.getpid()
        if not self._registered:
            atexit.register(self.stop)
            self._registered = True
        return ours

    def stop(self) -> None:
        """Stop the zygote (children already forked finish their upload)."""
        with self._lock:
            self._stop()

    def _stop(self) -> None:
        control, process, self._control, self._process = self._control, self._process, None, None
        if control is not None:
            control.close()  # it exits when it reads the end of its control socket
        if process is not None and self._owner == os.getpid():
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


_ZYGOTE = Zygote()
