"""Fixtures of the deployment tests: an empty PostgreSQL database of their own."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy.engine import make_url

PG_URL = os.environ.get(
    "MODELSERVE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _admin(sql: str) -> None:
    url = make_url(PG_URL).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


@pytest.fixture
def pg_empty_url() -> Iterator[str]:
    """A new PostgreSQL database with no tables (skipped without PostgreSQL)."""
    try:
        _admin("SELECT 1")
    except psycopg.Error:
        pytest.skip("PostgreSQL not reachable")
    name = f"modelserve_d_{uuid.uuid4().hex[:12]}"
    _admin(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
