"""Signatures already verified, so a bearer token is not re-verified on every request.

Checking an ES384 signature costs about 0.2-0.5 ms of CPU, the largest single cost of
authenticating a request (docs/performance.md). A signature's validity depends only on
the signed bytes and the key, so once a token verified against a JWK, the same token
against the same JWK needs no second check. Everything else is still decided on every
request, exactly as without this cache (RFC 9068 section 4; RFC 7519 section 7.2):

- the key must still be among the accepted keys *now* (a retired, rotated-out or
  removed key, or a trusted issuer dropped from configuration, ends the reuse at once),
  compared member by member with the JWK that verified the signature;
- ``exp``, ``nbf``, ``iat`` and ``aud`` are checked against the current time by the caller;
- the client must still be registered and enabled (the caller's database check).

Entries are keyed by the SHA-256 of the token, live no longer than the token's own
``exp``, and the table is bounded (oldest entries go first).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class Verified:
    """A token whose signature was checked: its header, claims and the key that verified it."""

    header: dict[str, Any]
    claims: dict[str, Any]
    jwk: Mapping[str, Any]
    expires: float


class VerifiedTokens:
    """A bounded, thread-safe map of token digest -> :class:`Verified`."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[bytes, Verified] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def digest(token: str) -> bytes:
        return hashlib.sha256(token.encode("ascii", "replace")).digest()

    def get(self, token: str, keys: list[dict[str, Any]], now: float | None = None) -> Verified | None:
        """The earlier verification of ``token``, if the key that verified it is still in ``keys``."""
        now = time.time() if now is None else now
        d = self.digest(token)
        with self._lock:
            hit = self._entries.get(d)
            if hit is None:
                return None
            if hit.expires < now:
                del self._entries[d]
                return None
        return hit if any(dict(k) == dict(hit.jwk) for k in keys) else None

    def put(self, token: str, header: dict[str, Any], claims: dict[str, Any], jwk: Mapping[str, Any]) -> None:
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            return  # no lifetime, nothing to bound the entry by: never cached
        entry = Verified(header=header, claims=claims, jwk=dict(jwk), expires=float(exp))
        d = self.digest(token)
        with self._lock:
            self._entries[d] = entry
            self._entries.move_to_end(d)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


VERIFIED = VerifiedTokens()
