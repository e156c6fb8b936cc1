"""Fixtures: a fresh migrated database per test, on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from factories import create_key, create_user
from fastapi.testclient import TestClient
from processes import running_server
from sqlalchemy.engine import make_url

from modelserve.app import create_app
from modelserve.config import Settings
from modelserve.core import migrate
from modelserve.core.db import Database
from modelserve.users.models import Role

PG_URL = os.environ.get(
    "MODELSERVE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BACKENDS = ("sqlite", "postgresql")
PRODUCT_DEFAULT_RUNTIME = Settings.model_fields["default_runtime"].default


def _pg_conninfo(database: str) -> str:
    url = make_url(PG_URL).set(drivername="postgresql", database=database)
    return url.render_as_string(hide_password=False)


def _pg_url(database: str) -> str:
    return make_url(PG_URL).set(database=database).render_as_string(hide_password=False)


def _pg_admin(sql: str) -> None:
    with psycopg.connect(
        _pg_conninfo(make_url(PG_URL).database or "postgres"), autocommit=True
    ) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def postgres_available() -> bool:
    """Whether the test PostgreSQL answers; under CI it must."""
    try:
        _pg_admin("SELECT 1")
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required under CI: {exc}")
        return False
    return True


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once per session, copied for each test."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    migrate.upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_template(postgres_available: bool) -> Iterator[str]:
    """A PostgreSQL database migrated to head once per session, cloned for each test."""
    if not postgres_available:
        pytest.skip("PostgreSQL not reachable")
    name = f"modelserve_tmpl_{_worker()}_{uuid.uuid4().hex[:8]}"
    _pg_admin(f'CREATE DATABASE "{name}"')
    migrate.upgrade(_pg_url(name))
    yield name
    _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Which database this test runs on."""
    return str(request.param)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database at the newest migration."""
    if backend == "sqlite":
        path = tmp_path / "modelserve.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    template = request.getfixturevalue("postgres_template")
    name = f"modelserve_t_{uuid.uuid4().hex[:12]}"
    _pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    try:
        yield _pg_url(name)
    finally:
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def empty_database_url(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[str]:
    """A fresh database with no tables at all."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    if not request.getfixturevalue("postgres_available"):
        pytest.skip("PostgreSQL not reachable")
    name = f"modelserve_e_{uuid.uuid4().hex[:12]}"
    _pg_admin(f'CREATE DATABASE "{name}"')
    try:
        yield _pg_url(name)
    finally:
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Settings for a test server on the fresh database. New models start on scikit-learn:
    most tests check answers bit for bit against scikit-learn in process; the onnx default
    (``PRODUCT_DEFAULT_RUNTIME``) is tested in tests/registry/test_onnx.py and by every test
    that starts a server process."""
    return Settings(
        data_dir=tmp_path / "data", database_url=database_url, default_runtime="sklearn"
    )


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    """Direct database access, for arranging state and checking what was stored."""
    database = Database(settings.resolved_database_url, pool_size=2)
    yield database
    database.dispose()


@pytest.fixture
def admin_key(db: Database) -> str:
    """An API key of an admin user."""
    return create_key(db, create_user(db, "root-admin", Role.ADMIN))


@pytest.fixture
def client(settings: Settings, admin_key: str) -> Iterator[TestClient]:
    """An HTTP client on a started app (lifespan run), authenticated as an admin."""
    app = create_app(settings)
    headers = {"X-API-Key": admin_key}
    with TestClient(app, raise_server_exceptions=False, headers=headers) as test_client:
        yield test_client


ClientFactory = Callable[..., AbstractContextManager[TestClient]]


@pytest.fixture
def make_client(settings: Settings, admin_key: str) -> ClientFactory:
    """Start an app with some settings changed, as an admin client."""

    @contextmanager
    def make(**overrides: Any) -> Iterator[TestClient]:
        app = create_app(settings.model_copy(update=overrides))
        headers = {"X-API-Key": admin_key}
        with TestClient(app, raise_server_exceptions=False, headers=headers) as test_client:
            yield test_client

    return make


@pytest.fixture
def anon(client: TestClient) -> TestClient:
    """A client on the same running app, without credentials."""
    return TestClient(client.app, raise_server_exceptions=False)


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Point CLI commands (which read the environment) at the test database."""
    monkeypatch.setenv("MODELSERVE_DATABASE_URL", settings.resolved_database_url)
    monkeypatch.setenv("MODELSERVE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("COLUMNS", "200")  # rich tables are not truncated
    monkeypatch.setenv("MODELSERVE_DEFAULT_RUNTIME", settings.default_runtime)  # as `settings`
    return settings


@pytest.fixture
def server(empty_database_url: str, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """``modelserve serve`` on an unmigrated database, in its own process."""
    with running_server(empty_database_url, tmp_path / "data") as (base, _):
        db = Database(empty_database_url, pool_size=1)
        key = create_key(db, create_user(db, "ops", Role.MAINTAINER))
        db.dispose()
        yield base, {"X-API-Key": key}
