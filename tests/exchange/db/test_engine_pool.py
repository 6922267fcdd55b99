"""Engine construction: pool sizes per database kind."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from exchange.db.engine import make_engine, read_tx


def test_sqlite_file_database_pools_like_postgresql(tmp_path: Path) -> None:
    eng = make_engine(f"sqlite:///{tmp_path / 'pool.db'}", pool_size=7)
    try:
        assert (eng.pool.size(), eng.pool._max_overflow) == (7, 7)
    finally:
        eng.dispose()


def test_sqlite_in_memory_database_still_works() -> None:
    eng = make_engine("sqlite://")
    try:
        with read_tx(eng) as c:
            assert c.execute(text("SELECT 1")).scalar() == 1
    finally:
        eng.dispose()
