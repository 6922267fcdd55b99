"""Local IG console accounts (issue 7): passwords hashed with scrypt (RFC 7914).

Stored as ``scrypt$N$r$p$salt$hash`` (base64), compared in constant time. Created with
``exchange ig-users add USERNAME``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from datetime import UTC, datetime

from sqlalchemy import Connection, insert, select, update

from exchange.audit.tables import ig_user

N, R, P = 2**14, 8, 1
MIN_PASSWORD = 10


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=N, r=R, p=P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${N}${R}${P}${b64(salt).decode()}${b64(digest).decode()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r),
                             p=int(p), dklen=32)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, base64.b64decode(digest))


# a real hash to compare against when the user does not exist (equal timing)
_DUMMY = hash_password("not-a-real-password")


def add_user(conn: Connection, username: str, password: str) -> bool:
    """Create or reset a local IG account; returns True if it was created."""
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"the password must have at least {MIN_PASSWORD} characters")
    username = username.strip()
    if not username:
        raise ValueError("the username must not be empty")
    hashed = hash_password(password)
    exists = conn.execute(select(ig_user.c.username).where(ig_user.c.username == username)).first()
    if exists:
        conn.execute(update(ig_user).where(ig_user.c.username == username)
                     .values(password_hash=hashed, disabled=False))
        return False
    conn.execute(insert(ig_user).values(username=username, password_hash=hashed,
                                        created=datetime.now(UTC), disabled=False))
    return True


def authenticate(conn: Connection, username: str, password: str) -> bool:
    row = conn.execute(select(ig_user.c.password_hash, ig_user.c.disabled)
                       .where(ig_user.c.username == username.strip())).first()
    if row is None:
        check_password(password, _DUMMY)
        return False
    return check_password(password, row.password_hash) and not row.disabled


def account_active(conn: Connection, username: str) -> bool:
    row = conn.execute(select(ig_user.c.disabled).where(ig_user.c.username == username)).first()
    return row is not None and not row.disabled


def set_disabled(conn: Connection, username: str, disabled: bool = True) -> bool:
    """Disable (or re-enable) an account; its open sessions stop working at once."""
    result = conn.execute(update(ig_user).where(ig_user.c.username == username)
                          .values(disabled=disabled))
    return result.rowcount > 0
