"""Rollback and traffic policies from the command line, followed by a running server."""

from __future__ import annotations

import json
import time
from pathlib import Path

from factories import fit_iris, iris_instance, iris_schema, to_bytes
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from modelserve.cli.main import app
from modelserve.config import Settings

runner = CliRunner()


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def register_twice(tmp_path: Path) -> None:
    artifact = tmp_path / "iris.skops"
    artifact.write_bytes(to_bytes(fit_iris(), "skops"))
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(iris_schema()))
    for _ in range(2):
        invoke(
            "models", "register", str(artifact), "--name", "iris", "--schema", str(schema),
            "--alias", "production",
        )  # fmt: skip


def served_version(client: TestClient, expected: int) -> int:
    """The version the server answers with, once it has followed the CLI's change."""
    deadline = time.monotonic() + 30
    while True:
        body = client.post("/v1/models/iris/predict", json={"instances": [iris_instance()]})
        version: int = body.json()["version"]
        if version == expected or time.monotonic() > deadline:
            return version
        time.sleep(0.02)


def test_rollback_moves_production_back(
    cli_env: Settings, client: TestClient, tmp_path: Path
) -> None:
    register_twice(tmp_path)
    assert served_version(client, 2) == 2
    assert "iris@production -> v1 (was v2)" in invoke("models", "rollback", "iris")
    assert served_version(client, 1) == 1
    assert "iris@production -> v2 (was v1)" in invoke(
        "models", "rollback", "iris", "--alias", "production"
    )
    events = client.get("/v1/audit", params={"action": "model.alias_moved"}).json()["data"]
    assert [e["details"]["version"] for e in events] == [2, 1, 2, 1]


def test_rollback_without_history_is_a_clear_error(cli_env: Settings, tmp_path: Path) -> None:
    artifact = tmp_path / "iris.skops"
    artifact.write_bytes(to_bytes(fit_iris(), "skops"))
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(iris_schema()))
    invoke(
        "models", "register", str(artifact), "--name", "iris", "--schema", str(schema),
        "--alias", "production",
    )  # fmt: skip
    result = runner.invoke(app, ["models", "rollback", "iris"])
    assert result.exit_code == 1
    assert "nothing to roll back to" in result.output
    result = runner.invoke(app, ["models", "rollback", "iris", "--alias", "staging"])
    assert result.exit_code == 1
    assert "not_found" in result.output


def test_traffic_commands(cli_env: Settings, client: TestClient, tmp_path: Path) -> None:
    register_twice(tmp_path)
    invoke("models", "rollback", "iris")  # production -> v1
    assert "shadow v2" in invoke("models", "traffic", "iris", "--shadow", "2")
    shown = invoke("models", "traffic", "iris")
    assert "iris@production -> v1; shadow v2" in shown
    out = invoke("models", "traffic", "iris", "--canary", "2", "--percent", "100")
    assert "canary v2 for 100% of callers" in out
    assert "shadow" not in out  # a policy is set whole: the shadow was not repeated
    assert served_version(client, 2) == 2
    cleared = invoke("models", "traffic", "iris", "--clear")
    assert "cleared the canary and shadow of iris@production" in cleared
    assert cleared.strip().endswith("-> v1")
    assert served_version(client, 1) == 1
    bad = runner.invoke(app, ["models", "traffic", "iris", "--canary", "7"])
    assert bad.exit_code == 1
    assert "not_found" in bad.output
