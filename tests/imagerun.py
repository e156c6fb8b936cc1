"""Run what the container image runs, as a process on this machine: the entrypoint script with
the environment the Dockerfile sets (paths moved to temp dirs), as a non-root user like the
image's. The image itself cannot be built here (no Docker engine)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
ENTRYPOINT = ROOT / "scripts" / "entrypoint.sh"
NOBODY = 65534


def dockerfile_instructions(stage: int = -1) -> list[tuple[str, str]]:
    """(instruction, arguments) of one build stage (the last: the runtime), continuation lines
    joined and comments dropped."""
    lines: list[str] = []
    for raw in DOCKERFILE.read_text().splitlines():
        if raw.lstrip().startswith("#"):
            continue
        if lines and lines[-1].endswith("\\"):
            lines[-1] = lines[-1][:-1] + " " + raw.strip()
        elif raw.strip():
            lines.append(raw.strip())
    stages: list[list[tuple[str, str]]] = [[]]
    for line in lines:
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            stages.append([])
        stages[-1].append((word.upper(), rest.strip()))
    return stages[1:][stage]


def image_env() -> dict[str, str]:
    """The runtime stage's ENV, as the image's processes see it."""
    env: dict[str, str] = {}
    for word, rest in dockerfile_instructions():
        if word == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def as_image_user() -> list[str]:
    """A command prefix running as a non-root user (nobody), as the image runs, when we are
    root (CI is); otherwise we are already not root."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]


@contextmanager
def image_dirs() -> Iterator[Path]:
    """A temp dir the image user can enter (pytest's are private to root)."""
    with tempfile.TemporaryDirectory(prefix="modelserve-image-") as name:
        base = Path(name)
        base.chmod(0o755)
        yield base


def give_to_image_user(path: Path, mode: int) -> Path:
    """chmod ``path``, and make it the image user's when we run it as another user."""
    path.chmod(mode)
    if os.geteuid() == 0:
        os.chown(path, NOBODY, NOBODY)
    return path


def entrypoint(
    args: list[str], *, data_dir: Path, tmp_dir: Path, port: int, log: Path, **env: str
) -> subprocess.Popen[bytes]:
    """Start the entrypoint with the image's environment (data dir, tmp and port moved here,
    bound to loopback) plus ``env``; output to ``log``."""
    image = image_env()
    bin_dir = str(Path(sys.executable).parent)
    image["PATH"] = (
        image["PATH"].replace("/opt/modelserve/bin", bin_dir).replace("${PATH}", os.environ["PATH"])
    )
    full = {k: v for k, v in os.environ.items() if not k.startswith(("MODELSERVE_", "GUNICORN_"))}
    full |= image | {
        "TMPDIR": str(tmp_dir),
        "MODELSERVE_DATA_DIR": str(data_dir),
        "MODELSERVE_HOST": "127.0.0.1",
        "MODELSERVE_PORT": str(port),
        **env,
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            [*as_image_user(), "sh", str(ENTRYPOINT), *args],
            env=full,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=data_dir.parent,
        )
