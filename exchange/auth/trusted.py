"""Trusted external token issuers (a regional or national identity service).

A deployment may accept access tokens issued by another authorisation server instead
of (or as well as) the built-in token endpoint. ``settings.trusted_issuers_file``
(YAML or JSON) lists them::

    issuers:
      - issuer: https://idp.region.example/realms/care
        jwks_file: /etc/exchange/region-jwks.json     # or jwks_url: https://...
        audience: https://exchange.city.example/fhir
        algorithms: [RS256, ES384]                   # asymmetric only; default RS256 RS384 ES256 ES384
        kind: user                                   # optional: user | system | patient
        default_purpose_of_use: TREAT                # when the token states none
        claims:                                      # exchange field -> token claim
          client_id: azp
          practitioner_id: sub
          organization: org_ods
          role: rbac_role

Keys come only from the configured file or URL (never from ``jku``/``x5u`` token
headers). A URL is fetched by the exchange, cached for five minutes, and re-fetched at
most once a minute when a token names an unknown ``kid`` (the issuer rotated keys).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import yaml

from exchange.auth.jws import ASYMMETRIC_ALGS

DEFAULT_ALGORITHMS = ("RS256", "RS384", "ES256", "ES384")
DEFAULT_CLAIMS = {
    "client_id": "client_id",
    "practitioner_id": "sub",
    "name": "name",
    "organization": "organization",
    "role": "role",
    "purpose_of_use": "purpose_of_use",
    "break_glass_reason": "break_glass_reason",
    "patient": "patient",
    "scope": "scope",
}
JWKS_TTL = 300
JWKS_REFRESH_MIN = 60


@dataclass(frozen=True)
class TrustedIssuer:
    issuer: str
    audience: str
    algorithms: tuple[str, ...]
    jwks_file: Path | None = None
    jwks_url: str | None = None
    kind: str | None = None
    default_purpose_of_use: str | None = "TREAT"
    claims: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_CLAIMS))


def parse_config(data: Any, *, base_dir: Path | None = None) -> dict[str, TrustedIssuer]:
    """Validate a trusted-issuers document; issuer URL -> :class:`TrustedIssuer`."""
    entries = data.get("issuers") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise ValueError("trusted issuers file must contain a list 'issuers'")
    out: dict[str, TrustedIssuer] = {}
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or not e.get("issuer") or not e.get("audience"):
            raise ValueError(f"issuers[{i}] needs 'issuer' and 'audience'")
        if bool(e.get("jwks_file")) == bool(e.get("jwks_url")):
            raise ValueError(f"issuers[{i}] needs exactly one of 'jwks_file' or 'jwks_url'")
        algs = tuple(e.get("algorithms") or DEFAULT_ALGORITHMS)
        if not set(algs) <= ASYMMETRIC_ALGS:
            raise ValueError(f"issuers[{i}]: only asymmetric algorithms are allowed")
        kind = e.get("kind")
        if kind not in (None, "user", "system", "patient"):
            raise ValueError(f"issuers[{i}]: kind must be user, system or patient")
        jwks_file = Path(e["jwks_file"]) if e.get("jwks_file") else None
        if jwks_file is not None and not jwks_file.is_absolute() and base_dir is not None:
            jwks_file = base_dir / jwks_file
        out[str(e["issuer"])] = TrustedIssuer(
            issuer=str(e["issuer"]),
            audience=str(e["audience"]),
            algorithms=algs,
            jwks_file=jwks_file,
            jwks_url=e.get("jwks_url"),
            kind=kind,
            default_purpose_of_use=e.get("default_purpose_of_use", "TREAT"),
            claims={**DEFAULT_CLAIMS, **(e.get("claims") or {})},
        )
    return out


_lock = threading.Lock()
_config_cache: dict[Path, tuple[tuple[int, int], dict[str, TrustedIssuer]]] = {}
_jwks_cache: dict[str, tuple[float, list[dict[str, Any]]]] = {}


def load_trusted_issuers(path: Path | None) -> dict[str, TrustedIssuer]:
    """The configured issuers (empty when no file is configured); re-read on change."""
    if path is None:
        return {}
    st = path.stat()
    stamp = (st.st_mtime_ns, st.st_size)
    with _lock:
        cached = _config_cache.get(path)
        if cached and cached[0] == stamp:
            return cached[1]
        raw = path.read_bytes()
        data = orjson.loads(raw) if path.suffix == ".json" else yaml.safe_load(raw)
        issuers = parse_config(data, base_dir=path.parent)
        _config_cache[path] = (stamp, issuers)
        return issuers


def fetch_jwks(url: str) -> dict[str, Any]:
    """GET a JWKS from a configured URL (replaceable in tests)."""
    response = httpx.get(url, timeout=5.0, follow_redirects=False)
    response.raise_for_status()
    return response.json()


def issuer_keys(issuer: TrustedIssuer, *, kid: str | None = None) -> list[dict[str, Any]]:
    """The issuer's public keys from its file, or its URL (cached; refreshed on a new kid)."""
    if issuer.jwks_file is not None:
        return list(orjson.loads(issuer.jwks_file.read_bytes()).get("keys", []))
    assert issuer.jwks_url is not None
    now = time.monotonic()
    cached = _jwks_cache.get(issuer.jwks_url)
    known = cached is not None and (kid is None or any(k.get("kid") == kid for k in cached[1]))
    fresh = cached is not None and now - cached[0] < JWKS_TTL
    recent = cached is not None and now - cached[0] < JWKS_REFRESH_MIN
    if cached is not None and ((fresh and known) or recent):
        return cached[1]
    try:
        keys = list(fetch_jwks(issuer.jwks_url).get("keys", []))
    except (httpx.HTTPError, ValueError, AttributeError):
        if cached is not None:
            return cached[1]
        raise
    _jwks_cache[issuer.jwks_url] = (now, keys)
    return keys
