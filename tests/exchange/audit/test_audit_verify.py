"""Tamper evidence: verify catches modified, deleted, reordered and truncated logs.

Each test tampers with the database directly, lifting the append-only triggers first
(as an attacker with database access could), and checks that verify names the event.
"""

from __future__ import annotations

import base64
import importlib.util
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from audit_helpers import BREAK_GLASS, make_ctx
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from exchange.audit import keys, triggers
from exchange.audit.chain import checkpoint_now
from exchange.audit.retention import run_retention, verify_archive
from exchange.audit.tables import audit_checkpoint, audit_event, audit_event_patient
from exchange.audit.verify import verify
from exchange.db.engine import write_tx


def _fill(sink, n: int = 12) -> None:  # noqa: ANN001
    for i in range(n):
        sink.record(make_ctx(BREAK_GLASS if i % 4 == 0 else make_ctx().requester,
                             resource_id=f"p{i}", patients=(f"p{i}",)))


def _tamper(engine, *statements: str, params: dict | None = None) -> None:  # noqa: ANN001
    with engine.begin() as conn:
        triggers.uninstall(conn)
        for stmt in statements:
            conn.execute(text(stmt), params or {})
        triggers.install(conn)


def _row(engine, seq: int):  # noqa: ANN001, ANN202
    with engine.connect() as conn:
        return conn.execute(select(audit_event).where(audit_event.c.seq == seq)).one()


def test_untouched_log_verifies(audit_db, sink) -> None:  # noqa: ANN001
    engine, settings = audit_db
    _fill(sink)
    result = verify(engine, settings)
    assert result.ok, result.summary()
    assert result.events_checked == 12 and result.checkpoints_checked == 2
    assert "OK" in result.summary()


def test_triggers_refuse_update_and_delete(audit_db, sink) -> None:  # noqa: ANN001
    engine, _ = audit_db
    _fill(sink, 5)
    for stmt in ("UPDATE audit_event SET outcome = 0 WHERE seq = 1",
                 "DELETE FROM audit_event WHERE seq = 5",
                 "DELETE FROM audit_event_patient",
                 "UPDATE audit_checkpoint SET event_count = 1",
                 "DELETE FROM audit_checkpoint"):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(stmt))
    if engine.dialect.name == "postgresql":
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text("TRUNCATE audit_event_patient"))
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(audit_event)).scalar() == 5


def test_modified_event_is_named(audit_db, sink) -> None:  # noqa: ANN001
    engine, settings = audit_db
    _fill(sink)
    row = _row(engine, 7)
    event = orjson.loads(row.content)
    event["outcome"] = "0"
    event["agent"][0]["who"]["identifier"]["value"] = "someone-else"
    _tamper(engine, "UPDATE audit_event SET content = :c WHERE seq = 7",
            params={"c": orjson.dumps(event, option=orjson.OPT_SORT_KEYS)})
    result = verify(engine, settings)
    assert not result.ok
    assert result.failure_seq == 7 and result.failure_event_id == row.event_id
    assert "modified" in result.problem
    assert row.event_id in result.summary()


def test_modified_query_column_is_named(audit_db, sink) -> None:  # noqa: ANN001
    engine, settings = audit_db
    _fill(sink)
    _tamper(engine, "UPDATE audit_event SET break_glass = :f WHERE seq = 5", params={"f": False})
    result = verify(engine, settings)
    assert not result.ok and result.failure_seq == 5
    assert "break_glass" in result.problem


def test_removed_patient_row_is_named(audit_db, sink) -> None:  # noqa: ANN001
    engine, settings = audit_db
    _fill(sink)
    _tamper(engine, "DELETE FROM audit_event_patient WHERE seq = 3")
    result = verify(engine, settings)
    assert not result.ok and result.failure_seq == 3 and "patient" in result.problem


def test_deleted_event_is_named(audit_db, sink) -> None:  # noqa: ANN001
    engine, settings = audit_db
    _fill(sink)
    _tamper(engine, "DELETE FROM audit_event_patient WHERE seq = 4",
            "DELETE FROM audit_event WHERE seq = 4")
    result = verify(engine, settings)
    assert not result.ok
    assert result.failure_seq == 5 and "event 4 is missing" in result.problem


def test_deleted_and_renumbered_events_are_caught(audit_db, sink) -> None:  # noqa: ANN001
    """Deleting event 3 and renumbering the rest to close the gap breaks the links."""
    engine, settings = audit_db
    _fill(sink, 4)
    _tamper(engine, "DELETE FROM audit_event_patient WHERE seq >= 3",
            "DELETE FROM audit_event WHERE seq = 3",
            "UPDATE audit_event SET seq = 3 WHERE seq = 4",
            "UPDATE audit_head SET event_count = 3")
    result = verify(engine, settings)
    assert not result.ok and result.failure_seq == 3


def test_reordered_events_are_named(audit_db, sink) -> None:  # noqa: ANN001
    engine, settings = audit_db
    _fill(sink)
    _tamper(engine, "UPDATE audit_event SET seq = -1 WHERE seq = 8",
            "UPDATE audit_event SET seq = 8 WHERE seq = 9",
            "UPDATE audit_event SET seq = 9 WHERE seq = -1",
            "UPDATE audit_event_patient SET seq = -1 WHERE seq = 8",
            "UPDATE audit_event_patient SET seq = 8 WHERE seq = 9",
            "UPDATE audit_event_patient SET seq = 9 WHERE seq = -1")
    result = verify(engine, settings)
    assert not result.ok and result.failure_seq == 8
    assert "reordered" in result.problem or "modified" in result.problem


def test_truncation_past_a_signed_checkpoint(audit_db, sink) -> None:  # noqa: ANN001
    engine, settings = audit_db
    _fill(sink)  # checkpoints at 5 and 10
    _tamper(engine, "DELETE FROM audit_event_patient WHERE seq > 7",
            "DELETE FROM audit_event WHERE seq > 7",
            "UPDATE audit_head SET event_count = 7")
    result = verify(engine, settings)
    assert not result.ok and result.failure_seq == 8
    assert "checkpoint" in result.problem and "removed" in result.problem


def test_truncation_with_checkpoints_removed_is_caught_by_the_witness(audit_db, sink) -> None:  # noqa: ANN001
    engine, settings = audit_db
    _fill(sink)
    _tamper(engine, "DELETE FROM audit_event_patient WHERE seq > 7",
            "DELETE FROM audit_event WHERE seq > 7",
            "DELETE FROM audit_checkpoint WHERE event_count > 7",
            "UPDATE audit_head SET event_count = 7")
    result = verify(engine, settings)
    assert not result.ok and "witness" in result.problem


def test_forged_checkpoint_is_caught(audit_db, sink) -> None:  # noqa: ANN001
    engine, settings = audit_db
    _fill(sink, 6)
    _tamper(engine, "UPDATE audit_checkpoint SET event_count = 6")
    result = verify(engine, settings)
    assert not result.ok and "signature" in result.problem


def test_missing_key_is_reported(audit_db, sink) -> None:  # noqa: ANN001
    engine, settings = audit_db
    _fill(sink, 6)
    keys.key_path(settings).unlink()
    result = verify(engine, settings)
    assert not result.ok and "key" in result.problem


def test_manual_checkpoint_and_verify_from_date(audit_db, sink) -> None:  # noqa: ANN001
    engine, settings = audit_db
    _fill(sink, 3)
    with write_tx(engine) as conn:
        cp = checkpoint_now(conn, settings)
    assert cp["event_count"] == 3 and cp["kind"] == "manual"
    assert verify(engine, settings).checkpoints_checked == 1
    middle = _row(engine, 2).recorded
    partial = verify(engine, settings, from_date=middle)
    assert partial.ok and partial.first_seq == 2 and partial.events_checked == 2
    future = verify(engine, settings, from_date=datetime.now(UTC) + timedelta(days=1))
    assert future.ok and future.events_checked == 0


def test_retention_archives_removes_and_still_verifies(audit_db, sink, tmp_path) -> None:  # noqa: ANN001
    engine, settings = audit_db
    _fill(sink, 6)
    cut = datetime.now(UTC)
    _fill(sink, 4)
    result = run_retention(engine, settings, cut)
    assert result.removed == 6 and (result.first_seq, result.last_seq) == (1, 6)
    lines = Path(result.archive).read_bytes().splitlines()
    assert [orjson.loads(x)["seq"] for x in lines] == [1, 2, 3, 4, 5, 6]
    with engine.connect() as conn:
        assert conn.execute(select(func.min(audit_event.c.seq))).scalar() == 7
        assert conn.execute(select(func.min(audit_event_patient.c.seq))).scalar() == 7
        kinds = conn.execute(select(audit_checkpoint.c.kind)).scalars().all()
        assert "retention" in kinds
        assert conn.execute(text("SELECT count(*) FROM audit_retention_lease")).scalar() == 0
    check = verify(engine, settings)
    assert check.ok, check.summary()
    assert check.first_seq == 7 and check.events_checked == 4
    archived = verify_archive(Path(result.archive), engine)
    assert archived.ok and (archived.first_seq, archived.last_seq) == (1, 6), archived.summary()
    tampered = tmp_path / "tampered.jsonl"
    recs = [orjson.loads(x) for x in lines]
    event = orjson.loads(base64.b64decode(recs[2]["content"]))
    event["outcome"] = "4"
    recs[2]["content"] = base64.b64encode(orjson.dumps(event, option=orjson.OPT_SORT_KEYS)).decode()
    tampered.write_bytes(b"\n".join(orjson.dumps(r) for r in recs))
    bad = verify_archive(tampered)
    assert not bad.ok and "event 3 was modified" in bad.problem
    _fill(sink, 2)  # the chain carries on after retention
    assert verify(engine, settings).ok
    assert run_retention(engine, settings, datetime(2000, 1, 1, tzinfo=UTC)).removed == 0


def test_deleting_old_events_without_retention_is_caught(audit_db, sink) -> None:  # noqa: ANN001
    engine, settings = audit_db
    _fill(sink, 8)
    _tamper(engine, "DELETE FROM audit_event_patient WHERE seq <= 2",
            "DELETE FROM audit_event WHERE seq <= 2")
    result = verify(engine, settings)
    assert not result.ok and result.failure_seq == 3
    assert "no signed retention checkpoint" in result.problem


def test_migration_carries_the_same_trigger_statements() -> None:
    path = Path(__file__).resolve().parents[3] / "migrations/versions/0002_audit_append_only.py"
    spec = importlib.util.spec_from_file_location("audit_migration_0002", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.down_revision == "0001"
    assert mod.SQLITE_UP == triggers.SQLITE_UP and mod.SQLITE_DOWN == triggers.SQLITE_DOWN
    assert mod.POSTGRES_UP == triggers.POSTGRES_UP and mod.POSTGRES_DOWN == triggers.POSTGRES_DOWN


def test_retention_runs_under_the_job_time_limits(audit_db, sink, monkeypatch) -> None:  # noqa: ANN001
    """Retention archives and deletes a whole run of old events: every transaction it
    opens uses the job profile (longer limits), never a request's 15 s statement limit."""
    import exchange.audit.retention as retention
    from exchange.db.engine import JOB

    engine, settings = audit_db
    _fill(sink, 3)
    profiles: list[str] = []
    for name in ("read_tx", "write_tx"):
        real = getattr(retention, name)

        def watched(eng, *, profile="request", _real=real):  # noqa: ANN001, ANN202
            profiles.append(profile)
            return _real(eng, profile=profile)

        monkeypatch.setattr(retention, name, watched)
    assert run_retention(engine, settings, datetime.now(UTC) + timedelta(seconds=1)).removed == 3
    assert profiles and set(profiles) == {JOB}, profiles
