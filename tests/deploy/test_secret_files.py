"""Secrets from files (Docker and Kubernetes secrets are files): read, refused when unreadable
or too short, never shown in a message."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from modelserve.cli.main import app
from modelserve.config import Settings

SECRET = "s3cr3t-" + "k" * 40
URL_SECRET = "postgresql://app:hunter2-password@db.internal:5432/modelserve"


def _file(tmp_path: Path, name: str, content: str, mode: int = 0o600) -> Path:
    path = tmp_path / name
    path.write_text(content + "\n")
    path.chmod(mode)
    return path


def test_secret_key_and_database_url_come_from_files(tmp_path: Path) -> None:
    settings = Settings(
        secret_key_file=_file(tmp_path, "key", SECRET),
        database_url_file=_file(tmp_path, "url", URL_SECRET),
        listen_database_url_file=_file(tmp_path, "listen", URL_SECRET.replace("db.", "pg.")),
    )
    assert settings.secret_key is not None
    assert settings.secret_key.get_secret_value() == SECRET  # stripped of the newline
    assert settings.database_url == URL_SECRET.replace("postgresql://", "postgresql+psycopg://")
    assert settings.resolved_listen_url.startswith("postgresql+psycopg://app:hunter2-password@pg.")


def test_listen_url_defaults_to_the_database_url() -> None:
    settings = Settings(database_url=URL_SECRET)
    assert settings.resolved_listen_url == settings.resolved_database_url


def _refusal(**fields: object) -> str:
    with pytest.raises(ValidationError) as caught:
        Settings(**fields)  # type: ignore[arg-type]
    return str(caught.value)


def test_a_short_secret_key_file_is_refused_without_showing_it(tmp_path: Path) -> None:
    message = _refusal(secret_key_file=_file(tmp_path, "key", "short-secret-value"))
    assert "fewer than 32 bytes" in message
    assert str(tmp_path / "key") in message
    assert "short-secret-value" not in message


def test_an_unreadable_file_is_refused(tmp_path: Path) -> None:
    message = _refusal(database_url_file=tmp_path / "missing")
    assert "cannot be read" in message
    assert "missing" in message


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_a_file_without_read_permission_is_refused(tmp_path: Path) -> None:
    message = _refusal(secret_key_file=_file(tmp_path, "key", SECRET, mode=0o000))
    assert "cannot be read" in message


def test_an_empty_database_url_file_is_refused(tmp_path: Path) -> None:
    message = _refusal(database_url_file=_file(tmp_path, "url", ""))
    assert "MODELSERVE_DATABASE_URL_FILE" in message


def test_a_secret_and_its_file_together_are_refused(tmp_path: Path) -> None:
    message = _refusal(secret_key=SECRET, secret_key_file=_file(tmp_path, "key", SECRET))
    assert "not both" in message
    assert SECRET not in message


def test_serve_refuses_a_bad_secret_file_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELSERVE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MODELSERVE_SECRET_KEY_FILE", str(_file(tmp_path, "key", "tooshort-xyz")))
    monkeypatch.setenv("MODELSERVE_DATABASE_URL", URL_SECRET)
    monkeypatch.setenv("COLUMNS", "400")
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 2  # a configuration error, like any usage error
    assert "MODELSERVE_SECRET_KEY_FILE" in result.output
    assert "fewer than 32 bytes" in result.output
    assert "tooshort-xyz" not in result.output
    assert "hunter2" not in result.output
    assert not (tmp_path / "data").exists()  # refused before touching anything
