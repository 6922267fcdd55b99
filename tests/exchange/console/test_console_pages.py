"""The IG console pages: sign-in, CSRF, search, event view, reports, CSV, verification."""

from __future__ import annotations

import csv
import io
import re

from console_helpers import PASSWORD, csrf_of, sign_in
from sqlalchemy import select, text

from exchange.audit import triggers
from exchange.audit.tables import audit_event
from exchange.console.accounts import set_disabled
from exchange.db.engine import write_tx


def _events(engine) -> list:  # noqa: ANN001
    with engine.connect() as conn:
        return conn.execute(select(audit_event).order_by(audit_event.c.seq)).all()


def test_pages_need_sign_in(console) -> None:  # noqa: ANN001
    client, _, _ = console
    for path in ("/ig/", "/ig/events", "/ig/events.csv", "/ig/reports", "/ig/verify"):
        resp = client.get(path, follow_redirects=False)
        assert resp.status_code == 303 and resp.headers["location"].startswith("/ig/login?next=")
    client.cookies.set("ig_session", "forged.value.here", path="/ig")
    assert client.get("/ig/", follow_redirects=False).status_code == 303


def test_sign_in_checks_csrf_and_password_and_is_audited(console) -> None:  # noqa: ANN001
    client, _, (engine, _) = console
    form = client.get("/ig/login")
    assert form.status_code == 200 and "Content-Security-Policy" in form.headers
    bad_csrf = client.post("/ig/login", data={"username": "ig.lead", "password": PASSWORD,
                                               "csrf_token": "wrong"}, follow_redirects=False)
    assert bad_csrf.status_code == 400
    wrong = sign_in(client, password="not the password")
    assert wrong.status_code == 401 and "not right" in wrong.text
    assert "ig_session" not in client.cookies
    ok = sign_in(client)
    assert ok.status_code == 303 and ok.headers["location"] == "/ig/"
    assert "HttpOnly" in ok.headers["set-cookie"] and "samesite=strict" in ok.headers["set-cookie"].lower()
    logins = [r for r in _events(engine) if r.subtype == "ig-console-login"]
    assert [r.outcome for r in logins] == [4, 0]
    assert logins[-1].agent == "ig:ig.lead"


def test_overview_shows_counts_charts_and_status(signed_in) -> None:  # noqa: ANN001
    client, _, _ = signed_in
    page = client.get("/ig/")
    assert page.status_code == 200
    assert page.text.count("<svg") == 2 and "<script" not in page.text
    assert "Break-glass accesses by organisation" in page.text
    assert re.search(r'<td><a href="/ig/events\?organization=RX1&amp;break_glass=yes">RX1</a></td><td>1</td>',
                     page.text)
    assert "has not been checked" in page.text


def test_search_filters_and_opening_an_event_is_audited(signed_in) -> None:  # noqa: ANN001
    client, _, (engine, _) = signed_in
    page = client.get("/ig/events", params={"break_glass": "yes"})
    assert page.status_code == 200 and "1 event found" in page.text
    assert "Dr Amir Khan" in page.text and "Dr Jane Smith" not in page.text
    link = re.search(r'href="(/ig/events/[0-9a-f-]{36})"', page.text).group(1)
    event = client.get(link)
    assert event.status_code == 200
    assert "Unconscious patient in ED" in event.text and "None found" in event.text
    assert "Position in the log" in event.text
    views = [r for r in _events(engine) if r.client_id == "ig-console" and r.type_code == "rest"]
    assert [v.subtype for v in views] == ["search-type", "read"]
    assert views[-1].released == 1
    assert client.get("/ig/events", params={"patient": "p3"}).text.count("/ig/events/") == 1
    assert "1 event found" in client.get("/ig/events", params={"outcome": "4", "user": "smith"}).text
    assert client.get("/ig/events", params={"date_from": "yesterday"}).status_code == 400
    assert client.get("/ig/events/no-such").status_code == 404


def test_csv_export(signed_in) -> None:  # noqa: ANN001
    client, _, _ = signed_in
    resp = client.get("/ig/events.csv", params={"break_glass": "yes"})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
    assert "attachment" in resp.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(resp.content.decode("utf-8-sig"))))
    assert len(rows) == 1 and rows[0]["reason"] == "Unconscious patient in ED"
    assert rows[0]["patients"] == "p2" and rows[0]["organization"] == "RX1"


def test_every_report_runs(signed_in) -> None:  # noqa: ANN001
    client, _, _ = signed_in
    index = client.get("/ig/reports")
    names = re.findall(r'href="/ig/reports/([a-z-]+)"', index.text)
    assert len(names) == 6
    for name in names:
        assert client.get(f"/ig/reports/{name}").status_code == 200, name
    bg = client.get("/ig/reports/break-glass")
    assert "Unconscious patient in ED" in bg.text and "1 row." in bg.text
    hist = client.get("/ig/reports/patient-history", params={"patient": "p2"})
    assert "1 row." in hist.text and "Dr Amir Khan" in hist.text
    data = client.get("/ig/reports/no-relationship", params={"format": "csv"})
    assert data.headers["content-type"].startswith("text/csv") and "p2" in data.text
    assert client.get("/ig/reports/high-volume", params={"threshold": "x"}).status_code == 400
    assert client.get("/ig/reports/nope").status_code == 404


def test_verification_status_needs_csrf_and_shows_tampering(signed_in) -> None:  # noqa: ANN001
    client, _, (engine, _) = signed_in
    page = client.get("/ig/verify")
    assert client.post("/ig/verify", data={"csrf_token": "forged"}).status_code == 400
    done = client.post("/ig/verify", data={"csrf_token": csrf_of(page.text)})
    assert done.status_code == 200 and "The log is intact." in done.text
    with engine.begin() as conn:
        triggers.uninstall(conn)
        conn.execute(text("UPDATE audit_event SET outcome = 0 WHERE seq = 3"))
        triggers.install(conn)
    again = client.post("/ig/verify", data={"csrf_token": csrf_of(page.text)})
    assert "altered or damaged" in again.text and "event 3" in again.text
    assert "altered or damaged" in client.get("/ig/").text


def test_audit_failure_shows_no_data(signed_in) -> None:  # noqa: ANN001
    client, app, _ = signed_in
    app.state.audit.inject_failure(True)
    try:
        page = client.get("/ig/events", params={"break_glass": "yes"})
    finally:
        app.state.audit.inject_failure(False)
    assert page.status_code == 503
    assert "Dr Amir Khan" not in page.text and "Unconscious" not in page.text


def test_sign_out_needs_csrf(signed_in) -> None:  # noqa: ANN001
    client, _, _ = signed_in
    token = csrf_of(client.get("/ig/reports").text)
    assert client.post("/ig/logout", data={"csrf_token": "bad"}).status_code == 400
    out = client.post("/ig/logout", data={"csrf_token": token}, follow_redirects=False)
    assert out.status_code == 303
    assert client.get("/ig/", follow_redirects=False).status_code == 303


def test_disabling_an_account_ends_its_session(signed_in) -> None:  # noqa: ANN001
    client, _, (engine, _) = signed_in
    assert client.get("/ig/", follow_redirects=False).status_code == 200
    with write_tx(engine) as conn:
        set_disabled(conn, "ig.lead")
    assert client.get("/ig/", follow_redirects=False).status_code == 303
    assert sign_in(client).status_code == 401


def test_repeated_failed_sign_ins_lock_the_account_for_a_while(console) -> None:  # noqa: ANN001
    client, _, _ = console
    for _ in range(5):
        assert sign_in(client, password="guessing wrongly").status_code == 401
    locked = sign_in(client)  # even the right password is refused for now
    assert locked.status_code == 429 and "Too many failed attempts" in locked.text
    assert "ig_session" not in client.cookies
