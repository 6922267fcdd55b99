"""``exchange clients register|list|disable|enable``, ``exchange keys`` and the dev-only
``exchange token`` command."""

from __future__ import annotations

import argparse
import uuid
from pathlib import Path

import orjson
import pytest
from sqlalchemy import Engine

from exchange.auth import authenticate
from exchange.auth.cli import register
from exchange.auth.clients import get_client
from exchange.auth.testing import make_client_keypair
from exchange.db.engine import read_tx
from exchange.outcome import Unauthorized
from exchange.settings import Settings


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="exchange")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.func(args)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str) -> Path:
    monkeypatch.setenv("EXCHANGE_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("EXCHANGE_BASE_URL", "http://testserver/fhir")
    monkeypatch.setenv("EXCHANGE_DATABASE_URL", db_url)
    monkeypatch.delenv("EXCHANGE_DEV_MODE", raising=False)
    return tmp_path


def test_register_list_disable_enable(env: Path, db_url: str, engine: Engine, capsys) -> None:  # noqa: ANN001
    cid = f"gp-{uuid.uuid4().hex[:6]}"
    jwks_file = env / "client.jwks.json"
    jwks_file.write_bytes(orjson.dumps(make_client_keypair().public_jwks()))
    assert run("clients", "register", "--client-id", cid, "--jwks", str(jwks_file), "--scope",
               "system/*.rs user/*.rs", "--organization", "A81001", "--organization", "Y02002",
               "--may-assert-users", "--database", db_url) == 0
    assert f"registered {cid}" in capsys.readouterr().out
    with read_tx(engine) as conn:
        client = get_client(conn, cid)
    assert client is not None
    assert client.scopes == ("system/*.rs", "user/*.rs")
    assert client.organizations == ("A81001", "Y02002") and client.may_assert_users
    assert run("clients", "list") == 0
    listed = [line for line in capsys.readouterr().out.splitlines() if line.startswith(cid)]
    assert listed and "active" in listed[0] and "asserts-users" in listed[0]
    assert run("clients", "disable", cid) == 0
    with read_tx(engine) as conn:
        assert get_client(conn, cid).disabled
    assert run("clients", "enable", cid) == 0
    with read_tx(engine) as conn:
        assert not get_client(conn, cid).disabled
    assert run("clients", "disable", "no-such-client") == 1


def test_register_rejects_bad_jwks(env: Path, engine: Engine, capsys) -> None:  # noqa: ANN001
    bad = env / "bad.json"
    bad.write_bytes(orjson.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "x"}]}))
    assert run("clients", "register", "--client-id", "x", "--jwks", str(bad), "--scope", "system/*.rs") == 2
    assert "not registered" in capsys.readouterr().err
    missing_kid = env / "nokid.json"
    key = make_client_keypair().public_jwks()
    del key["keys"][0]["kid"]
    missing_kid.write_bytes(orjson.dumps(key))
    assert run("clients", "register", "--client-id", "x", "--jwks", str(missing_kid), "--scope", "system/*.rs") == 2
    # private members are never stored
    private = env / "private.json"
    ck = make_client_keypair()
    from exchange.auth import jws

    private.write_bytes(orjson.dumps({"keys": [{**jws.private_jwk(ck.key), "kid": "k1"}]}))
    assert run("clients", "register", "--client-id", "priv", "--jwks", str(private), "--scope", "system/*.rs") == 0
    with read_tx(engine) as conn:
        stored = get_client(conn, "priv").jwks["keys"][0]
    assert "d" not in stored and stored["kid"] == "k1"


def test_token_refused_outside_dev_mode(env: Path, capsys) -> None:  # noqa: ANN001
    assert run("token", "--scope", "user/*.rs") == 2
    assert "development mode" in capsys.readouterr().err


def test_token_in_dev_mode_authenticates(env: Path, engine: Engine, monkeypatch, capsys, db_url: str) -> None:  # noqa: ANN001
    monkeypatch.setenv("EXCHANGE_DEV_MODE", "1")
    assert run("token", "--scope", "user/*.rs", "--practitioner", "555", "--organization", "A81001",
               "--role", "R8000", "--purpose", "BTG") == 2  # BTG needs --reason
    capsys.readouterr()
    assert run("token", "--scope", "user/*.rs", "--practitioner", "555", "--organization", "A81001",
               "--role", "R8000") == 0
    token = capsys.readouterr().out.strip()
    settings = Settings(database_url=db_url, base_url="http://testserver/fhir", var_dir=env / "var")
    with read_tx(engine) as conn:
        who = authenticate(conn, settings.with_(dev_mode=True), f"Bearer {token}")
        assert (who.kind, who.practitioner_id, who.organization) == ("user", "555", "A81001")
        with pytest.raises(Unauthorized):  # a dev token is worthless once dev mode is off
            authenticate(conn, settings, f"Bearer {token}")
    assert run("token", "--scope", "system/*.rs", "--curl", "Patient?_count=1") == 0
    out = capsys.readouterr().out
    assert out.startswith("curl -H 'Authorization: Bearer ") and "http://testserver/fhir/Patient?_count=1" in out


def test_keys_rotate_and_jwks(env: Path, capsys) -> None:  # noqa: ANN001
    assert run("keys", "jwks") == 0
    first = orjson.loads(capsys.readouterr().out)["keys"]
    assert run("keys", "rotate") == 0
    capsys.readouterr()
    assert run("keys", "jwks") == 0
    second = orjson.loads(capsys.readouterr().out)["keys"]
    assert len(first) == 1 and len(second) == 2
    assert first[0]["kid"] in {k["kid"] for k in second}


def test_commands_are_wired_into_the_exchange_cli() -> None:
    from exchange.cli import build_parser

    args = build_parser().parse_args(["clients", "list", "--database", "sqlite://"])
    assert args.func.__module__ == "exchange.auth.cli"


@pytest.mark.parametrize("alg", ["ES384", "RS384"])
def test_keygen_then_off_the_shelf_client_gets_a_token(env: Path, db_url: str, http, alg: str) -> None:  # noqa: ANN001
    """The documented path: keygen, register, then sign with a generic JOSE library."""
    import time

    from jose import jwt

    cid = f"ig-tool-{uuid.uuid4().hex[:6]}"
    pem, jwks = env / f"{cid}.pem", env / f"{cid}.jwks.json"
    assert run("clients", "keygen", "--alg", alg, "--private-key", str(pem), "--jwks", str(jwks)) == 0
    assert (pem.stat().st_mode & 0o777) == 0o600
    assert run("clients", "keygen", "--private-key", str(pem), "--jwks", str(jwks)) == 2  # no overwrite
    assert run("clients", "register", "--client-id", cid, "--jwks", str(jwks), "--scope",
               "system/AuditEvent.rs", "--organization", "X26", "--database", db_url) == 0
    kid = orjson.loads(jwks.read_bytes())["keys"][0]["kid"]
    token_url = "http://testserver/fhir/auth/token"
    now = int(time.time())
    assertion = jwt.encode(
        {"iss": cid, "sub": cid, "aud": token_url, "exp": now + 240, "jti": uuid.uuid4().hex},
        pem.read_text(), algorithm=alg, headers={"kid": kid},
    )
    r = http.post("/fhir/auth/token", data={
        "grant_type": "client_credentials", "scope": "system/AuditEvent.rs",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    })
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == "system/AuditEvent.rs"
