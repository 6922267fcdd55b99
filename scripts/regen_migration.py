"""Regenerate migrations/versions/0001_initial.py from the shared metadata.

Used only until the first release: after that, schema changes are new revisions made
with ``alembic revision --autogenerate``. Output is deterministic for a given schema.
"""

from __future__ import annotations

import sys
from pathlib import Path

from alembic.autogenerate import produce_migrations, render_python_code
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from exchange.db.schema import all_metadata  # noqa: E402

HEADER = '''"""Initial schema: resources, search indexes, auth, audit, adapters.

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


'''


def main() -> None:
    md = all_metadata()
    engine = create_engine("sqlite://")
    with engine.connect() as conn:
        mc = MigrationContext.configure(conn, opts={"target_metadata": md})
        script = produce_migrations(mc, md)
    up = render_python_code(script.upgrade_ops, migration_context=mc)
    down = render_python_code(script.downgrade_ops, migration_context=mc)
    body = HEADER + "def upgrade() -> None:\n" + up + "\n\n\ndef downgrade() -> None:\n" + down + "\n"
    out = ROOT / "migrations" / "versions" / "0001_initial.py"
    out.write_text(body)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
