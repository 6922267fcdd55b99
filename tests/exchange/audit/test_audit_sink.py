"""The audit sink: durable before return, group commit, 503 on failure, many writers."""

from __future__ import annotations

import asyncio
import threading

import pytest
from audit_helpers import BREAK_GLASS, make_ctx
from sqlalchemy import func, select

from exchange.audit.sink import AuditSink
from exchange.audit.tables import audit_checkpoint, audit_event, audit_event_patient
from exchange.audit.verify import verify
from exchange.db.engine import make_engine
from exchange.outcome import Unavailable


def _count(engine, table=audit_event) -> int:  # noqa: ANN001
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def test_record_is_committed_when_it_returns(audit_db, sink) -> None:  # noqa: ANN001
    engine, _ = audit_db
    sink.record(make_ctx(patients=("p1", "p2")))
    # a separate connection sees it: it is committed, not merely queued
    other = make_engine(str(engine.url.render_as_string(hide_password=False)))
    try:
        with other.connect() as conn:
            row = conn.execute(select(audit_event)).one()
            pats = conn.execute(select(audit_event_patient.c.patient_id)
                                .order_by(audit_event_patient.c.patient_id)).scalars().all()
    finally:
        other.dispose()
    assert row.seq == 1 and row.subtype == "read" and row.agent == "555123456789"
    assert pats == ["p1", "p2"]


def test_injected_failure_raises_unavailable_and_writes_nothing(audit_db, sink) -> None:  # noqa: ANN001
    engine, _ = audit_db
    sink.inject_failure()
    with pytest.raises(Unavailable) as exc:
        sink.record(make_ctx())
    assert exc.value.status == 503
    assert _count(engine) == 0
    sink.inject_failure(False)
    sink.record(make_ctx())
    assert _count(engine) == 1


def test_database_failure_raises_unavailable(audit_db, tmp_path) -> None:  # noqa: ANN001
    """A database without the audit tables: the write fails, the caller gets 503."""
    engine, settings = audit_db
    if engine.dialect.name == "sqlite":
        broken = make_engine(f"sqlite:///{tmp_path}/empty.db")
    else:
        broken = make_engine(engine.url.set(query={"options": "-csearch_path=no_such_schema"})
                             .render_as_string(hide_password=False))
    s = AuditSink(broken, settings)
    try:
        with pytest.raises(Unavailable):
            s.record(make_ctx())
    finally:
        s.close()
        broken.dispose()
    assert _count(engine) == 0


def test_concurrent_requests_are_group_committed(audit_db, sink) -> None:  # noqa: ANN001
    engine, settings = audit_db
    n_threads, per_thread = 8, 25
    errors: list[BaseException] = []
    barrier = threading.Barrier(n_threads)

    def worker(i: int) -> None:
        try:
            barrier.wait()
            for j in range(per_thread):
                sink.record(make_ctx(resource_id=f"p{i}-{j}"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    total = n_threads * per_thread
    assert _count(engine) == total
    assert sink.events_written == total
    assert sink.batches < total  # several events shared one commit
    with engine.connect() as conn:
        seqs = conn.execute(select(audit_event.c.seq).order_by(audit_event.c.seq)).scalars().all()
    assert seqs == list(range(1, total + 1))
    assert _count(engine, audit_checkpoint) >= 1  # every 5 events in these tests
    result = verify(engine, settings)
    assert result.ok, result.summary()
    assert result.events_checked == total


def test_two_writers_with_separate_engines_keep_one_chain(audit_db) -> None:  # noqa: ANN001
    """Two sinks on two engines behave like two server processes sharing the database."""
    engine, settings = audit_db
    url = engine.url.render_as_string(hide_password=False)
    engines = [make_engine(url), make_engine(url)]
    sinks = [AuditSink(e, settings) for e in engines]
    errors: list[BaseException] = []

    def worker(s: AuditSink, tag: str) -> None:
        try:
            for j in range(30):
                s.record(make_ctx(resource_id=f"{tag}{j}"))
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s, f"w{i}-t{k}"))
               for i, s in enumerate(sinks) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in sinks:
        s.close()
    for e in engines:
        e.dispose()
    assert not errors
    assert _count(engine) == 180
    result = verify(engine, settings)
    assert result.ok, result.summary()


def test_close_drains_and_then_refuses(audit_db) -> None:  # noqa: ANN001
    engine, settings = audit_db
    s = AuditSink(engine, settings)
    done = []
    threads = [threading.Thread(target=lambda: done.append(s.record(make_ctx()))) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    s.close()
    assert len(done) == 5 and _count(engine) == 5
    with pytest.raises(Unavailable):
        s.record(make_ctx())


def test_record_async_and_token_requests(audit_db, sink) -> None:  # noqa: ANN001
    engine, _ = audit_db

    async def run() -> None:
        await asyncio.gather(*(sink.record_async(make_ctx(BREAK_GLASS)) for _ in range(4)))

    asyncio.run(run())
    sink.record_token_request(401, "rogue-client", "invalid client assertion",
                              subtype="auth-failure", remote_addr="127.0.0.2")
    with engine.connect() as conn:
        rows = conn.execute(select(audit_event).order_by(audit_event.c.seq)).all()
    assert [r.break_glass for r in rows] == [True] * 4 + [False]
    assert rows[0].break_glass_reason == "Unconscious patient in ED"
    assert rows[-1].type_code == "110114" and rows[-1].outcome == 4
    assert rows[-1].client_id == "rogue-client"


def test_async_failure_raises_unavailable(audit_db, sink) -> None:  # noqa: ANN001
    engine, _ = audit_db
    sink.inject_failure()
    with pytest.raises(Unavailable):
        asyncio.run(sink.record_async(make_ctx()))
    assert _count(engine) == 0


def test_disabled_sink_writes_nothing(audit_db) -> None:  # noqa: ANN001
    engine, settings = audit_db
    s = AuditSink(engine, settings.with_(audit_enabled=False))
    s.record(make_ctx())
    s.close()
    assert _count(engine) == 0


def test_waiting_behind_a_stuck_commit_gives_503_and_loses_nothing(audit_db, monkeypatch) -> None:  # noqa: ANN001
    """A request waiting while another request's commit hangs is answered 503 after
    WAIT_SECONDS; its event stays queued and is written by the next commit (here: close)."""
    import exchange.audit.sink as sink_module

    engine, settings = audit_db
    s = AuditSink(engine, settings)
    monkeypatch.setattr(sink_module, "WAIT_SECONDS", 0.3)
    release = threading.Event()
    real_write = s._write

    def stuck(batch):  # noqa: ANN001, ANN202
        release.wait(10)
        real_write(batch)

    s._write = stuck  # type: ignore[method-assign]
    leader = threading.Thread(target=lambda: s.record(make_ctx(resource_id="first")))
    leader.start()
    for _ in range(500):
        if s._leading:
            break
        threading.Event().wait(0.01)
    assert s._leading
    with pytest.raises(Unavailable):
        s.record(make_ctx(resource_id="second"))
    release.set()
    leader.join()
    s._write = real_write  # type: ignore[method-assign]
    s.close()
    assert _count(engine) == 2
    result = verify(engine, settings)
    assert result.ok, result.summary()
