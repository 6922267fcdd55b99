"""Fixtures for the audit tests (defined in audit_helpers, shared with the console tests)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from audit_helpers import _audit_database, audit_db, sink  # noqa: E402, F401
