"""What ``modelserve serve`` settles before it serves: settings that load (secrets from files
included), a writable data dir, the mounted API key, the model directory, the auth-off warning.

Container platforms mount secrets as files and may make the root filesystem read-only; each
refusal here says what to mount or fix, and never echoes a secret."""

from __future__ import annotations

import logging
import secrets
import tempfile
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from modelserve.audit.service import CLI_ACTOR, record
from modelserve.auth.caller import Caller
from modelserve.auth.models import ApiKey
from modelserve.auth.tokens import api_key_prefix, sha256_token
from modelserve.config import Settings, read_secret_file
from modelserve.core import migrate
from modelserve.core.db import Database
from modelserve.core.errors import AppError, NotFound
from modelserve.inference.cache import ModelCache
from modelserve.inference.service import InferenceService
from modelserve.lifecycle.service import LifecycleService, LifecycleSettings
from modelserve.predictions.service import PredictionLog
from modelserve.registry.model_dir import register_model_dir
from modelserve.registry.service import DEFAULT_ALIAS, RegistryService
from modelserve.users.models import Role
from modelserve.users.schemas import UserCreate
from modelserve.users.service import UserService

logger = logging.getLogger(__name__)

STARTUP_LOCK = migrate.MIGRATION_LOCK + 1
"""Held while replicas starting together register the model directory and seed the key."""
MOUNTED_KEY_USER = "mounted-key"
"""The prediction-only user owning the key of ``MODELSERVE_API_KEY_FILE``."""
MESH_USER = "mesh"
"""The prediction-only user that unauthenticated requests act as when auth is disabled."""
AUTH_DISABLED_WARNING = (
    "WARNING: MODELSERVE_AUTH_DISABLED is set: requests without credentials are answered as "
    f"the prediction-only user {MESH_USER!r}. Only do this behind a service mesh that "
    "authenticates every caller."
)


class StartupRefused(AppError):
    """The server cannot start as configured; the message says what to change."""

    code = "startup_refused"


def check_data_dir(data_dir: Path) -> None:
    """Refuse a data dir this process cannot write: spill files, the generated secret key and
    the default SQLite database live there, so a read-only one would fail later, worse."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=data_dir, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise StartupRefused(
            f"The data dir {data_dir} is not writable ({exc.strerror or exc}). Mount a writable "
            "volume there (MODELSERVE_DATA_DIR): it holds the prediction log's spill files, the "
            "generated secret key and the default SQLite database."
        ) from None


def ensure_user(session: Session, username: str, role: Role) -> int:
    """The id of ``username``, created (with a random password nobody knows) if missing."""
    users = UserService(session)
    try:
        return users.find(username).id
    except NotFound:
        data = UserCreate(username=username, password=secrets.token_urlsafe(24), role=role)
        return users.create(data, CLI_ACTOR).id


def seed_api_key(db: Database, path: Path) -> None:
    """Make the key in ``path`` (``msk_<8 hex>_<secret>``, e.g. a mounted secret) a valid key
    of the prediction-only user ``mounted-key``; nothing if it already is one."""
    key = read_secret_file(path, "API_KEY", 40)
    prefix = api_key_prefix(key)
    if prefix is None:
        raise StartupRefused(
            f"MODELSERVE_API_KEY_FILE {path} does not hold a key shaped msk_<8 hex>_<secret>"
        )
    with db.transaction() as session:
        found = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
        if found is not None:
            if found.key_hash != sha256_token(key):
                raise StartupRefused(
                    f"MODELSERVE_API_KEY_FILE {path}: another key has the same prefix"
                )
            return
        user_id = ensure_user(session, MOUNTED_KEY_USER, Role.USER)
        row = ApiKey(user_id=user_id, name="mounted", prefix=prefix, key_hash=sha256_token(key))
        session.add(row)
        session.flush()
        record(session, "api_key.created", CLI_ACTOR, f"api_key:{row.id}", prefix=prefix)


def anonymous_caller(db: Database) -> Caller:
    """The caller requests without credentials act as when auth is disabled (warned about)."""
    logger.warning(AUTH_DISABLED_WARNING)
    with db.transaction() as session:
        user_id = ensure_user(session, MESH_USER, Role.USER)
    return Caller(user_id=user_id, username=MESH_USER, role=Role.USER)


def prepare(settings: Settings) -> list[str]:
    """Everything ``serve`` settles before serving; returns what to tell the operator.

    Refuses an unwritable data dir; applies migrations; registers the model directory (and
    points ``production`` at it) and seeds the mounted API key, if configured."""
    check_data_dir(settings.data_dir)
    notes = [AUTH_DISABLED_WARNING] if settings.auth_disabled else []
    if settings.model_dir is None and settings.api_key_file is None:
        return notes
    url = settings.resolved_database_url
    migrate.upgrade(url)
    db = Database(url, pool_size=2)
    try:
        with migrate.advisory_lock(url, STARTUP_LOCK):
            if settings.api_key_file is not None:
                seed_api_key(db, settings.api_key_file)
                notes.append(f"API key from {settings.api_key_file} accepted")
            if settings.model_dir is not None:
                name, number = register_model_dir(
                    db, settings.model_dir, settings.model_name, settings.default_runtime
                )
                _point_production(db, settings, name, number)
                notes.append(f"serving {settings.model_dir} as {name} v{number}")
    finally:
        db.dispose()
    return notes


def _point_production(db: Database, settings: Settings, name: str, number: int) -> None:
    with db.transaction() as session:
        try:
            aliased: int | None = RegistryService(session).resolve(name, alias=DEFAULT_ALIAS).number
        except NotFound:
            aliased = None
    if aliased == number:
        return
    inference = InferenceService(db, ModelCache(2), PredictionLog(db), settings)
    LifecycleService(db, inference.warm, LifecycleSettings.of(settings)).move_alias(
        name, DEFAULT_ALIAS, number
    )
