"""Fixtures for the audit tests (defined in audit_helpers, shared with the console tests)."""

from audit_helpers import audit_db, sink  # noqa: F401
