"""The sandbox's own process: a zygote that forks one limited child per upload.

``python -m modelserve.registry.sandbox_child FD`` is started by ``sandbox.Zygote`` with no
``MODELSERVE_*`` variable in its environment and one BLAS/OpenMP thread. It imports the loaders,
runs one tiny registration (so first-use costs are paid once), then waits on the control socket
``FD``: each message carries one end of a fresh socket pair, and a child is forked for it. The
child writes its pid, reads the framed request (format, schema, limits, the upload's bytes),
lowers its own limits (``RLIMIT_AS`` to what it already maps plus the memory allowed,
``RLIMIT_CPU``), opens and probes the upload, and writes back only data. When the child has
exited the zygote appends its exit status (``S`` and a signed 32-bit code: negative for a
signal) and closes the socket, so the parent reads one stream: pid, answer, status.

A fork of a warm process costs milliseconds; starting an interpreter and importing numpy,
scikit-learn and the loaders cost seconds of CPU per registration.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
import select
import signal
import socket
import sys
import warnings
from typing import Any, NoReturn

from modelserve.core.errors import AppError, ArtifactLimitExceeded, InvalidArtifact
from modelserve.registry import probe
from modelserve.registry.formats.schema import complete_schema
from modelserve.registry.loaders import load_artifact, serving_form
from modelserve.registry.schemas import InputSchema

logger = logging.getLogger(__name__)

STATUS = b"S"
"""Marks the exit status the zygote appends after a child's answer."""
_MAX_WARNINGS = 20


def frame(header: bytes, body: bytes) -> bytes:
    """``header`` (JSON) and ``body`` as one message: header length, header, body."""
    return len(header).to_bytes(4, "big") + header + body


def unframe(payload: bytes) -> tuple[dict[str, Any], bytes]:
    """The JSON header and the body of a framed message."""
    size = int.from_bytes(payload[:4], "big")
    header: dict[str, Any] = json.loads(payload[4 : 4 + size])
    return header, payload[4 + size :]


def _zygote(control: socket.socket) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is for the server
    _warm_up()
    running: dict[int, tuple[int, socket.socket]] = {}  # pidfd -> (pid, job socket)
    while True:
        ready, _, _ = select.select([control.fileno(), *running], [], [])
        for fd in ready:
            if fd != control.fileno():
                _report_exit(*running.pop(fd))
                os.close(fd)
                continue
            message, fds, _, _ = socket.recv_fds(control, 1, 1)
            if not message:
                return  # the serving process is gone
            job = socket.socket(fileno=fds[0])
            pid = os.fork()
            if pid == 0:
                control.close()
                for pidfd, (_, other) in running.items():
                    os.close(pidfd)
                    other.close()
                _child(job)
            running[os.pidfd_open(pid)] = (pid, job)


def _report_exit(pid: int, job: socket.socket) -> None:
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    _drain(job)  # closing on unread bytes would reset the connection, losing the status
    with contextlib.suppress(OSError):  # the parent may have stopped listening
        job.sendall(STATUS + code.to_bytes(4, "big", signed=True))
    job.close()


def _drain(job: socket.socket) -> None:
    job.setblocking(False)
    with contextlib.suppress(OSError):
        while job.recv(1 << 20):
            pass
    job.setblocking(True)


def _child(job: socket.socket) -> NoReturn:
    code = 0
    try:
        os.dup2(2, 1)  # anything printed goes to stderr, not into the answer
        job.sendall(os.getpid().to_bytes(4, "big"))
        job.sendall(_answer(_receive(job)))
    except BaseException:  # the parent went away, or something broke outside _answer
        code = 1
    finally:
        os._exit(code)


def _receive(job: socket.socket) -> bytes:
    chunks: list[bytes] = []
    while chunk := job.recv(1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _answer(payload: bytes) -> bytes:
    request, data = unframe(payload)
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
    return frame(json.dumps(header, default=str).encode(), form)


def _warm_up() -> None:
    """Run one tiny registration through the restricted unpickler and the probe, and import
    skops, so that first-use costs are paid once, in the zygote, not by every upload."""
    import pickle

    import numpy as np
    import skops.io  # noqa: F401
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
    _zygote(socket.socket(fileno=int(sys.argv[1])))
