"""Tokens from trusted external identity providers (configured issuer, JWKS file or URL,
audience and claim mapping) accepted directly by ``authenticate``."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import orjson
import pytest
import yaml
from sqlalchemy import Engine

from exchange.auth import authenticate, jws, trusted
from exchange.auth.clients import register_client, set_disabled
from exchange.auth.testing import make_client_keypair
from exchange.db.engine import read_tx, write_tx
from exchange.outcome import Unauthorized, Unavailable
from exchange.settings import Settings

IDP = "https://idp.region.example/realms/care"
AUDIENCE = "https://exchange.city.example/fhir"


@pytest.fixture
def idp_key():  # noqa: ANN201
    return make_client_keypair("RS384", kid="idp-2026")


def write_config(tmp_path: Path, idp_key, **entry: object) -> Settings:  # noqa: ANN001
    (tmp_path / "idp-jwks.json").write_bytes(orjson.dumps(idp_key.public_jwks()))
    cfg = {
        "issuer": IDP,
        "jwks_file": "idp-jwks.json",
        "audience": AUDIENCE,
        "claims": {"client_id": "azp", "organization": "org_ods", "role": "rbac_role",
                   "purpose_of_use": "pou"},
    }
    cfg.update(entry)
    path = tmp_path / f"trusted-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump({"issuers": [cfg]}))
    return Settings(base_url="http://testserver/fhir", var_dir=tmp_path / "var", trusted_issuers_file=path)


def idp_token(idp_key, **changes: object) -> str:  # noqa: ANN001
    now = int(time.time())
    claims = {"iss": IDP, "aud": [AUDIENCE, "account"], "sub": "555777888999", "azp": "region-epr",
              "org_ods": "RXX", "rbac_role": "R8000", "pou": "ETREAT", "name": "Dr B Smith",
              "scope": "user/*.rs openid", "exp": now + 300, "iat": now, "jti": uuid.uuid4().hex}
    claims.update(changes)
    return idp_key.sign({k: v for k, v in claims.items() if v is not None})


def auth(engine: Engine, settings: Settings, token: str):  # noqa: ANN201
    with read_tx(engine) as conn:
        return authenticate(conn, settings, f"Bearer {token}")


def test_accepted_with_claim_mapping(engine: Engine, tmp_path: Path, idp_key) -> None:  # noqa: ANN001
    settings = write_config(tmp_path, idp_key)
    who = auth(engine, settings, idp_token(idp_key))
    assert who.kind == "user" and who.issuer == IDP
    assert who.client_id == "region-epr" and who.practitioner_id == "555777888999"
    assert (who.organization, who.role, who.purpose_of_use) == ("RXX", "R8000", "ETREAT")
    assert who.practitioner_name == "Dr B Smith"
    assert who.scopes == frozenset({"user/*.rs", "openid"})


def test_default_purpose_and_scp_list(engine: Engine, tmp_path: Path, idp_key) -> None:  # noqa: ANN001
    settings = write_config(tmp_path, idp_key, default_purpose_of_use="TREAT")
    who = auth(engine, settings, idp_token(idp_key, pou=None, scope=None, scp=["user/Patient.rs"]))
    assert who.purpose_of_use == "TREAT" and who.scopes == frozenset({"user/Patient.rs"})


@pytest.mark.parametrize(
    "changes",
    [{"aud": "https://elsewhere.example/fhir"}, {"iss": "https://rogue.example"},
     {"exp": int(time.time()) - 600}, {"nbf": int(time.time()) + 600}, {"pou": "BTG"},
     {"scope": None}],
    ids=["audience", "issuer", "expired", "nbf", "btg-without-reason", "no-scope"],
)
def test_rejected_claims(engine: Engine, tmp_path: Path, idp_key, changes: dict) -> None:  # noqa: ANN001
    settings = write_config(tmp_path, idp_key)
    with pytest.raises(Unauthorized):
        auth(engine, settings, idp_token(idp_key, **changes))


def test_rejected_keys_and_algorithms(engine: Engine, tmp_path: Path, idp_key) -> None:  # noqa: ANN001
    settings = write_config(tmp_path, idp_key, algorithms=["ES384"])
    with pytest.raises(Unauthorized):  # RS384 not in this issuer's allowlist
        auth(engine, settings, idp_token(idp_key))
    settings = write_config(tmp_path, idp_key)
    rogue = make_client_keypair("RS384", kid="idp-2026")
    with pytest.raises(Unauthorized):
        auth(engine, settings, idp_token(rogue))


def test_disabled_local_client_rejected(engine: Engine, tmp_path: Path, idp_key) -> None:  # noqa: ANN001
    settings = write_config(tmp_path, idp_key)
    with write_tx(engine) as conn:
        register_client(conn, client_id="retired-epr", jwks=make_client_keypair().public_jwks(),
                        scopes="user/*.rs", organizations="RXX")
    assert auth(engine, settings, idp_token(idp_key, azp="retired-epr")).client_id == "retired-epr"
    with write_tx(engine) as conn:
        set_disabled(conn, "retired-epr")
    with pytest.raises(Unauthorized):
        auth(engine, settings, idp_token(idp_key, azp="retired-epr"))


def test_jwks_url_fetched_cached_and_refreshed(
    engine: Engine, tmp_path: Path, idp_key, monkeypatch: pytest.MonkeyPatch  # noqa: ANN001
) -> None:
    url = f"https://idp.region.example/certs/{uuid.uuid4().hex}"
    settings = write_config(tmp_path, idp_key, jwks_file=None, jwks_url=url)
    served = {"jwks": idp_key.public_jwks()}
    calls: list[str] = []

    def fake_fetch(u: str) -> dict:
        calls.append(u)
        return served["jwks"]

    monkeypatch.setattr(trusted, "fetch_jwks", fake_fetch)
    auth(engine, settings, idp_token(idp_key))
    auth(engine, settings, idp_token(idp_key))
    assert calls == [url]  # cached
    # the IdP rotates: a token with a new kid triggers one re-fetch
    monkeypatch.setattr(trusted, "JWKS_REFRESH_MIN", 0)
    new_key = make_client_keypair("ES384", kid="idp-2027")
    served["jwks"] = new_key.public_jwks()
    assert auth(engine, settings, idp_token(new_key)).client_id == "region-epr"
    assert calls == [url, url]


def test_unreachable_jwks_url_is_unavailable(
    engine: Engine, tmp_path: Path, idp_key, monkeypatch: pytest.MonkeyPatch  # noqa: ANN001
) -> None:
    import httpx

    settings = write_config(tmp_path, idp_key, jwks_file=None,
                            jwks_url=f"https://idp.invalid/{uuid.uuid4().hex}")

    def failing(_u: str) -> dict:
        raise httpx.ConnectError("no route")

    monkeypatch.setattr(trusted, "fetch_jwks", failing)
    with pytest.raises(Unavailable):
        auth(engine, settings, idp_token(idp_key))


@pytest.mark.parametrize(
    "entry",
    [{"issuer": IDP, "jwks_file": "x.json"},
     {"issuer": IDP, "audience": "a"},
     {"issuer": IDP, "audience": "a", "jwks_file": "x", "jwks_url": "https://y"},
     {"issuer": IDP, "audience": "a", "jwks_file": "x", "algorithms": ["HS256"]},
     {"issuer": IDP, "audience": "a", "jwks_file": "x", "kind": "admin"}],
)
def test_config_validation(entry: dict) -> None:
    with pytest.raises(ValueError):
        trusted.parse_config({"issuers": [entry]})


def test_no_file_means_no_trusted_issuers() -> None:
    assert trusted.load_trusted_issuers(None) == {}
    assert jws.ASYMMETRIC_ALGS.isdisjoint({"HS256", "none"})
