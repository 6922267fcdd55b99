"""Hardened JSON Web Signatures for SMART tokens (RFC 7515 compact form, RFC 7518 §3.3/§3.4).

Written directly over ``cryptography`` so that every decision is explicit:

* only asymmetric algorithms from an allowlist are accepted (no ``none``, no HMAC);
* the algorithm must match the *key's* type and curve (RSA key -> RS*/PS*, P-384 -> ES384),
  so an algorithm is never taken from the token alone;
* the verification key is chosen by ``kid`` from keys the caller configured; ``jku``,
  ``x5u``, ``jwk`` and ``x5c`` headers are never followed;
* ``crit`` headers are refused (RFC 7515 §4.1.11: we understand no extensions).

Also key helpers: JWK <-> key objects and RFC 7638 thumbprints used as key ids.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

#: Every algorithm the exchange will ever verify (SMART assertions are narrower: RS384/ES384).
ASYMMETRIC_ALGS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "ES256", "ES384"})
#: What SMART Backend Services requires of client assertions (and what we sign with).
SMART_ALGS = frozenset({"RS384", "ES384"})

_HASH = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}
_CURVES: dict[str, tuple[type[ec.EllipticCurve], int, str]] = {
    "P-256": (ec.SECP256R1, 32, "ES256"),
    "P-384": (ec.SECP384R1, 48, "ES384"),
}

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class JWSError(ValueError):
    """A token that is malformed, unsigned, wrongly signed or signed with a refused key."""


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    if not isinstance(text, str) or any(c in text for c in "=+/ \n"):
        raise JWSError("invalid base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise JWSError("invalid base64url") from exc


def _int_from(text: str) -> int:
    return int.from_bytes(b64url_decode(text), "big")


def _int_to(value: int, length: int | None = None) -> str:
    length = length or max(1, (value.bit_length() + 7) // 8)
    return b64url_encode(value.to_bytes(length, "big"))


# -- JWK <-> key objects ---------------------------------------------------------------


def public_key_from_jwk(jwk: Mapping[str, Any]) -> PublicKey:
    """A public key object from a JWK (RSA or EC P-256/P-384); private members ignored."""
    kty = jwk.get("kty")
    try:
        if kty == "RSA":
            return rsa.RSAPublicNumbers(_int_from(jwk["e"]), _int_from(jwk["n"])).public_key()
        if kty == "EC" and jwk.get("crv") in _CURVES:
            curve = _CURVES[jwk["crv"]][0]()
            return ec.EllipticCurvePublicNumbers(
                _int_from(jwk["x"]), _int_from(jwk["y"]), curve
            ).public_key()
    except (KeyError, ValueError, TypeError) as exc:
        raise JWSError("unusable JWK") from exc
    raise JWSError("unsupported key type")


def private_key_from_jwk(jwk: Mapping[str, Any]) -> PrivateKey:
    """A private key object from a private JWK (EC with ``d``, or RSA with CRT members)."""
    try:
        if jwk.get("kty") == "EC" and jwk.get("crv") in _CURVES:
            curve = _CURVES[jwk["crv"]][0]()
            pub = ec.EllipticCurvePublicNumbers(_int_from(jwk["x"]), _int_from(jwk["y"]), curve)
            return ec.EllipticCurvePrivateNumbers(_int_from(jwk["d"]), pub).private_key()
        if jwk.get("kty") == "RSA":
            pub_n = rsa.RSAPublicNumbers(_int_from(jwk["e"]), _int_from(jwk["n"]))
            numbers = rsa.RSAPrivateNumbers(
                _int_from(jwk["p"]),
                _int_from(jwk["q"]),
                _int_from(jwk["d"]),
                _int_from(jwk["dp"]),
                _int_from(jwk["dq"]),
                _int_from(jwk["qi"]),
                pub_n,
            )
            return numbers.private_key()
    except (KeyError, ValueError, TypeError) as exc:
        raise JWSError("unusable private JWK") from exc
    raise JWSError("unsupported private key type")


def public_jwk(key: PublicKey | PrivateKey) -> dict[str, str]:
    """The public JWK members of a key (no kid/alg/use)."""
    pub = key.public_key() if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) else key
    if isinstance(pub, rsa.RSAPublicKey):
        nums = pub.public_numbers()
        return {"kty": "RSA", "e": _int_to(nums.e), "n": _int_to(nums.n)}
    for crv, (cls, size, _alg) in _CURVES.items():
        if isinstance(pub.curve, cls):
            nums = pub.public_numbers()
            return {"kty": "EC", "crv": crv, "x": _int_to(nums.x, size), "y": _int_to(nums.y, size)}
    raise JWSError("unsupported curve")


def private_jwk(key: PrivateKey) -> dict[str, str]:
    """The full private JWK of a key (for the exchange's own key file and test clients)."""
    out = public_jwk(key)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        size = _CURVES[out["crv"]][1]
        out["d"] = _int_to(key.private_numbers().private_value, size)
        return out
    nums = key.private_numbers()
    out.update(
        d=_int_to(nums.d), p=_int_to(nums.p), q=_int_to(nums.q),
        dp=_int_to(nums.dmp1), dq=_int_to(nums.dmq1), qi=_int_to(nums.iqmp),
    )
    return out


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256), used as the ``kid`` of generated keys."""
    members = ("e", "kty", "n") if jwk.get("kty") == "RSA" else ("crv", "kty", "x", "y")
    canonical = orjson.dumps({m: jwk[m] for m in members}, option=orjson.OPT_SORT_KEYS)
    return b64url_encode(hashlib.sha256(canonical).digest())


def alg_fits_key(alg: str, key: PublicKey | PrivateKey) -> bool:
    """True when ``alg`` is the algorithm this key type is for (RFC 7518 §3.1)."""
    if alg not in ASYMMETRIC_ALGS:
        return False
    if alg[:2] in ("RS", "PS"):
        return isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey) and key.key_size >= 2048
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        return any(isinstance(key.curve, c) and a == alg for c, _s, a in _CURVES.values())
    return False


# -- compact serialisation -------------------------------------------------------------


def sign(claims: Mapping[str, Any], key: PrivateKey, alg: str, headers: Mapping[str, Any]) -> str:
    """A compact JWS over ``claims`` signed with ``key`` (``headers`` adds kid, typ, ...)."""
    if not alg_fits_key(alg, key):
        raise JWSError(f"algorithm {alg} does not fit this key")
    header = {**headers, "alg": alg}
    signing_input = (
        b64url_encode(orjson.dumps(header)) + "." + b64url_encode(orjson.dumps(dict(claims)))
    ).encode("ascii")
    digest = _HASH[alg[2:]]()
    if alg.startswith("ES"):
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(digest)))
        size = (key.curve.key_size + 7) // 8
        sig = r.to_bytes(size, "big") + s.to_bytes(size, "big")
    elif alg.startswith("PS"):
        assert isinstance(key, rsa.RSAPrivateKey)
        pss = padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
        sig = key.sign(signing_input, pss, digest)
    else:
        assert isinstance(key, rsa.RSAPrivateKey)
        sig = key.sign(signing_input, padding.PKCS1v15(), digest)
    return signing_input.decode("ascii") + "." + b64url_encode(sig)


def split(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """(header, claims, signing_input, signature) of a compact JWS, *unverified*."""
    if not isinstance(token, str) or len(token) > 16384:
        raise JWSError("malformed token")
    parts = token.split(".")
    if len(parts) != 3 or not all(parts[:2]):
        raise JWSError("malformed token")
    try:
        header = orjson.loads(b64url_decode(parts[0]))
        claims = orjson.loads(b64url_decode(parts[1]))
    except orjson.JSONDecodeError as exc:
        raise JWSError("malformed token") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise JWSError("malformed token")
    return header, claims, f"{parts[0]}.{parts[1]}".encode("ascii"), b64url_decode(parts[2])


def verify(
    token: str,
    keys: Iterable[Mapping[str, Any]],
    *,
    algorithms: Iterable[str],
    require_kid: bool = True,
    typ: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Verify ``token`` against one of ``keys`` (JWKs); returns (header, claims).

    The key is selected by ``kid`` among ``keys`` only. Raises :class:`JWSError` for
    anything other than a valid signature by an allowed algorithm and a fitting key.
    """
    header, claims, _jwk = verify_key(token, keys, algorithms=algorithms, require_kid=require_kid, typ=typ)
    return header, claims


def verify_key(
    token: str,
    keys: Iterable[Mapping[str, Any]],
    *,
    algorithms: Iterable[str],
    require_kid: bool = True,
    typ: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any], Mapping[str, Any]]:
    """:func:`verify`, also returning the JWK whose key verified the signature."""
    header, claims, signing_input, signature = split(token)
    alg = header.get("alg")
    allowed = frozenset(algorithms) & ASYMMETRIC_ALGS
    if not isinstance(alg, str) or alg not in allowed:
        raise JWSError("algorithm not allowed")
    if "crit" in header:
        raise JWSError("unsupported critical header")
    if typ is not None and str(header.get("typ", "")).lower() != typ.lower():
        raise JWSError("unexpected token type")
    kid = header.get("kid")
    candidates = [k for k in keys if kid is not None and k.get("kid") == kid]
    if not candidates and not require_kid and kid is None:
        candidates = [k for k in keys if k.get("alg") in (None, alg)]
    if not candidates:
        raise JWSError("unknown key")
    for jwk in candidates:
        if jwk.get("use") not in (None, "sig") or jwk.get("alg") not in (None, alg):
            continue
        try:
            key = public_key_from_jwk(jwk)
        except JWSError:
            continue
        if alg_fits_key(alg, key) and _check(alg, key, signing_input, signature):
            return header, claims, jwk
    raise JWSError("signature verification failed")


def _check(alg: str, key: PublicKey, signing_input: bytes, signature: bytes) -> bool:
    digest = _HASH[alg[2:]]()
    try:
        if alg.startswith("ES"):
            assert isinstance(key, ec.EllipticCurvePublicKey)
            size = (key.curve.key_size + 7) // 8
            if len(signature) != 2 * size:
                return False
            r = int.from_bytes(signature[:size], "big")
            s = int.from_bytes(signature[size:], "big")
            key.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(digest))
        elif alg.startswith("PS"):
            assert isinstance(key, rsa.RSAPublicKey)
            pss = padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
            key.verify(signature, signing_input, pss, digest)
        else:
            assert isinstance(key, rsa.RSAPublicKey)
            key.verify(signature, signing_input, padding.PKCS1v15(), digest)
    except InvalidSignature:
        return False
    return True
