"""IG reports and the audit CLI (report, verify, checkpoint, retention, ig-users)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from audit_helpers import BREAK_GLASS, CLINICIAN, make_ctx
from sqlalchemy import select

from exchange.audit import cli
from exchange.audit.event import event_from_context
from exchange.audit.reports import REPORTS, run_report, surname_of, to_csv
from exchange.audit.tables import ig_user
from exchange.console.accounts import authenticate, check_password, hash_password
from exchange.db.engine import read_tx, write_tx
from exchange.outcome import Invalid
from exchange.pipeline.context import Requester
from exchange.repository.store import write_version

START = datetime.now(UTC) - timedelta(days=1)
END = datetime.now(UTC) + timedelta(days=1)


def _run(engine, name: str, **opts: str) -> list[dict]:  # noqa: ANN001
    with read_tx(engine) as conn:
        return run_report(conn, name, START, END, **opts)


def test_break_glass_and_no_relationship(audit_db, sink) -> None:  # noqa: ANN001
    engine, _ = audit_db
    sink.record(make_ctx(resource_id="p1"))
    sink.record(make_ctx(BREAK_GLASS, resource_id="p2", relationship=False))
    sink.record(make_ctx(resource_id="p3", relationship=True))
    rows = _run(engine, "break-glass")
    assert len(rows) == 1
    assert rows[0]["reason"] == "Unconscious patient in ED" and rows[0]["organization"] == "RX1"
    assert rows[0]["patients"] == "p2" and rows[0]["user_name"] == "Dr Amir Khan"
    assert [r["patients"] for r in _run(engine, "no-relationship")] == ["p2"]


def test_patient_history(audit_db, sink) -> None:  # noqa: ANN001
    engine, _ = audit_db
    sink.record(make_ctx(resource_id="p1"))
    sink.record(make_ctx(BREAK_GLASS, resource_id="p9"))
    sink.record(make_ctx(interaction="search-type", resource_type="Observation", resource_id=None,
                         patients=("p1", "p5")))
    rows = _run(engine, "patient-history", patient="Patient/p1")
    assert [r["interaction"] for r in rows] == ["read", "search-type"]
    assert {r["user_id"] for r in rows} == {CLINICIAN.practitioner_id}
    with pytest.raises(Invalid):
        _run(engine, "patient-history")


def test_high_volume(audit_db, sink) -> None:  # noqa: ANN001
    engine, _ = audit_db
    for i in range(6):
        sink.record(make_ctx(resource_id=f"p{i}"))
    sink.record(make_ctx(BREAK_GLASS, resource_id="p1"))
    rows = _run(engine, "high-volume", threshold="5")
    assert len(rows) == 1
    assert rows[0]["user_id"] == CLINICIAN.practitioner_id and rows[0]["patients"] == 6
    assert _run(engine, "high-volume", threshold="7") == []


def test_out_of_hours(audit_db, sink) -> None:  # noqa: ANN001
    engine, _ = audit_db
    # Tuesday 14:00 UTC in January = 14:00 in London; Tuesday 23:30; Saturday 11:00
    times = [datetime(2025, 1, 7, 14, 0, tzinfo=UTC), datetime(2025, 1, 7, 23, 30, tzinfo=UTC),
             datetime(2025, 1, 11, 11, 0, tzinfo=UTC)]
    for i, ts in enumerate(times):
        sink.record_event(event_from_context(make_ctx(resource_id=f"p{i}"), recorded=ts))
    with read_tx(engine) as conn:
        rows = run_report(conn, "out-of-hours", datetime(2025, 1, 1, tzinfo=UTC),
                          datetime(2025, 2, 1, tzinfo=UTC))
    assert [r["patients"] for r in rows] == ["p1", "p2"]
    assert rows[0]["local_time"] == "Tue 2025-01-07 23:30"


def test_same_surname_or_address(audit_db, sink) -> None:  # noqa: ANN001
    engine, _ = audit_db
    home = [{"line": ["1 High Street"], "postalCode": "LS1 4AB"}]
    with write_tx(engine) as conn:
        write_version(conn, "Patient", "rel", {"resourceType": "Patient", "id": "rel",
                                               "name": [{"family": "Smith"}]}, method="PUT")
        write_version(conn, "Patient", "nbr", {"resourceType": "Patient", "id": "nbr",
                                               "name": [{"family": "Jones"}], "address": home},
                      method="PUT")
        write_version(conn, "Patient", "other", {"resourceType": "Patient", "id": "other",
                                                 "name": [{"family": "Brown"}]}, method="PUT")
        write_version(conn, "Practitioner", CLINICIAN.practitioner_id,
                      {"resourceType": "Practitioner", "id": CLINICIAN.practitioner_id,
                       "address": [{"line": ["1 high street"], "postalCode": "ls14ab"}]},
                      method="PUT")
    for pid in ("rel", "nbr", "other"):
        sink.record(make_ctx(resource_id=pid))
    rows = _run(engine, "same-surname-or-address")
    assert {(r["patients"], r["match"]) for r in rows} == {("rel", "surname"), ("nbr", "address")}
    assert surname_of("Dr Jane Smith") == "smith" and surname_of("Prof. A. O'Neil") == "o'neil"


def test_csv_neutralises_formulas() -> None:
    text = to_csv([{"reason": "=HYPERLINK(\"x\")", "user_name": "Ann"}], ["user_name", "reason"])
    rows = list(csv.reader(io.StringIO(text)))
    assert rows == [["user_name", "reason"], ["Ann", "'=HYPERLINK(\"x\")"]]
    assert set(REPORTS) == {"break-glass", "no-relationship", "patient-history", "high-volume",
                            "out-of-hours", "same-surname-or-address"}


def test_passwords_use_scrypt() -> None:
    stored = hash_password("correct horse battery")
    assert stored.startswith("scrypt$16384$8$1$")
    assert check_password("correct horse battery", stored)
    assert not check_password("wrong password!!", stored)
    assert hash_password("correct horse battery") != stored  # salted


def _cli(args: list[str], url: str, monkeypatch, capsys, stdin: str | None = None):  # noqa: ANN001, ANN202
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = cli.main([*args, "--database", url])
    return code, capsys.readouterr()


def test_cli_commands(audit_db, sink, monkeypatch, capsys) -> None:  # noqa: ANN001
    engine, settings = audit_db
    monkeypatch.setenv("EXCHANGE_VAR_DIR", str(settings.var_dir))
    url = engine.url.render_as_string(hide_password=False)
    sink.record(make_ctx(BREAK_GLASS, resource_id="p2"))
    sink.record(make_ctx(Requester(kind="user", client_id="x", practitioner_id="u2"),
                         resource_id="p3"))
    code, out = _cli(["audit", "verify"], url, monkeypatch, capsys)
    assert code == 0 and out.out.startswith("OK: 2 events")
    code, out = _cli(["audit", "report", "break-glass", "--format", "json"], url, monkeypatch, capsys)
    assert code == 0 and [r["patients"] for r in orjson.loads(out.out)] == ["p2"]
    today = datetime.now(UTC).date().isoformat()
    code, out = _cli(["audit", "report", "patient-history", "--patient", "p3", "--from", today,
                      "--to", today], url, monkeypatch, capsys)
    assert code == 0 and out.out.splitlines()[0].startswith("recorded,user_name")
    assert len(out.out.splitlines()) == 2
    code, out = _cli(["audit", "checkpoint"], url, monkeypatch, capsys)
    assert code == 0 and "2 events" in out.out
    code, out = _cli(["audit", "verify", "--json"], url, monkeypatch, capsys)
    assert code == 0 and orjson.loads(out.out)["checkpoints_checked"] == 1
    code, out = _cli(["ig-users", "add", "ig.lead"], url, monkeypatch, capsys, stdin="a long password\n")
    assert code == 0 and "created" in out.out
    code, out = _cli(["ig-users", "add", "short", "--password", "abc"], url, monkeypatch, capsys)
    assert code == 2
    with read_tx(engine) as conn:
        assert authenticate(conn, "ig.lead", "a long password")
        assert not authenticate(conn, "ig.lead", "another password")
        assert not authenticate(conn, "nobody", "a long password")
        assert conn.execute(select(ig_user.c.username)).scalars().all() == ["ig.lead"]
    code, out = _cli(["ig-users", "disable", "ig.lead"], url, monkeypatch, capsys)
    assert code == 0 and "disabled" in out.out
    with read_tx(engine) as conn:
        assert not authenticate(conn, "ig.lead", "a long password")
    assert _cli(["ig-users", "disable", "ig.lead", "--enable"], url, monkeypatch, capsys)[0] == 0
    assert _cli(["ig-users", "disable", "nobody"], url, monkeypatch, capsys)[0] == 2
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    code, out = _cli(["audit", "retention", "--before", tomorrow], url, monkeypatch, capsys)
    assert code == 0 and "events 1..2" in out.out
    archive = out.out.strip().rsplit(" to ", 1)[1]
    code, out = _cli(["audit", "verify-archive", archive], url, monkeypatch, capsys)
    assert code == 0 and "events 1..2" in out.out
    code, out = _cli(["audit", "verify"], url, monkeypatch, capsys)
    assert code == 0, out.out
