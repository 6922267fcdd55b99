"""Browser test of the IG console in headless Chromium (Debian's package, via Playwright).

An IG lead signs in, finds a break-glass event, opens it and exports CSV. The app is
served by uvicorn in a thread on a free 127.0.0.1 port. Set IG_SCREENSHOTS=DIR to save
the screenshots used in docs/ig-guide.md.
"""

from __future__ import annotations

import csv
import io
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from audit_helpers import BREAK_GLASS, CLINICIAN, make_ctx
from console_helpers import PASSWORD, build_app

from exchange.audit import triggers
from exchange.audit.event import event_from_context
from exchange.audit.sink import AuditSink
from exchange.console.accounts import add_user
from exchange.db.engine import make_engine, write_tx
from exchange.db.metadata import metadata
from exchange.pipeline.context import Requester
from exchange.settings import Settings

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="Debian's chromium is not installed (apt-get install chromium)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    import exchange.audit.tables  # noqa: F401
    import exchange.db.tables  # noqa: F401

    url = f"sqlite:///{tmp_path}/console.db"
    engine = make_engine(url)
    with engine.begin() as conn:
        metadata.create_all(conn)
        triggers.install(conn)
    settings = Settings(database_url=url, var_dir=tmp_path / "var", secret_key="browser-test")
    sink = AuditSink(engine, settings)
    with write_tx(engine) as conn:
        add_user(conn, "ig.lead", PASSWORD)
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    others = [Requester(kind="user", client_id="community-ehr", practitioner_id=f"5551000{i}",
                        practitioner_name=name, role="R8001", organization=org, purpose_of_use="TREAT")
              for i, (name, org) in enumerate([("Nurse Ada Obi", "RY6"), ("Dr Li Wei", "A81002")])]
    for day in range(14):
        for k in range(3 + (day * 7) % 5):
            who = [CLINICIAN, *others][(day + k) % 3]
            ctx = make_ctx(who, resource_id=f"p{(day * 3 + k) % 9}")
            sink.record_event(event_from_context(ctx, recorded=now - timedelta(days=day, minutes=k)))
    sink.record(make_ctx(BREAK_GLASS, resource_id="p2", relationship=False))
    sink.record(make_ctx(status=403, resource_id="p3"))
    app = build_app(engine, settings, sink)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):  # wait (bounded) for the server to accept connections
        if server.started:
            break
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
    sink.close()
    engine.dispose()


def test_ig_lead_finds_opens_and_exports_a_break_glass_event(served: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    shots = Path(os.environ["IG_SCREENSHOTS"]) if os.environ.get("IG_SCREENSHOTS") else None

    def snap(page, name: str) -> None:  # noqa: ANN001
        if shots:
            shots.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shots / f"{name}.png"), full_page=True)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900}
                                       ).new_page()
            page.goto(f"{served}/ig/")
            assert page.url.startswith(f"{served}/ig/login")
            snap(page, "sign-in")
            page.get_by_label("Username").fill("ig.lead")
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in", exact=True).click()
            page.wait_for_url(f"{served}/ig/")
            assert page.get_by_role("heading", name="Overview").is_visible()
            assert page.locator("svg[role=img]").count() == 2
            page.get_by_role("link", name="Check the log").click()
            page.get_by_role("button", name="Check the log now").click()
            assert page.get_by_text("The log is intact.").is_visible()
            page.get_by_role("link", name="Overview").click()
            snap(page, "overview")

            page.get_by_role("link", name="Search the log").click()
            page.get_by_label("Break-glass only").check()
            page.get_by_role("button", name="Search").click()
            assert page.get_by_text("1 event found").is_visible()
            snap(page, "search-break-glass")
            page.locator("table.events").get_by_role("link", name="Open").click()
            assert page.get_by_text("Unconscious patient in ED").first.is_visible()
            assert page.get_by_role("heading", name="Position in the log").is_visible()
            snap(page, "event")
            page.go_back()

            with page.expect_download() as info:
                page.get_by_role("link", name="Export these as CSV").click()
            path = tmp_path / "export.csv"
            info.value.save_as(path)
            rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
            assert len(rows) == 1
            assert rows[0]["reason"] == "Unconscious patient in ED"
            assert rows[0]["user_name"] == "Dr Amir Khan" and rows[0]["patients"] == "p2"

            page.get_by_role("link", name="Reports").click()
            page.get_by_role("link", name="Who has looked at a patient's record").click()
            page.get_by_label("Patient id").fill("p2")
            page.get_by_role("button", name="Run report").click()
            assert page.locator("table.events tbody tr").count() >= 1
            snap(page, "report-patient-history")
        finally:
            browser.close()
