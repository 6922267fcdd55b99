"""The batch lookups of current versions are indexed lookups per key, not scans of
``resource_current`` (which would make every batch cost grow with the record)."""

from __future__ import annotations

import orjson
import pytest
from sqlalchemy import create_engine

from adapters.bulk import _SQLITE_LOCK, lock_rows
from adapters.writer import _SQLITE_READ_CURRENT, read_current
from exchange.db.migrate import upgrade


@pytest.fixture(scope="module")
def sqlite_engine(tmp_path_factory):  # noqa: ANN001, ANN201
    url = f"sqlite:///{tmp_path_factory.mktemp('plans') / 'x.db'}"
    upgrade(url)
    eng = create_engine(url)
    yield eng
    eng.dispose()


@pytest.mark.parametrize("sql", [_SQLITE_LOCK, _SQLITE_READ_CURRENT], ids=["lock_rows", "read_current"])
def test_sqlite_batch_lookups_search_the_key_index(sqlite_engine, sql: str) -> None:  # noqa: ANN001
    with sqlite_engine.connect() as conn:
        plan = [row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql,
                                                        (orjson.dumps([["Patient", "a"], ["Encounter", "b"]]).decode(),))]
    assert any(p.startswith("SEARCH c USING") and "res_type=? AND res_id=?" in p for p in plan), plan
    assert not any(p.startswith("SCAN c") or p.startswith("SCAN resource_current") for p in plan), plan


def test_lookups_of_nothing_and_of_unknown_keys(engine) -> None:  # noqa: ANN001
    with engine.begin() as conn:
        assert lock_rows(conn, []) == {}
        assert read_current(conn, []) == {}
        assert lock_rows(conn, [("Patient", "no-such-\\\"id")]) == {}
        assert read_current(conn, [("Patient", "no-such-\\\"id")]) == {}
