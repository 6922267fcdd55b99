"""Fixtures for the consent tests: a migrated database (SQLite and PostgreSQL) with the
consent tables, a writer that goes the way the write path does (labels on the way in,
facts indexed in the same transaction), and requester contexts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from consent.facts import index_facts
from consent.gate import ConsentGate
from consent.labels import apply_labels
from consent.tables import consent_fact, consent_link
from exchange.db.engine import write_tx
from exchange.repository import store
from exchange.repository.stored import StoredResource


@pytest.fixture(scope="module")
def cengine(engine):  # noqa: ANN001, ANN201
    """The shared migrated engine plus the consent tables (until the migration has them)."""
    consent_fact.metadata.create_all(engine, tables=[consent_fact, consent_link], checkfirst=True)
    return engine


@pytest.fixture(scope="module")
def put(cengine) -> Callable[[dict[str, Any]], StoredResource]:  # noqa: ANN001
    def _put(resource: dict[str, Any]) -> StoredResource:
        res = apply_labels(dict(resource))
        rtype = res["resourceType"]
        with write_tx(cengine) as conn:
            current = store.lock_current(conn, rtype, res["id"])
            stored = store.write_version(conn, rtype, res["id"], res, method="PUT", current=current)
            index_facts(conn, stored.rid, rtype, res)
        return stored

    return _put


@pytest.fixture(scope="module")
def gate(cengine, settings) -> ConsentGate:  # noqa: ANN001
    return ConsentGate(cengine, settings.with_(consent_enabled=True))
