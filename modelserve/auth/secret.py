"""The signing key: from settings, else generated once into the data dir (mode 0600)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from modelserve.config import MIN_SECRET_BYTES, Settings

SECRET_FILE = "secret_key"  # noqa: S105 - a file name, not a secret


def load_secret_key(settings: Settings) -> bytes:
    """``MODELSERVE_SECRET_KEY`` if set; otherwise the data dir's key file, created on first use.

    Refuses a key file shorter than 32 bytes or readable by others.
    """
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value().encode()
    path = settings.ensure_data_dir() / SECRET_FILE
    if not path.exists():
        _create(path)
    key = path.read_bytes().strip()
    if len(key) < MIN_SECRET_BYTES:
        raise RuntimeError(f"{path} holds fewer than {MIN_SECRET_BYTES} bytes; refusing it")
    if path.stat().st_mode & 0o077:
        raise RuntimeError(f"{path} is readable by others; chmod 600 it")
    return key


def _create(path: Path) -> None:
    key = secrets.token_urlsafe(48).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race; use its key
        return
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
