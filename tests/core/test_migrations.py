"""Migrations run both ways on both databases, and match the ORM models exactly."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from modelserve.core import migrate
from modelserve.core.db import SQLITE_PAGE_BYTES, Database
from modelserve.models import metadata

TABLES = {"models", "model_versions", "model_artifacts", "model_aliases", "predictions"}


def test_base_to_head_to_base(empty_database_url: str) -> None:
    db = Database(empty_database_url, pool_size=1)
    try:
        migrate.upgrade(empty_database_url)
        assert set(inspect(db.engine).get_table_names()) >= TABLES
        assert migrate.is_at_head(db.engine)
        migrate.downgrade(empty_database_url, "base")
        assert not TABLES & set(inspect(db.engine).get_table_names())
        assert migrate.current_revision(db.engine) is None
        migrate.upgrade(empty_database_url)
        assert migrate.is_at_head(db.engine)
    finally:
        db.dispose()


def test_a_new_sqlite_database_has_large_pages(empty_database_url: str) -> None:
    """The prediction log's large records span fewer pages (see ``SQLITE_PAGE_BYTES``)."""
    if not empty_database_url.startswith("sqlite"):
        pytest.skip("SQLite's page size")
    db = Database(empty_database_url, pool_size=1)
    try:
        migrate.upgrade(empty_database_url)
        with db.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA page_size").scalar() == SQLITE_PAGE_BYTES
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        db.dispose()


def test_autogenerate_finds_no_difference(database_url: str) -> None:
    db = Database(database_url, pool_size=1)
    try:
        with db.engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "target_metadata": metadata}
            )
            assert compare_metadata(context, metadata) == []
    finally:
        db.dispose()
