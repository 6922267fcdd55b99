"""Hardened JWS verification (RFC 7515/7518): algorithm allowlist, key fit, kid lookup."""

from __future__ import annotations

import hashlib
import hmac

import orjson
import pytest
from cryptography.hazmat.primitives import serialization

from exchange.auth import jws
from exchange.auth.testing import make_client_keypair

RFC7638_JWK = {
    "kty": "RSA",
    "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJE"
    "CPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2Qvzq"
    "Y368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0f"
    "M4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
    "e": "AQAB",
    "alg": "RS256",
    "kid": "2011-04-29",
}


def _unsigned(header: dict, claims: dict) -> str:
    return jws.b64url_encode(orjson.dumps(header)) + "." + jws.b64url_encode(orjson.dumps(claims))


def test_thumbprint_matches_rfc7638_example() -> None:
    assert jws.thumbprint(RFC7638_JWK) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


@pytest.mark.parametrize("alg", ["ES384", "RS384"])
def test_sign_verify_roundtrip(alg: str) -> None:
    key = make_client_keypair(alg)
    token = key.sign({"iss": "a", "n": 1})
    header, claims = jws.verify(token, key.public_jwks()["keys"], algorithms={alg})
    assert header["alg"] == alg and header["kid"] == key.kid
    assert claims == {"iss": "a", "n": 1}


def test_private_jwk_roundtrip_signs_identically_verifiable() -> None:
    for alg in ("ES384", "RS384"):
        key = make_client_keypair(alg)
        restored = jws.private_key_from_jwk(jws.private_jwk(key.key))
        token = jws.sign({"x": 1}, restored, alg, {"kid": key.kid})
        jws.verify(token, key.public_jwks()["keys"], algorithms={alg})


def test_tampered_payload_rejected() -> None:
    key = make_client_keypair()
    h, _c, s = key.sign({"scope": "system/*.rs"}).split(".")
    forged = h + "." + jws.b64url_encode(orjson.dumps({"scope": "system/*.cruds"})) + "." + s
    with pytest.raises(jws.JWSError):
        jws.verify(forged, key.public_jwks()["keys"], algorithms=jws.SMART_ALGS)


def test_alg_none_rejected() -> None:
    key = make_client_keypair()
    token = _unsigned({"alg": "none", "kid": key.kid}, {"iss": "a"}) + "."
    with pytest.raises(jws.JWSError, match="algorithm not allowed"):
        jws.verify(token, key.public_jwks()["keys"], algorithms=jws.SMART_ALGS)


def test_hmac_with_public_key_as_secret_rejected() -> None:
    key = make_client_keypair("RS384")
    pem = key.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = _unsigned({"alg": "HS384", "kid": key.kid}, {"iss": "a"})
    mac = hmac.new(pem, signing_input.encode(), hashlib.sha384).digest()
    token = signing_input + "." + jws.b64url_encode(mac)
    with pytest.raises(jws.JWSError, match="algorithm not allowed"):
        jws.verify(token, key.public_jwks()["keys"], algorithms=jws.SMART_ALGS | {"HS384"})


def test_algorithm_must_fit_key_type() -> None:
    ec_key = make_client_keypair("ES384")
    rsa_key = make_client_keypair("RS384", kid=ec_key.kid)
    token = rsa_key.sign({"iss": "a"})  # RS384 header, but the registered kid is an EC key
    with pytest.raises(jws.JWSError):
        jws.verify(token, ec_key.public_jwks()["keys"], algorithms=jws.SMART_ALGS)


def test_foreign_kid_and_jku_header_ignored() -> None:
    registered = make_client_keypair()
    attacker = make_client_keypair()
    token = attacker.sign({"iss": "a"}, jku="http://127.0.0.1:9/jwks", x5u="http://127.0.0.1:9/x")
    with pytest.raises(jws.JWSError, match="unknown key"):
        jws.verify(token, registered.public_jwks()["keys"], algorithms=jws.SMART_ALGS)
    # even an embedded jwk header is not used
    embedded = attacker.sign({"iss": "a"}, jwk=attacker.public_jwks()["keys"][0])
    with pytest.raises(jws.JWSError):
        jws.verify(embedded, registered.public_jwks()["keys"], algorithms=jws.SMART_ALGS)


def test_kid_required_by_default_and_crit_refused() -> None:
    key = make_client_keypair()
    no_kid = jws.sign({"iss": "a"}, key.key, "ES384", {})
    with pytest.raises(jws.JWSError, match="unknown key"):
        jws.verify(no_kid, key.public_jwks()["keys"], algorithms=jws.SMART_ALGS)
    header, claims = jws.verify(
        no_kid, key.public_jwks()["keys"], algorithms=jws.SMART_ALGS, require_kid=False
    )
    assert claims == {"iss": "a"}
    crit = key.sign({"iss": "a"}, crit=["exp"])
    with pytest.raises(jws.JWSError, match="critical"):
        jws.verify(crit, key.public_jwks()["keys"], algorithms=jws.SMART_ALGS)


@pytest.mark.parametrize("token", ["", "a.b", "a.b.c.d", "!!.e30.", "e30.bm90anNvbg.", "W10.e30."])
def test_malformed_tokens_rejected(token: str) -> None:
    with pytest.raises(jws.JWSError):
        jws.verify(token, [], algorithms=jws.SMART_ALGS)


def test_short_rsa_key_does_not_fit() -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    assert not jws.alg_fits_key("RS384", weak)
    with pytest.raises(jws.JWSError):
        jws.sign({}, weak, "RS384", {})


def test_garbage_only_ever_raises_jwserror() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    key = make_client_keypair()
    keys = key.public_jwks()["keys"]
    segment = st.one_of(
        st.text(max_size=40),
        st.binary(max_size=40).map(jws.b64url_encode),
        st.recursive(st.none() | st.integers(-(2**53), 2**53) | st.text(max_size=5),
                     lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                     max_leaves=8).map(lambda v: jws.b64url_encode(orjson.dumps(v))),
    )

    @settings(max_examples=150, deadline=None)
    @given(st.lists(segment, min_size=1, max_size=4).map(".".join))
    def check(token: str) -> None:
        with pytest.raises(jws.JWSError):
            jws.verify(token, keys, algorithms=jws.SMART_ALGS)

    check()
