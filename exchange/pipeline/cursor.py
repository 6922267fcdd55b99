"""Opaque, signed, requester-bound continuation tokens for paging links.

A cursor is ``base64url(json payload) + "." + base64url(HMAC-SHA256)``; the MAC covers
the payload and the requester's identity key, so a cursor cannot be altered and is
useless to any other requester (R4 search.html#paging leaves the link format to the
server; Blaze likewise signs its tokens).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import orjson

from exchange.outcome import FhirError


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(payload: dict[str, Any], secret: bytes, requester_key: str) -> str:
    body = orjson.dumps(payload)
    mac = hmac.new(secret, body + b"\x00" + requester_key.encode(), hashlib.sha256).digest()
    return f"{_b64(body)}.{_b64(mac)}"


def verify(token: str, secret: bytes, requester_key: str) -> dict[str, Any]:
    bad = FhirError("invalid", "The paging link is invalid or was issued to another requester", status=400)
    if not isinstance(token, str) or token.count(".") != 1 or len(token) > 8192:
        raise bad
    body_s, mac_s = token.split(".")
    try:
        body, mac = _unb64(body_s), _unb64(mac_s)
    except (ValueError, TypeError):
        raise bad from None
    want = hmac.new(secret, body + b"\x00" + requester_key.encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(mac, want):
        raise bad
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise bad from None
    if not isinstance(payload, dict):
        raise bad
    return payload
