"""The exchange's own token-signing keys (SMART App Launch 2 "jwks_uri"; RFC 7517 JWK Sets).

One ES384 (P-256 is too weak for SMART's ES384) key signs every access token. It is
generated on first run under ``settings.path_in_var(settings.signing_key_path,
"signing-keys.json")`` -- a JWKS of *private* keys, file mode 0600 -- and kept out of
the database. Rotation adds a fresh key and marks the previous one retired; a retired
key stays in the published JWKS (and is accepted for verification) until every token
it could have signed has expired (``token_lifetime`` + clock skew), then it is pruned.

Every worker re-reads the file when its modification time changes, so a rotation done
by ``exchange keys rotate`` is picked up without a restart.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric import ec

from exchange.auth.jws import PrivateKey, private_jwk, private_key_from_jwk, thumbprint
from exchange.settings import Settings

SIGNING_ALG = "ES384"
#: seconds of clock skew tolerated on exp/nbf/iat everywhere in exchange.auth
CLOCK_SKEW = 30
_PUBLIC_MEMBERS = ("kty", "crv", "x", "y", "e", "n", "kid", "alg", "use")


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    key: PrivateKey
    created: int
    retired: int | None


@dataclass(frozen=True)
class KeySet:
    """The keys in the key file: the one current signer plus retired, still-valid keys."""

    current: SigningKey
    all: tuple[SigningKey, ...]
    raw: tuple[dict[str, Any], ...]

    def public_jwks(self, *, now: int | None = None, lifetime: int = 300) -> dict[str, Any]:
        """The JWKS served at ``jwks_uri``: current key and retired keys still in use."""
        now = int(time.time()) if now is None else now
        keys = [
            {m: k[m] for m in _PUBLIC_MEMBERS if m in k}
            for k in self.raw
            if k.get("retired") is None or k["retired"] + lifetime + CLOCK_SKEW >= now
        ]
        return {"keys": keys}


_lock = threading.Lock()
_cache: dict[Path, tuple[tuple[int, int], KeySet]] = {}


def key_path(settings: Settings) -> Path:
    return settings.path_in_var(settings.signing_key_path, "signing-keys.json")


def _new_key_jwk(now: int) -> dict[str, Any]:
    jwk: dict[str, Any] = private_jwk(ec.generate_private_key(ec.SECP384R1()))
    jwk.update(kid=thumbprint(jwk), alg=SIGNING_ALG, use="sig", created=now, retired=None)
    return jwk


def _write_new(path: Path, data: dict[str, Any], *, exclusive: bool) -> bool:
    """Write ``data`` atomically (0600). With ``exclusive``, only if ``path`` is absent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(orjson.dumps(data, option=orjson.OPT_INDENT_2))
        fh.flush()
        os.fsync(fh.fileno())
    try:
        if exclusive:
            try:
                os.link(tmp, path)  # atomic create-if-absent: concurrent first runs agree
            except FileExistsError:
                return False
        else:
            os.replace(tmp, path)
            return True
    finally:
        if tmp.exists():
            tmp.unlink()
    return True


def _parse(raw_keys: list[dict[str, Any]]) -> KeySet:
    keys = tuple(
        SigningKey(
            kid=k["kid"],
            alg=k.get("alg", SIGNING_ALG),
            key=private_key_from_jwk(k),
            created=int(k.get("created", 0)),
            retired=k.get("retired"),
        )
        for k in raw_keys
    )
    active = [k for k in keys if k.retired is None]
    if not active:
        raise ValueError("signing key file has no active key")
    current = max(active, key=lambda k: k.created)
    return KeySet(current=current, all=keys, raw=tuple(raw_keys))


def load_keys(settings: Settings) -> KeySet:
    """The exchange's key set, generating the first key if the file does not exist."""
    path = key_path(settings)
    with _lock:
        if not path.exists():
            _write_new(path, {"keys": [_new_key_jwk(int(time.time()))]}, exclusive=True)
        st = path.stat()
        mtime = (st.st_mtime_ns, st.st_ino)  # os.replace gives a new inode
        cached = _cache.get(path)
        if cached and cached[0] == mtime:
            return cached[1]
        keyset = _parse(orjson.loads(path.read_bytes())["keys"])
        _cache[path] = (mtime, keyset)
        return keyset


def rotate_keys(settings: Settings, *, now: int | None = None) -> KeySet:
    """Add a fresh signing key, retire the current one, prune keys past their last token."""
    now = int(time.time()) if now is None else now
    path = key_path(settings)
    load_keys(settings)  # make sure a file exists
    with _lock:
        raw = orjson.loads(path.read_bytes())["keys"]
        horizon = now - settings.token_lifetime - CLOCK_SKEW
        kept = [k for k in raw if k.get("retired") is None or k["retired"] >= horizon]
        for k in kept:
            if k.get("retired") is None:
                k["retired"] = now
        kept.append(_new_key_jwk(now + 1 if any(k["created"] >= now for k in kept) else now))
        _write_new(path, {"keys": kept}, exclusive=False)
        _cache.pop(path, None)
    return load_keys(settings)
