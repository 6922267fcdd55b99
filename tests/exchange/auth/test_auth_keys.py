"""The exchange's signing keys: generated once on first run, private file, rotation that
keeps old public keys until their tokens have expired."""

from __future__ import annotations

import stat
import threading
import time
from pathlib import Path

import orjson

from exchange.auth import jws
from exchange.auth.keys import CLOCK_SKEW, key_path, load_keys, rotate_keys
from exchange.auth.token import mint_access_token
from exchange.settings import Settings


def settings_in(tmp_path: Path, **kw: object) -> Settings:
    return Settings(var_dir=tmp_path / "var", base_url="http://testserver/fhir", **kw)


def test_generated_on_first_run_and_stable(tmp_path: Path) -> None:
    s = settings_in(tmp_path)
    assert not key_path(s).exists()
    first = load_keys(s)
    assert key_path(s) == tmp_path / "var" / "signing-keys.json"
    assert stat.S_IMODE(key_path(s).stat().st_mode) == 0o600
    assert first.current.alg == "ES384"
    assert load_keys(s).current.kid == first.current.kid
    public = first.public_jwks()["keys"]
    assert [k["kid"] for k in public] == [first.current.kid]
    assert all("d" not in k for k in public)


def test_configured_path_is_used(tmp_path: Path) -> None:
    s = settings_in(tmp_path, signing_key_path=tmp_path / "keys" / "exchange.json")
    load_keys(s)
    assert (tmp_path / "keys" / "exchange.json").exists()
    assert not (tmp_path / "var" / "signing-keys.json").exists()


def test_concurrent_first_runs_agree_on_one_key(tmp_path: Path) -> None:
    s = settings_in(tmp_path)
    kids: list[str] = []
    threads = [threading.Thread(target=lambda: kids.append(load_keys(s).current.kid)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(kids)) == 1
    assert len(orjson.loads(key_path(s).read_bytes())["keys"]) == 1


def test_rotation_keeps_old_key_until_tokens_expire(tmp_path: Path) -> None:
    s = settings_in(tmp_path, token_lifetime=120)
    old = load_keys(s).current
    old_token, _ = mint_access_token(s, client_id="c", scopes=["system/*.rs"])
    now = int(time.time())
    rotated = rotate_keys(s, now=now)
    assert rotated.current.kid != old.kid
    jwks = rotated.public_jwks(now=now + 60, lifetime=120)
    assert {k["kid"] for k in jwks["keys"]} == {old.kid, rotated.current.kid}
    # the old token still verifies against the published keys
    jws.verify(old_token, jwks["keys"], algorithms={"ES384"})
    # new tokens use the new key
    new_token, _ = mint_access_token(s, client_id="c", scopes=["system/*.rs"])
    assert jws.split(new_token)[0]["kid"] == rotated.current.kid
    # after lifetime + skew the old key is no longer published ...
    later = now + 120 + CLOCK_SKEW + 1
    assert [k["kid"] for k in rotated.public_jwks(now=later, lifetime=120)["keys"]] == [rotated.current.kid]
    # ... and the next rotation prunes it from the file
    third = rotate_keys(s, now=later)
    kids = {k["kid"] for k in orjson.loads(key_path(s).read_bytes())["keys"]}
    assert old.kid not in kids and {rotated.current.kid, third.current.kid} <= kids
