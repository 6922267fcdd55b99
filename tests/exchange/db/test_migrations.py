"""The migrated schema equals the models, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from exchange.db.schema import all_metadata


def test_migrated_schema_equals_models(engine):
    md = all_metadata()
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), md)
    assert diff == [], f"migrations and models differ: {diff[:5]}"


def test_every_table_exists(engine):
    names = set(inspect(engine).get_table_names())
    assert {"resource_current", "resource_version"} <= names
    assert set(all_metadata().tables) <= names


def test_sqlite_uses_wal(engine):
    if engine.dialect.name != "sqlite":
        pytest.skip("WAL is a SQLite setting")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar().lower() == "wal"


def test_sqlite_commits_are_durable(engine):
    """WAL with synchronous=NORMAL may roll back the last commits after a power cut; an
    acknowledged write or a durable audit record needs FULL (https://sqlite.org/pragma.html#pragma_synchronous)."""
    if engine.dialect.name != "sqlite":
        pytest.skip("synchronous is a SQLite setting")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
