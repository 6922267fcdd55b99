"""Append-only enforcement for the audit tables (issue 7, "Append-only storage").

The database itself refuses UPDATE and DELETE on ``audit_event``,
``audit_event_patient`` and ``audit_checkpoint`` (and TRUNCATE on PostgreSQL). The one
exception is the documented retention job (:mod:`exchange.audit.retention`): inside its
single transaction it inserts a row into ``audit_retention_lease``, deletes the archived
events, and removes the lease again before committing, so no other transaction ever
sees the lease. Checkpoints can never be deleted.

The migration ``migrations/versions/0002_audit_append_only.py`` carries a frozen copy of
these statements; a test keeps the two identical. :func:`install` is for test databases
built with ``metadata.create_all``.
"""

from __future__ import annotations

from sqlalchemy import Connection

_SQLITE_TABLES = ("audit_event", "audit_event_patient", "audit_checkpoint")

SQLITE_UP: list[str] = []
for _t in _SQLITE_TABLES:
    SQLITE_UP.append(
        f"CREATE TRIGGER {_t}_no_update BEFORE UPDATE ON {_t} "
        f"BEGIN SELECT RAISE(ABORT, '{_t} is append-only'); END"
    )
    _guard = "" if _t == "audit_checkpoint" else \
        "WHEN NOT EXISTS (SELECT 1 FROM audit_retention_lease) "
    SQLITE_UP.append(
        f"CREATE TRIGGER {_t}_no_delete BEFORE DELETE ON {_t} {_guard}"
        f"BEGIN SELECT RAISE(ABORT, '{_t} is append-only (use exchange audit retention)'); END"
    )
SQLITE_DOWN = [f"DROP TRIGGER IF EXISTS {t}_{op}" for t in _SQLITE_TABLES
               for op in ("no_update", "no_delete")]

POSTGRES_UP: list[str] = [
    """CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' AND TG_TABLE_NAME <> 'audit_checkpoint'
     AND EXISTS (SELECT 1 FROM audit_retention_lease) THEN
    RETURN OLD;
  END IF;
  RAISE EXCEPTION USING MESSAGE = TG_TABLE_NAME || ' is append-only (use exchange audit retention)';
END
$$""",
]
for _t in _SQLITE_TABLES:
    POSTGRES_UP.append(
        f"CREATE TRIGGER {_t}_append_only BEFORE UPDATE OR DELETE ON {_t} "
        "FOR EACH ROW EXECUTE FUNCTION audit_append_only()"
    )
    POSTGRES_UP.append(
        f"CREATE TRIGGER {_t}_no_truncate BEFORE TRUNCATE ON {_t} "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()"
    )
POSTGRES_DOWN = [f"DROP TRIGGER IF EXISTS {t}_{n} ON {t}" for t in _SQLITE_TABLES
                 for n in ("append_only", "no_truncate")] + [
    "DROP FUNCTION IF EXISTS audit_append_only()"]


def statements(dialect: str, *, up: bool = True) -> list[str]:
    if dialect == "sqlite":
        return SQLITE_UP if up else SQLITE_DOWN
    return POSTGRES_UP if up else POSTGRES_DOWN


def install(conn: Connection) -> None:
    for stmt in statements(conn.dialect.name):
        conn.exec_driver_sql(stmt)


def uninstall(conn: Connection) -> None:
    """Remove the triggers (tests that tamper with the log use this first)."""
    for stmt in statements(conn.dialect.name, up=False):
        conn.exec_driver_sql(stmt)
