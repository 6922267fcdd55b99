"""Shared fixtures: every database test runs on SQLite and on PostgreSQL.

PostgreSQL is reached at ``EXCHANGE_TEST_POSTGRES_URL`` (default: the local server with
trust auth). Each test module gets its own freshly migrated database. When PostgreSQL
is unreachable its cases are skipped, unless ``EXCHANGE_REQUIRE_POSTGRES=1`` (CI), in
which case they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from exchange.db.engine import make_engine, normalise_url
from exchange.db.migrate import upgrade
from exchange.settings import Settings

PG_URL = os.environ.get("EXCHANGE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("EXCHANGE_REQUIRE_POSTGRES") == "1"
_pg_ok: bool | None = None


def postgres_available() -> bool:
    global _pg_ok
    if _pg_ok is None:
        try:
            eng = create_engine(normalise_url(PG_URL), connect_args={"connect_timeout": 3})
            with eng.connect() as c:
                c.execute(text("select 1"))
            eng.dispose()
            _pg_ok = True
        except Exception:  # noqa: BLE001
            _pg_ok = False
    return _pg_ok


def _pg_admin():  # noqa: ANN202
    return create_engine(normalise_url(PG_URL), isolation_level="AUTOCOMMIT")


def new_database(kind: str, tmp_path: Path) -> str:
    """Create and migrate an empty database of the given kind; return its URL."""
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'exchange.db'}"
    else:
        if not postgres_available():
            if REQUIRE_PG:
                pytest.fail(f"PostgreSQL is required but unreachable at {PG_URL}")
            pytest.skip("PostgreSQL not reachable")
        name = f"exch_{uuid.uuid4().hex[:12]}"
        admin = _pg_admin()
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        base = normalise_url(PG_URL)
        url = base.rsplit("/", 1)[0] + "/" + name
    upgrade(url)
    return url


def drop_database(url: str) -> None:
    if url.startswith("sqlite"):
        return
    name = url.rsplit("/", 1)[1]
    admin = _pg_admin()
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = new_database(request.param, tmp_path_factory.mktemp("db"))
    yield url
    drop_database(url)


@pytest.fixture(scope="module")
def engine(db_url: str):  # noqa: ANN201
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture(scope="module")
def var_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("var")


@pytest.fixture(scope="module")
def settings(db_url: str, var_dir: Path) -> Settings:
    """Core settings: authorisation, consent and audit off (their own tests turn them on)."""
    return Settings(
        database_url=db_url,
        base_url="http://testserver/fhir",
        var_dir=var_dir,
        auth_enabled=False,
        consent_enabled=False,
        audit_enabled=False,
        secret_key="test-secret",
    )


@pytest.fixture(scope="module")
def app(settings: Settings, engine):  # noqa: ANN001, ANN201
    from exchange.app import create_app

    return create_app(settings, engine=engine)


@pytest.fixture(scope="module")
def client(app):  # noqa: ANN001, ANN201
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def live_server(db_url: str, var_dir: Path, engine):  # noqa: ANN001, ANN201
    """A running server (auth/consent/audit off) whose base URL matches its real port."""
    import socket

    from exchange.app import create_app

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    settings = Settings(database_url=db_url, base_url=f"http://127.0.0.1:{port}/fhir", var_dir=var_dir,
                        auth_enabled=False, consent_enabled=False, audit_enabled=False, secret_key="test-secret")
    import uvicorn

    app = create_app(settings, engine=engine)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    import threading
    import time

    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/fhir"
    server.should_exit = True
    thread.join(timeout=10)
