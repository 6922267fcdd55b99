"""IG console sessions and CSRF protection (OWASP session management / CSRF cheat sheets).

The session is a cookie signed with the server secret (itsdangerous, HMAC-SHA1 over a
timestamped payload): ``{"u": username, "c": csrf token}``; it expires after
:data:`SESSION_SECONDS`. Every form carries the session's CSRF token, and every POST
is refused unless the submitted token matches (constant-time compare). Before sign-in,
a separate signed ``ig_csrf`` cookie carries the token for the sign-in form.
Cookies are HttpOnly, SameSite=Strict, and Secure when served over HTTPS.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from exchange.secrets import server_secret
from exchange.settings import Settings

SESSION_COOKIE = "ig_session"
PRE_COOKIE = "ig_csrf"
SESSION_SECONDS = 8 * 3600


@dataclass(frozen=True)
class Session:
    username: str
    csrf: str
    external: bool = False  # signed in through the external identity provider (no local account)


def _serializer(settings: Settings, purpose: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(server_secret(settings), salt=f"ig-console-{purpose}")


def current_session(request: Request, settings: Settings) -> Session | None:
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw:
        return None
    try:
        data = _serializer(settings, "session").loads(raw, max_age=SESSION_SECONDS)
    except BadSignature:
        return None
    if not isinstance(data, dict) or not data.get("u") or not data.get("c"):
        return None
    return Session(str(data["u"]), str(data["c"]), bool(data.get("x")))


def _set(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/ig")


def start_session(response: Response, request: Request, settings: Settings, username: str,
                  *, external: bool = False) -> None:
    data = {"u": username, "c": secrets.token_urlsafe(24)}
    if external:
        data["x"] = 1
    token = _serializer(settings, "session").dumps(data)
    _set(response, request, SESSION_COOKIE, token, SESSION_SECONDS)
    response.delete_cookie(PRE_COOKIE, path="/ig")


def end_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/ig")


def pre_login_token(request: Request, settings: Settings) -> tuple[str, bool]:
    """The CSRF token for the sign-in form, and whether it is new (then set its cookie)."""
    existing = _read_pre(request, settings)
    return (existing, False) if existing else (secrets.token_urlsafe(24), True)


def set_pre_login_cookie(response: Response, request: Request, settings: Settings, token: str) -> None:
    _set(response, request, PRE_COOKIE, _serializer(settings, "pre").dumps(token), 3600)


def _read_pre(request: Request, settings: Settings) -> str | None:
    raw = request.cookies.get(PRE_COOKIE)
    if not raw:
        return None
    try:
        value = _serializer(settings, "pre").loads(raw, max_age=3600)
    except BadSignature:
        return None
    return value if isinstance(value, str) else None


def pre_login_ok(request: Request, settings: Settings, submitted: str) -> bool:
    expected = _read_pre(request, settings)
    return bool(expected) and hmac.compare_digest(expected, submitted or "")


def csrf_ok(session: Session, submitted: str) -> bool:
    return hmac.compare_digest(session.csrf, submitted or "")
