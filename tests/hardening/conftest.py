"""Shared fixtures for the hardening suites (issue 11): the real app with authorisation,
consent and audit ON, real tokens, and a database fingerprint to prove a refused
request changed nothing.

Used by test_input_*, test_attack_*, test_fuzz_* (and available to test_fault_*).
Keep additions backward compatible: other suites depend on these names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from exchange.db.engine import read_tx
from exchange.db.metadata import metadata
from exchange.db.tables import resource_current, resource_version
from exchange.settings import Settings

HARDENING_CLIENT = "hardening-client"


@pytest.fixture(scope="module")
def full_engine(engine: Engine) -> Engine:
    """The module's migrated engine, with every registered table present."""
    import adapters.tables  # noqa: F401 - registers the adapter tables on the shared metadata
    import consent.tables  # noqa: F401

    metadata.create_all(engine, checkfirst=True)
    return engine


@pytest.fixture(scope="module")
def full_settings(settings: Settings) -> Settings:
    """Production-like settings: authorisation, consent and audit on."""
    return settings.with_(auth_enabled=True, consent_enabled=True, audit_enabled=True)


@pytest.fixture(scope="module")
def full_client(full_engine: Engine, full_settings: Settings) -> Iterator[TestClient]:
    """A TestClient over the real app (auth, consent, audit on). Server errors are
    returned as responses, never raised, so a test can assert "never a 500"."""
    from exchange.app import create_app

    with TestClient(create_app(full_settings, engine=full_engine), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def token_for(full_engine: Engine, full_settings: Settings) -> Callable[..., dict[str, str]]:
    """``token_for(**quick_token kwargs)`` -> Authorization headers with a real token."""
    from exchange.auth.testing import bearer, quick_token

    def _make(**kw: Any) -> dict[str, str]:
        kw.setdefault("client_id", HARDENING_CLIENT)
        return bearer(quick_token(full_engine, full_settings, **kw))

    return _make


@pytest.fixture(scope="module")
def system_headers(token_for: Callable[..., dict[str, str]]) -> dict[str, str]:
    """A system client with every scope (sees everything; consent applies to users)."""
    return token_for(kind="system", scope="system/*.cruds", practitioner=None, role=None, purpose=None)


def db_fingerprint(engine: Engine) -> tuple[int, int, int]:
    """(versions, current rows, highest version seq): any write changes it."""
    with read_tx(engine) as conn:
        versions = conn.execute(select(func.count()).select_from(resource_version)).scalar_one()
        current = conn.execute(select(func.count()).select_from(resource_current)).scalar_one()
        top = conn.execute(select(func.max(resource_version.c.seq))).scalar_one() or 0
    return int(versions), int(current), int(top)


@pytest.fixture(scope="module")
def fingerprint(full_engine: Engine) -> Callable[[], tuple[int, int, int]]:
    return lambda: db_fingerprint(full_engine)


def check_outcome(body: bytes) -> dict[str, Any]:
    """Parse an error body and assert it is a well-formed R4 OperationOutcome."""
    data = orjson.loads(body)
    assert data.get("resourceType") == "OperationOutcome", data
    issues = data.get("issue")
    assert isinstance(issues, list) and issues, data
    for issue in issues:
        assert issue.get("severity") in ("fatal", "error", "warning", "information"), issue
        assert isinstance(issue.get("code"), str) and issue["code"], issue
    from fhir.resources.R4B.operationoutcome import OperationOutcome

    OperationOutcome.model_validate(data)
    return data


@pytest.fixture(scope="session")
def assert_outcome() -> Callable[[bytes], dict[str, Any]]:
    return check_outcome


@pytest.fixture(scope="module")
def twin_engine(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """A second, empty, migrated database of the same kind as ``db_url`` (SQLite or
    PostgreSQL): the "world without the hidden resource" the consent probes compare with."""
    import uuid

    from sqlalchemy import create_engine, text

    from exchange.db.engine import make_engine, normalise_url
    from exchange.db.migrate import upgrade

    admin = None
    if db_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path_factory.mktemp('twin') / 'twin.db'}"
    else:
        name = f"twin_{uuid.uuid4().hex[:12]}"
        admin = create_engine(normalise_url(db_url), isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        url = db_url.rsplit("/", 1)[0] + "/" + name
    upgrade(url)
    eng = make_engine(url)
    import adapters.tables  # noqa: F401
    import consent.tables  # noqa: F401

    metadata.create_all(eng, checkfirst=True)
    try:
        yield eng
    finally:
        eng.dispose()
        if admin is not None:
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
            admin.dispose()


@pytest.fixture(scope="module")
def twin_client(twin_engine: Engine, full_settings: Settings) -> Iterator[TestClient]:
    """The real app over the twin database: same settings, keys and cursor secret."""
    from exchange.app import create_app

    settings = full_settings.with_(database_url=str(twin_engine.url.render_as_string(hide_password=False)))
    with TestClient(create_app(settings, engine=twin_engine), raise_server_exceptions=False) as c:
        yield c
