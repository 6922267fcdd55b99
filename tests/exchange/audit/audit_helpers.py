"""Helpers for the audit and console tests: a fresh database per test (SQLite, PostgreSQL)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from exchange.audit import triggers
from exchange.audit.sink import AuditSink
from exchange.db.engine import make_engine, normalise_url
from exchange.db.metadata import metadata
from exchange.pipeline.context import Released, RequestContext, Requester
from exchange.settings import Settings

PG_URL = normalise_url(os.environ.get("EXCHANGE_TEST_POSTGRES_URL",
                                     "postgresql://postgres@127.0.0.1:5432/test"))
REQUIRE_PG = os.environ.get("EXCHANGE_REQUIRE_POSTGRES") == "1"


def _pg_available() -> bool:
    try:
        eng = create_engine(PG_URL, connect_args={"connect_timeout": 2})
        with eng.connect():
            pass
        eng.dispose()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def _audit_database(request: pytest.FixtureRequest,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, str]]:
    """One database per dialect for the whole run (all tables plus the audit triggers)."""
    import exchange.audit.tables  # noqa: F401  (registers the audit tables)
    import exchange.db.tables  # noqa: F401

    schema = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('auditdb')}/audit.db"
        engine = make_engine(url)
    else:
        if not _pg_available():
            if REQUIRE_PG:
                pytest.fail(f"PostgreSQL is required but unreachable at {PG_URL}")
            pytest.skip(f"PostgreSQL is not reachable at {PG_URL}")
        schema = f"audit_{uuid.uuid4().hex[:12]}"
        admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'CREATE SCHEMA "{schema}"'))
        admin.dispose()
        url = f"{PG_URL}?options=-csearch_path%3D{schema}"
        engine = make_engine(url, pool_size=5)
    with engine.begin() as conn:
        metadata.create_all(conn)
        triggers.install(conn)
    yield engine, url
    engine.dispose()
    if schema:
        admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def audit_db(_audit_database: tuple[Engine, str], tmp_path: Path) -> tuple[Engine, Settings]:
    """(engine, settings) for an emptied database with the append-only triggers in place."""
    engine, url = _audit_database
    with engine.begin() as conn:
        triggers.uninstall(conn)
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())
        triggers.install(conn)
    settings = Settings(database_url=url, var_dir=tmp_path / "var",
                        extra={"audit_checkpoint_every": 5})
    return engine, settings


@pytest.fixture
def sink(audit_db: tuple[Engine, Settings]) -> Iterator[AuditSink]:
    engine, settings = audit_db
    s = AuditSink(engine, settings)
    yield s
    s.close()


CLINICIAN = Requester(
    kind="user", client_id="gp-system", scopes=frozenset({"user/*.read"}),
    practitioner_id="555123456789", practitioner_name="Dr Jane Smith", role="R8000",
    organization="A81001", purpose_of_use="TREAT",
)

BREAK_GLASS = Requester(
    kind="user", client_id="ed-system", scopes=frozenset({"user/*.read"}),
    practitioner_id="555999888777", practitioner_name="Dr Amir Khan", role="R8003",
    organization="RX1", purpose_of_use="BTG", break_glass_reason="Unconscious patient in ED",
)


def make_ctx(requester: Requester = CLINICIAN, *, interaction: str = "read",
             resource_type: str | None = "Patient", resource_id: str | None = "p1",
             status: int = 200, patients: tuple[str, ...] = (),
             released: tuple[tuple[str, str], ...] = (), query: str = "",
             **attrs: object) -> RequestContext:
    path = f"/fhir/{resource_type}" + (f"/{resource_id}" if resource_id else "") \
        if resource_type else "/fhir"
    ctx = RequestContext(requester=requester, method="GET", path=path, query=query,
                         interaction=interaction, resource_type=resource_type,
                         resource_id=resource_id, remote_addr="127.0.0.1")
    ctx.patients.update(patients)
    for rtype, rid in released:
        ctx.released.append(Released(rtype, rid, "1"))
    ctx.outcome_status = status
    for k, v in attrs.items():
        setattr(ctx, k, v)
    return ctx
