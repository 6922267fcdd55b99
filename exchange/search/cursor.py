"""Opaque, signed paging cursors (FHIR R4 http.html#paging, search.html#count).

A cursor carries the search (types, parameters, compartment, page size), the keyset
position (sort key values + rid of the row the page continues from), the direction
and a snapshot bound (the highest ``rid`` that existed when the first page ran), so
walking pages while resources are written yields every match exactly once. It is
HMAC-SHA256 signed with the server secret and bound to a hash of the requester's key:
a tampered cursor, or one presented by another requester, is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import orjson

from exchange.outcome import Forbidden, Invalid
from exchange.pipeline.context import RequestContext
from exchange.secrets import server_secret
from exchange.settings import Settings

_MAC_BYTES = 20


def secret_of(settings: Settings) -> bytes:
    """The server secret (exchange.secrets: ``settings.secret_key`` or ``var/secret.key``)."""
    return server_secret(settings)


def _requester_hash(ctx: RequestContext) -> str:
    return hashlib.sha256(ctx.requester.key.encode()).hexdigest()[:24]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode(settings: Settings, ctx: RequestContext, payload: dict[str, Any]) -> str:
    body = orjson.dumps({**payload, "who": _requester_hash(ctx)})
    mac = hmac.new(secret_of(settings), body, hashlib.sha256).digest()[:_MAC_BYTES]
    return _b64(body) + "." + _b64(mac)


def decode(settings: Settings, ctx: RequestContext, cursor: str) -> dict[str, Any]:
    try:
        body_text, mac_text = cursor.split(".", 1)
        body, mac = _unb64(body_text), _unb64(mac_text)
    except (ValueError, TypeError) as exc:
        raise Invalid("Invalid paging cursor", expression="_getpages") from exc
    expected = hmac.new(secret_of(settings), body, hashlib.sha256).digest()[:_MAC_BYTES]
    if not hmac.compare_digest(mac, expected):
        raise Invalid("Invalid or tampered paging cursor", expression="_getpages")
    payload = orjson.loads(body)
    if payload.get("who") != _requester_hash(ctx):
        raise Forbidden("This paging link was issued to another requester")
    return payload
