"""Authorisation tables on the shared metadata (SMART Backend Services registration, RFC 7523).

* ``auth_client``: registered clients -- their public JWKS (SMART Backend Services
  "Registering a SMART Backend Service"), allowed scopes, the organisations (ODS codes)
  they act for, whether they may assert practitioners (RFC 7523 §2.1 user grant) and a
  disabled flag checked on every request.
* ``auth_used_jti``: single-use assertion ids (RFC 7523 §3 item 7) kept until the
  assertion expires, in the database so replay is refused across all workers.

Times are stored as integer epoch seconds so that comparisons behave identically on
SQLite and PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, String, Table, Text

from exchange.db.metadata import metadata

auth_client = Table(
    "auth_client",
    metadata,
    Column("client_id", String(255), primary_key=True),
    Column("name", String(255), nullable=True),
    Column("jwks", Text, nullable=False),  # JSON {"keys": [...]} of public keys
    Column("scopes", Text, nullable=False),  # space-separated SMART scopes
    Column("organizations", Text, nullable=False),  # space-separated ODS codes
    Column("may_assert_users", Boolean, nullable=False, default=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

auth_used_jti = Table(
    "auth_used_jti",
    metadata,
    Column("client_id", String(255), primary_key=True),
    Column("jti", String(255), primary_key=True),
    Column("expires_at", BigInteger, nullable=False),
    Index("ix_auth_used_jti_expires_at", "expires_at"),
)
