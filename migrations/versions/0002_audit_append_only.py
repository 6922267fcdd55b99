"""Append-only audit tables: triggers refusing UPDATE and DELETE (issue 7).

Hand-written. Revision 0001 creates the audit tables from the shared metadata; this one
installs the triggers on SQLite and PostgreSQL. Only the retention job may delete events,
and only while its lease row exists inside its own transaction (see
exchange/audit/triggers.py and docs/ig-guide.md, "Retention"). The statements are a
frozen copy of exchange.audit.triggers (a test keeps them identical).
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SQLITE_UP = ["CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON audit_event BEGIN SELECT RAISE(ABORT, 'audit_event is append-only'); END", "CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON audit_event WHEN NOT EXISTS (SELECT 1 FROM audit_retention_lease) BEGIN SELECT RAISE(ABORT, 'audit_event is append-only (use exchange audit retention)'); END", "CREATE TRIGGER audit_event_patient_no_update BEFORE UPDATE ON audit_event_patient BEGIN SELECT RAISE(ABORT, 'audit_event_patient is append-only'); END", "CREATE TRIGGER audit_event_patient_no_delete BEFORE DELETE ON audit_event_patient WHEN NOT EXISTS (SELECT 1 FROM audit_retention_lease) BEGIN SELECT RAISE(ABORT, 'audit_event_patient is append-only (use exchange audit retention)'); END", "CREATE TRIGGER audit_checkpoint_no_update BEFORE UPDATE ON audit_checkpoint BEGIN SELECT RAISE(ABORT, 'audit_checkpoint is append-only'); END", "CREATE TRIGGER audit_checkpoint_no_delete BEFORE DELETE ON audit_checkpoint BEGIN SELECT RAISE(ABORT, 'audit_checkpoint is append-only (use exchange audit retention)'); END"]

SQLITE_DOWN = ['DROP TRIGGER IF EXISTS audit_event_no_update', 'DROP TRIGGER IF EXISTS audit_event_no_delete', 'DROP TRIGGER IF EXISTS audit_event_patient_no_update', 'DROP TRIGGER IF EXISTS audit_event_patient_no_delete', 'DROP TRIGGER IF EXISTS audit_checkpoint_no_update', 'DROP TRIGGER IF EXISTS audit_checkpoint_no_delete']

POSTGRES_UP = ["CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN\n  IF TG_OP = 'DELETE' AND TG_TABLE_NAME <> 'audit_checkpoint'\n     AND EXISTS (SELECT 1 FROM audit_retention_lease) THEN\n    RETURN OLD;\n  END IF;\n  RAISE EXCEPTION USING MESSAGE = TG_TABLE_NAME || ' is append-only (use exchange audit retention)';\nEND\n$$", 'CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON audit_event FOR EACH ROW EXECUTE FUNCTION audit_append_only()', 'CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_event FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()', 'CREATE TRIGGER audit_event_patient_append_only BEFORE UPDATE OR DELETE ON audit_event_patient FOR EACH ROW EXECUTE FUNCTION audit_append_only()', 'CREATE TRIGGER audit_event_patient_no_truncate BEFORE TRUNCATE ON audit_event_patient FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()', 'CREATE TRIGGER audit_checkpoint_append_only BEFORE UPDATE OR DELETE ON audit_checkpoint FOR EACH ROW EXECUTE FUNCTION audit_append_only()', 'CREATE TRIGGER audit_checkpoint_no_truncate BEFORE TRUNCATE ON audit_checkpoint FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()']

POSTGRES_DOWN = ['DROP TRIGGER IF EXISTS audit_event_append_only ON audit_event', 'DROP TRIGGER IF EXISTS audit_event_no_truncate ON audit_event', 'DROP TRIGGER IF EXISTS audit_event_patient_append_only ON audit_event_patient', 'DROP TRIGGER IF EXISTS audit_event_patient_no_truncate ON audit_event_patient', 'DROP TRIGGER IF EXISTS audit_checkpoint_append_only ON audit_checkpoint', 'DROP TRIGGER IF EXISTS audit_checkpoint_no_truncate ON audit_checkpoint', 'DROP FUNCTION IF EXISTS audit_append_only()']


def _run(statements: list[str]) -> None:
    for stmt in statements:
        op.execute(stmt)


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.execute("INSERT INTO audit_head (id, event_count, head_hash, checkpointed) "
               "SELECT 1, 0, '0000000000000000000000000000000000000000000000000000000000000000', 0 WHERE NOT EXISTS (SELECT 1 FROM audit_head)")
    _run(SQLITE_UP if sqlite else POSTGRES_UP)


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    _run(SQLITE_DOWN if sqlite else POSTGRES_DOWN)
