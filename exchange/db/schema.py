"""Imports every module that adds tables to the shared metadata.

Alembic's env, the migration generator and the schema-equality test use
:func:`all_metadata` so that they see the whole schema.
"""

from __future__ import annotations

import importlib

from sqlalchemy import MetaData

from exchange.db.metadata import metadata

TABLE_MODULES = (
    "exchange.db.tables",
    "exchange.search.tables",
    "exchange.auth.tables",
    "exchange.audit.tables",
    "consent.tables",
    "adapters.tables",
    "adapters.hl7v2.tables",
)


def all_metadata() -> MetaData:
    for name in TABLE_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            # tolerated only while a package has no tables of its own
            if exc.name is None or not name.startswith(exc.name):
                raise
    return metadata
