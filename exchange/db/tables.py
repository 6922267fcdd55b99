"""Core storage tables: immutable resource versions and a current pointer per (type, id).

FHIR R4 http.html#versioning: every version of every resource is kept as canonical JSON
(``resource_version.content``, bytes exactly as served); ``resource_current`` points at
the latest version of each logical resource and carries the surrogate key ``rid`` that
the search index tables reference. Deletes are versions too (``deleted`` true, no
content).
"""

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    UniqueConstraint,
)

from exchange.db.metadata import metadata

# BigInteger autoincrement that is INTEGER PRIMARY KEY (rowid) on SQLite.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")

resource_current = Table(
    "resource_current",
    metadata,
    Column("rid", BigIntPK, primary_key=True, autoincrement=True),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version_id", Integer, nullable=False),
    Column("last_updated", DateTime(timezone=True), nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("seq", BigInteger, nullable=False),  # resource_version.seq of the current version
    UniqueConstraint("res_type", "res_id"),
)

resource_version = Table(
    "resource_version",
    metadata,
    Column("seq", BigIntPK, primary_key=True, autoincrement=True),
    Column("rid", BigInteger, ForeignKey("resource_current.rid"), nullable=False),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version_id", Integer, nullable=False),
    Column("last_updated", DateTime(timezone=True), nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("method", String(8), nullable=False),  # POST, PUT, PATCH, DELETE
    Column("content", LargeBinary, nullable=True),
    UniqueConstraint("res_type", "res_id", "version_id"),
    Index("ix_resource_version_res_type_last_updated", "res_type", "last_updated"),
    Index("ix_resource_version_last_updated", "last_updated"),
    Index("ix_resource_version_rid", "rid"),
)
