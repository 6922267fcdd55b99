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
        importlib.import_module(name)
    return metadata
