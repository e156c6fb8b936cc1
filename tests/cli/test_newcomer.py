"""What a newcomer meets first: bad settings, a busy port, a directory with no database,
``--help`` and ``modelserve info``."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from modelserve.cli.main import app
from modelserve.config import Settings

runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["serve", "--port", "99999"], {}),
        (["demo", "--port", "99999"], {}),
        (["serve"], {"MODELSERVE_PORT": "abc"}),
    ],
)
def test_an_invalid_setting_is_one_line_and_exit_2(
    args: list[str], env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELSERVE_DATA_DIR", str(tmp_path / "data"))
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "port" in lines[0].lower()
    assert "Traceback" not in result.output
    assert not (tmp_path / "data").exists()  # refused before anything was created


def test_a_port_in_use_is_said_before_serving(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "modelserve", "serve", "--port", str(port)],
            env=os.environ | {"MODELSERVE_DATA_DIR": str(tmp_path / "data")},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "already in use" in done.stderr
    assert "serving on" not in done.stdout
    assert "startup complete" not in done.stdout + done.stderr


def test_read_only_commands_create_no_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "elsewhere" / ".modelserve"
    monkeypatch.setenv("MODELSERVE_DATA_DIR", str(data))
    monkeypatch.delenv("MODELSERVE_DATABASE_URL", raising=False)
    for args in (["models", "list"], ["models", "show", "iris"], ["users", "list"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 1, result.output
        assert "No modelserve database at" in result.output
    current = runner.invoke(app, ["db", "current"])
    assert "current: none" in current.output
    assert not data.exists()


def test_a_command_that_creates_a_database_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELSERVE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("MODELSERVE_DATABASE_URL", raising=False)
    first = runner.invoke(app, ["users", "create", "ana"], input="a long password\n")
    assert first.exit_code == 0, first.output
    assert "created a new database at sqlite:///" in first.output
    second = runner.invoke(app, ["users", "create", "bo"], input="a long password\n")
    assert "created a new database" not in second.output


def _commands(group: Any, path: list[str]) -> list[tuple[list[str], Any]]:
    found: list[tuple[list[str], Any]] = []
    for name, command in group.commands.items():
        found.append(([*path, name], command))
        if hasattr(command, "commands"):
            found.extend(_commands(command, [*path, name]))
    return found


def test_every_help_shows_flags_as_flags_with_their_meaning() -> None:
    for path, command in _commands(typer.main.get_command(app), []):
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, (path, result.output)
        assert "<bool>" not in result.output, (path, result.output)
        for param in command.params:
            if param.param_type_name == "option":
                assert param.help, (path, param.name)


def test_info_shows_settings_masked_and_their_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cret-" * 6
    monkeypatch.setenv("MODELSERVE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MODELSERVE_SECRET_KEY", secret)
    monkeypatch.setenv("MODELSERVE_PORT", "8123")
    monkeypatch.setenv("MODELSERVE_DATABASE_URL", "postgresql://ana:hunter2@127.0.0.1:1/modelserve")
    result = runner.invoke(app, ["info"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert secret not in result.output
    assert "hunter2" not in result.output
    assert "postgresql+psycopg://ana:***@127.0.0.1:1/modelserve" in result.output
    assert "cannot connect" in result.output
    assert re.search(r"\bport\b\W+8123\W+MODELSERVE_PORT\b", result.output), result.output
    assert str((tmp_path / "data").resolve()) in result.output


def test_info_on_the_test_database_shows_its_migrations(cli_env: Settings) -> None:
    result = runner.invoke(app, ["info"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "migrations: at head" in result.output
