"""Run what the container image runs, as a process on this machine: the entrypoint script with
the environment the Dockerfile sets (paths moved to temp dirs). The image itself cannot be built
here (no Docker engine). It runs as the current user: this machine's Python lives under /root,
which the image's non-root user could not read."""

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


def read_only_mount(path: Path) -> tuple[str, ...]:
    """A command prefix that runs with ``path`` read-only, as a read-only volume is: a private
    read-only bind mount when we run as root (CI does; root writes through permissions), else
    mode 555."""
    if os.geteuid() == 0:
        script = 'mount --bind -o ro "$0" "$0" && exec "$@"'
        return ("unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(path))
    path.chmod(0o555)
    return ()


@contextmanager
def image_dirs() -> Iterator[Path]:
    """A temp dir outside pytest's (which a bind mount in another namespace need not know)."""
    with tempfile.TemporaryDirectory(prefix="modelserve-image-") as name:
        yield Path(name)


def entrypoint(
    args: list[str],
    *,
    data_dir: Path,
    tmp_dir: Path,
    port: int,
    log: Path,
    prefix: tuple[str, ...] = (),
    **env: str,
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
        "COLUMNS": "400",  # one line per message, as the tests read them
        **env,
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            [*prefix, "sh", str(ENTRYPOINT), *args],
            env=full,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=data_dir.parent,
        )
