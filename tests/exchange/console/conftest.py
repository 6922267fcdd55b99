"""Fixtures for the IG console tests: a small app with the console router mounted."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "audit"))
sys.path.insert(0, str(Path(__file__).parent))

from audit_helpers import _audit_database, audit_db, sink  # noqa: E402, F401
from console_helpers import console, signed_in  # noqa: E402, F401
