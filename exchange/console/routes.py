"""The IG console: server-rendered pages at ``/ig/`` for information-governance leads.

Issue 7, "The IG console": sign in with a local IG account (scrypt), search and filter
the log, open an event, run each report, see access volume over time and break-glass by
organisation (inline SVG), export CSV, and check the chain's verification status. No
JavaScript; every form carries a CSRF token and every POST checks it
(:mod:`exchange.console.session`). Viewing or exporting the log, and every sign-in, is
itself recorded in the log through the audit sink.
"""

from __future__ import annotations

import math
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Form, Request
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.responses import HTMLResponse, RedirectResponse, Response

from exchange.audit.reports import EVENT_COLUMNS, REPORTS, run_report, to_csv
from exchange.audit.verify import verify
from exchange.console import charts, queries, session
from exchange.console.accounts import account_active, authenticate
from exchange.db.engine import read_tx
from exchange.outcome import FhirError, Unavailable
from exchange.pipeline.context import Released, RequestContext, Requester

HERE = Path(__file__).parent
env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))
router = APIRouter(prefix="/ig", include_in_schema=False)

OUTCOMES = {0: "Success", 4: "Refused", 8: "Server failure", 12: "Major failure"}
PURPOSES = {"TREAT": "Direct care", "ETREAT": "Emergency care", "BTG": "Break-glass"}
ACTIONS = {"C": "create", "R": "read", "U": "update", "D": "delete", "E": "query or operation"}
OPTION_LABELS = {"patient": "Patient id", "threshold": "At least this many different patients",
                 "day_start": "Working day starts (hour)", "day_end": "Working day ends (hour)"}
COLUMN_LABELS = {"recorded": "When (UTC)", "local_time": "Local time", "user_name": "User",
                 "user_id": "SDS id", "client_id": "System", "organization": "Organisation",
                 "role": "Role", "purpose": "Purpose", "interaction": "Access", "outcome": "Result",
                 "patients": "Patients", "released": "Shown", "withheld": "Withheld",
                 "reason": "Reason given", "event_id": "Event", "match": "Match",
                 "events": "Accesses", "first": "First", "last": "Last"}
MAX_PAGE = 100_000  # a page number beyond any log (keeps OFFSET within the integer range)
MAX_FAILURES = 5  # failed sign-ins per account within LOCKOUT (counted from the log itself)
LOCKOUT = timedelta(minutes=15)
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}


def _services(request: Request) -> tuple[Any, Any, Any]:
    """(engine, settings, audit sink or None) from the app the router is mounted in."""
    svc = getattr(request.app.state, "services", None)
    if svc is not None:
        return svc.engine, svc.settings, svc.audit
    audit = request.app.state.audit
    return audit.engine, audit.settings, audit


def _render(request: Request, template: str, *, status: int = 200,
            sess: session.Session | None = None, **values: Any) -> HTMLResponse:
    html = env.get_template(template).render(session=sess, csrf=sess.csrf if sess else values.pop("csrf", ""),
                                             outcomes=OUTCOMES, **values)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def _login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/ig/login?{urlencode({'next': target})}", status_code=303)


def _signed_in(request: Request) -> session.Session | None:
    """The session, if its cookie is valid and the account still exists and is enabled."""
    engine, settings, _ = _services(request)
    sess = session.current_session(request, settings)
    if sess is None:
        return None
    if sess.external:  # the identity provider vouched for this user at sign-in
        return sess
    with read_tx(engine) as conn:
        return sess if account_active(conn, sess.username) else None


def _record_view(request: Request, sess: session.Session, *, interaction: str, path: str,
                 query: str, event_ids: list[str]) -> None:
    """Reading the log is itself audited (raises Unavailable: show no data)."""
    sink = _services(request)[2]
    if sink is None:
        return
    ctx = RequestContext(
        requester=Requester(kind="user", client_id="ig-console", practitioner_id=f"ig:{sess.username}",
                            practitioner_name=sess.username, role="IG"),
        method=request.method, path=path, query=query, interaction=interaction,
        resource_type="AuditEvent", remote_addr=request.client.host if request.client else None)
    ctx.released = [Released("AuditEvent", i, "1") for i in event_ids]
    ctx.outcome_status = 200
    sink.record(ctx)


def _unavailable(request: Request, sess: session.Session) -> HTMLResponse:
    return _render(request, "error.html", status=503, sess=sess, title="Unavailable",
                   heading="The access log cannot record this view right now",
                   error="Nothing is shown, because every view of the log must itself be recorded. "
                         "Try again in a few minutes.")


@router.get("/static/console.css")
def stylesheet() -> Response:
    return Response((HERE / "templates" / "console.css").read_bytes(), media_type="text/css",
                    headers={"Cache-Control": "max-age=3600"})


@router.get("/login")
def login_form(request: Request, next: str = "/ig/") -> HTMLResponse:
    settings = _services(request)[1]
    token, fresh = session.pre_login_token(request, settings)
    resp = _render(request, "login.html", title="Sign in", next=next, username="", csrf=token)
    if fresh:
        session.set_pre_login_cookie(resp, request, settings, token)
    return resp


@router.post("/login")
def login(request: Request, username: str = Form(""), password: str = Form(""),
          csrf_token: str = Form(""), next: str = Form("/ig/")) -> Response:
    engine, settings, sink = _services(request)
    if not session.pre_login_ok(request, settings, csrf_token):
        return _render(request, "error.html", status=400, title="Expired form",
                       heading="This form has expired", error="Please go back and sign in again.")
    username = queries.printable(username)[:128]  # no account name holds control characters
    with read_tx(engine) as conn:
        if queries.recent_failed_logins(conn, f"ig:{username[:64]}", LOCKOUT) >= MAX_FAILURES:
            return _render(request, "login.html", status=429, title="Sign in", next=next,
                           username=username, csrf=csrf_token,
                           error="Too many failed attempts for this account. Wait 15 minutes, "
                                 "or ask your administrator to reset the password.")
        ok = authenticate(conn, username, password)
    if sink is not None:
        try:
            sink.record_token_request(200 if ok else 401, "ig-console",
                                      "IG console sign-in" if ok else "IG console sign-in refused",
                                      subtype="ig-console-login", practitioner_id=f"ig:{username[:64]}",
                                      practitioner_name=username[:128],
                                      remote_addr=request.client.host if request.client else None)
        except Unavailable:
            return _render(request, "error.html", status=503, title="Unavailable",
                           heading="Sign-in is unavailable", error="The access log cannot be written.")
    if not ok:
        resp = _render(request, "login.html", status=401, title="Sign in", next=next,
                       username=username, error="The username or password is not right.",
                       csrf=csrf_token)
        return resp
    target = next if next.startswith("/ig") and not next.startswith("//") else "/ig/"
    resp = RedirectResponse(target, status_code=303)
    session.start_session(resp, request, settings, username.strip())
    return resp


@router.post("/login-token")
def login_with_identity_provider(request: Request, access_token: str = Form(""),
                                 csrf_token: str = Form(""), next: str = Form("/ig/")) -> Response:
    """Sign-in through the configured external identity provider: an access token it
    issued (a trusted issuer, docs/authorisation.md) for a user in an IG role
    (R0001 Privacy Officer, R5105 Caldicott Guardian) opens a console session."""
    from exchange.auth.authenticate import authenticate as authenticate_token
    from exchange.interactions.audit_log import IG_ROLES

    engine, settings, sink = _services(request)
    if not session.pre_login_ok(request, settings, csrf_token):
        return _render(request, "error.html", status=400, title="Expired form",
                       heading="This form has expired", error="Please go back and sign in again.")
    who, ok, why = None, False, "IG console sign-in (identity provider) refused"
    try:
        with read_tx(engine) as conn:
            who = authenticate_token(conn, settings, f"Bearer {access_token.strip()}")
        external = who.issuer not in (None, settings.base_url)
        ok = external and who.kind == "user" and who.role in IG_ROLES and bool(who.practitioner_id)
    except FhirError:
        ok = False
    if sink is not None:
        try:
            sink.record_token_request(200 if ok else 401, who.client_id if who else "ig-console",
                                      "IG console sign-in (identity provider)" if ok else why,
                                      subtype="ig-console-login",
                                      practitioner_id=who.practitioner_id if who else None,
                                      practitioner_name=who.practitioner_name if who else None,
                                      role=who.role if who else None,
                                      organization=who.organization if who else None,
                                      remote_addr=request.client.host if request.client else None)
        except Unavailable:
            return _render(request, "error.html", status=503, title="Unavailable",
                           heading="Sign-in is unavailable", error="The access log cannot be written.")
    if not ok or who is None:
        return _render(request, "login.html", status=401, title="Sign in", next=next, username="",
                       csrf=csrf_token, error="The identity provider's token was not accepted for the "
                                              "IG console (it must be current and name an IG role).")
    target = next if next.startswith("/ig") and not next.startswith("//") else "/ig/"
    resp = RedirectResponse(target, status_code=303)
    name = who.practitioner_name or who.practitioner_id or "unknown"
    session.start_session(resp, request, settings, f"idp:{who.practitioner_id}:{name}"[:128], external=True)
    return resp


@router.post("/logout")
def logout(request: Request, csrf_token: str = Form("")) -> Response:
    sess = _signed_in(request)
    if sess is not None and not session.csrf_ok(sess, csrf_token):
        return _render(request, "error.html", status=400, sess=sess, title="Expired form",
                       heading="This form has expired")
    resp = RedirectResponse("/ig/login", status_code=303)
    session.end_session(resp)
    return resp


def _status_file(settings: Any) -> Path:
    return Path(settings.var_dir) / "audit-last-verification.json"


def _verification(request: Request) -> dict[str, Any] | None:
    """The last verification result, shared by every worker through a file under var/."""
    try:
        return orjson.loads(_status_file(_services(request)[1]).read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return None


def _save_verification(settings: Any, result: dict[str, Any]) -> None:
    path = _status_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(orjson.dumps(result))
    os.replace(tmp, path)


@router.get("/")
def home(request: Request) -> Response:
    sess = _signed_in(request)
    if sess is None:
        return _login_redirect(request)
    engine = _services(request)[0]
    with read_tx(engine) as conn:
        volume = queries.daily_volume(conn)
        bg = queries.break_glass_by_org(conn)
        totals = queries.totals(conn)
    return _render(request, "home.html", sess=sess, nav="home", title="Overview",
                   verification=_verification(request), totals=totals, volume=volume, bg=bg,
                   volume_chart=charts.column_chart(volume, "Accesses per day, last 30 days"),
                   bg_chart=charts.bar_chart(bg, "Break-glass accesses by organisation",
                                             chart_id="bg"))


@router.get("/verify")
def verify_page(request: Request) -> Response:
    sess = _signed_in(request)
    if sess is None:
        return _login_redirect(request)
    return _render(request, "verify.html", sess=sess, nav="verify", title="Check the log",
                   verification=_verification(request))


@router.post("/verify")
def verify_now(request: Request, csrf_token: str = Form("")) -> Response:
    sess = _signed_in(request)
    if sess is None:
        return _login_redirect(request)
    if not session.csrf_ok(sess, csrf_token):
        return _render(request, "error.html", status=400, sess=sess, title="Expired form",
                       heading="This form has expired", error="Please try again.")
    engine, settings, _ = _services(request)
    result = verify(engine, settings)
    _save_verification(settings, {**result.as_dict(), "by": sess.username})
    return RedirectResponse("/ig/verify", status_code=303)


def _event_query(request: Request) -> tuple[queries.Filters, str]:
    filters = queries.Filters.from_query(request.query_params)
    return filters, urlencode(filters.as_params())


@router.get("/events")
def events(request: Request, page: int = 1) -> Response:
    sess = _signed_in(request)
    if sess is None:
        return _login_redirect(request)
    page = min(max(page, 1), MAX_PAGE)
    filters, query = _event_query(request)
    try:
        with read_tx(_services(request)[0]) as conn:
            rows, total = queries.list_events(conn, filters, page=page)
    except FhirError as exc:
        return _render(request, "events.html", status=400, sess=sess, nav="events", title="Search",
                       f=filters, rows=[], total=0, page=1, pages=1, query=query,
                       error=exc.diagnostics)
    try:
        _record_view(request, sess, interaction="search-type", path="/ig/events", query=query,
                     event_ids=[r["event_id"] for r in rows])
    except Unavailable:
        return _unavailable(request, sess)
    pages = max(1, math.ceil(total / queries.PAGE_SIZE))
    return _render(request, "events.html", sess=sess, nav="events", title="Search the log",
                   f=filters, rows=rows, total=total, page=page, pages=pages, query=query)


def _csv_response(text: str, stem: str) -> Response:
    name = f"{stem}-{datetime.now(UTC).strftime('%Y%m%d-%H%M')}.csv"
    return Response(text.encode("utf-8-sig"), media_type="text/csv; charset=utf-8",
                    headers={**SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/events.csv")
def events_csv(request: Request) -> Response:
    sess = _signed_in(request)
    if sess is None:
        return _login_redirect(request)
    filters, query = _event_query(request)
    try:
        with read_tx(_services(request)[0]) as conn:
            rows, _ = queries.list_events(conn, filters, limit=100_000)
    except FhirError as exc:
        return _render(request, "error.html", status=400, sess=sess, title="Export",
                       heading="The export could not be made", error=exc.diagnostics)
    try:
        _record_view(request, sess, interaction="search-type", path="/ig/events.csv", query=query,
                     event_ids=[r["event_id"] for r in rows])
    except Unavailable:
        return _unavailable(request, sess)
    for r in rows:
        r["patients"] = " ".join(r["patients"])
    return _csv_response(to_csv(rows, EVENT_COLUMNS), "access-log")


@router.get("/events/{event_id}")
def event_detail(request: Request, event_id: str) -> Response:
    sess = _signed_in(request)
    if sess is None:
        return _login_redirect(request)
    ev = None
    if event_id.isprintable() and len(event_id) <= 64:  # event ids are UUIDs
        with read_tx(_services(request)[0]) as conn:
            ev = queries.get_event(conn, event_id)
    if ev is None:
        return _render(request, "error.html", status=404, sess=sess, title="Not found",
                       heading="There is no event with that reference")
    try:
        _record_view(request, sess, interaction="read", path=f"/ig/events/{event_id}", query="",
                     event_ids=[event_id])
    except Unavailable:
        return _unavailable(request, sess)
    return _render(request, "event.html", sess=sess, nav="events", title="Event", ev=ev,
                   purposes=PURPOSES, actions=ACTIONS)


@router.get("/reports")
def reports(request: Request) -> Response:
    sess = _signed_in(request)
    if sess is None:
        return _login_redirect(request)
    return _render(request, "reports.html", sess=sess, nav="reports", title="Reports",
                   reports=list(REPORTS.values()))


@router.get("/reports/{name}")
def report(request: Request, name: str) -> Response:
    sess = _signed_in(request)
    if sess is None:
        return _login_redirect(request)
    rep = REPORTS.get(name)
    if rep is None:
        return _render(request, "error.html", status=404, sess=sess, title="Not found",
                       heading="There is no such report")
    q = request.query_params
    today = datetime.now(UTC).date()
    opts = {"date_from": q.get("date_from") or str(today - timedelta(days=30)),
            "date_to": q.get("date_to") or str(today)}
    opts.update({o: q.get(o, "") for o in rep.options})
    query = urlencode({k: v for k, v in opts.items() if v})
    values = dict(sess=sess, nav="reports", title=rep.title, report=rep, opts=opts,
                  option_labels=OPTION_LABELS, column_labels=COLUMN_LABELS, columns=rep.columns,
                  query=query, rows=None)
    if "patient" in rep.options and not opts["patient"]:
        return _render(request, "report.html", **values)
    try:
        start = queries._day(opts["date_from"])[0]
        end = queries._day(opts["date_to"])[1]
        with read_tx(_services(request)[0]) as conn:
            rows = run_report(conn, name, start, end, **{o: opts[o] for o in rep.options})
    except (FhirError, ValueError) as exc:
        msg = exc.diagnostics if isinstance(exc, FhirError) else "Check the numbers entered."
        return _render(request, "report.html", status=400, error=msg, **values)
    try:
        _record_view(request, sess, interaction="operation", path=f"/ig/reports/{name}", query=query,
                     event_ids=[r["event_id"] for r in rows if "event_id" in r])
    except Unavailable:
        return _unavailable(request, sess)
    if q.get("format") == "csv":
        return _csv_response(to_csv(rows, rep.columns), f"report-{name}")
    values["rows"] = rows
    return _render(request, "report.html", **values)
