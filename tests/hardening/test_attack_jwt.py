"""JWT and authorisation attacks against the *real* app, on every route family
(issue 11, "Attacks on authorisation"; SMART App Launch 2 / Backend Services, RFC 7523,
RFC 8725 JWT best current practice).

Where each attack is proven at the unit level (not repeated here):

* token endpoint -- alg none, HMAC with the public key, RS256, wrong iss/aud, expired /
  too long-lived / future assertions, replayed jti, foreign kid, jku/x5u, scope
  escalation, user assertion for an unregistered organisation, client not allowed to
  assert users, disabled client: tests/exchange/auth/test_auth_token_endpoint.py;
* bearer validation -- the same forgeries on access tokens:
  tests/exchange/auth/test_auth_bearer.py, test_auth_jws.py; replay across workers:
  test_auth_replay.py; patient/ confinement in check_access: test_auth_scopes.py.

Those tests use a minimal probe app. This suite proves the wiring: every forged or
stolen-and-revoked token is refused 401 on *every* FHIR route of the assembled app
(read, search, POST _search, paging, history, $everything, batch, transaction, write,
patch, delete, AuditEvent), that a refused request changes nothing, and that a
``patient/`` token cannot reach another patient by any route. SQLite and PostgreSQL.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from exchange.auth import jws
from exchange.auth.clients import register_client, set_disabled
from exchange.auth.keys import load_keys
from exchange.auth.testing import (
    bearer,
    make_client_keypair,
    system_token,
    user_assertion,
    user_token,
)
from exchange.db.engine import write_tx
from exchange.settings import Settings

JSON = {"content-type": "application/fhir+json"}
ROUTES: list[tuple[str, str, bytes | None, dict[str, str]]] = [
    ("GET", "/fhir/Patient/ja1", None, {}),
    ("GET", "/fhir/Patient/ja1/_history/1", None, {}),
    ("GET", "/fhir/Patient?family=Attack", None, {}),
    ("POST", "/fhir/Patient/_search", b"family=Attack", {"content-type": "application/x-www-form-urlencoded"}),
    ("GET", "/fhir/Observation?patient=ja1&_total=accurate", None, {}),
    ("GET", "/fhir/Patient/ja1/$everything", None, {}),
    ("GET", "/fhir/Patient/ja1/_history", None, {}),
    ("GET", "/fhir/_history", None, {}),
    ("GET", "/fhir?_getpages=x.y", None, {}),
    ("GET", "/fhir/AuditEvent", None, {}),
    ("POST", "/fhir", b'{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patient/ja1"}}]}', JSON),
    ("POST", "/fhir", b'{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"POST","url":"Patient"},'
                      b'"resource":{"resourceType":"Patient"}}]}', JSON),
    ("POST", "/fhir/Patient", b'{"resourceType":"Patient"}', JSON),
    ("PUT", "/fhir/Patient/ja1", b'{"resourceType":"Patient","id":"ja1","active":false}', JSON),
    ("PATCH", "/fhir/Patient/ja1", b'[{"op":"add","path":"/active","value":false}]', {"content-type": "application/json-patch+json"}),
    ("DELETE", "/fhir/Patient/ja1", None, {}),
    ("DELETE", "/fhir/Observation?patient=ja1", None, {}),
    ("POST", "/cds-services/care-preferences-patient-view",
     b'{"hook":"patient-view","hookInstance":"h1","context":{"userId":"Practitioner/1","patientId":"ja1"}}',
     {"content-type": "application/json"}),
]


def _claims(settings: Settings, cid: str, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"iss": settings.base_url, "aud": settings.base_url, "sub": cid, "client_id": cid, "kind": "system",
              "scope": "system/*.cruds", "iat": now, "exp": now + 200, "jti": uuid.uuid4().hex}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(settings: Settings, claims: dict[str, Any], **headers: Any) -> str:
    signer = load_keys(settings).current
    return jws.sign(claims, signer.key, signer.alg, {"kid": signer.kid, "typ": "at+jwt", **headers})


@pytest.fixture(scope="module")
def attack_cid(full_engine: Engine) -> str:
    cid = f"attack-{uuid.uuid4().hex[:8]}"
    with write_tx(full_engine) as conn:
        register_client(conn, client_id=cid, jwks=make_client_keypair().public_jwks(),
                        scopes="system/*.cruds", organizations="A81001")
    return cid


def _forgeries(settings: Settings, cid: str) -> dict[str, str]:
    good = _claims(settings, cid)
    signer = load_keys(settings).current
    body = jws.b64url_encode(orjson.dumps(good))
    none = jws.b64url_encode(orjson.dumps({"alg": "none", "kid": signer.kid, "typ": "at+jwt"}))
    hs = jws.b64url_encode(orjson.dumps({"alg": "HS256", "kid": signer.kid, "typ": "at+jwt"}))
    public = orjson.dumps(load_keys(settings).public_jwks()["keys"][0])
    mac = jws.b64url_encode(hmac.new(public, f"{hs}.{body}".encode(), hashlib.sha256).digest())
    attacker = make_client_keypair()
    h, _p, s = _sign(settings, good).split(".")
    now = int(time.time())
    return {
        "alg-none": f"{none}.{body}.",
        "hmac-with-public-key": f"{hs}.{body}.{mac}",
        "wrong-issuer": _sign(settings, _claims(settings, cid, iss="https://evil.example/fhir")),
        "wrong-audience": _sign(settings, _claims(settings, cid, aud="https://other.example/fhir")),
        "expired": _sign(settings, _claims(settings, cid, iat=now - 4000, exp=now - 3000)),
        "not-yet-valid": _sign(settings, _claims(settings, cid, nbf=now + 3000, exp=now + 3200)),
        "foreign-kid": attacker.sign(good, typ="at+jwt"),
        "our-kid-attacker-key": jws.sign(good, attacker.key, "ES384", {"kid": signer.kid, "typ": "at+jwt"}),
        "jku-injection": attacker.sign(good, typ="at+jwt", jku="http://127.0.0.1:9/jwks.json"),
        "x5u-injection": attacker.sign(good, typ="at+jwt", x5u="http://127.0.0.1:9/cert.pem"),
        "payload-escalated": f"{h}.{jws.b64url_encode(orjson.dumps({**good, 'kind': 'user', 'role': 'admin'}))}.{s}",
        "unregistered-client": _sign(settings, _claims(settings, "nobody-" + uuid.uuid4().hex[:6])),
        "not-an-access-token": jws.sign(good, signer.key, signer.alg, {"kid": signer.kid}),
        "garbage": "not.a.jwt",
    }


FORGERY_NAMES = ["alg-none", "hmac-with-public-key", "wrong-issuer", "wrong-audience", "expired", "not-yet-valid",
                 "foreign-kid", "our-kid-attacker-key", "jku-injection", "x5u-injection", "payload-escalated",
                 "unregistered-client", "not-an-access-token", "garbage"]


@pytest.fixture(scope="module")
def target(full_client: TestClient, system_headers: dict[str, str]) -> TestClient:
    r = full_client.put("/fhir/Patient/ja1", headers={**system_headers, **JSON},
                        content=b'{"resourceType":"Patient","id":"ja1","name":[{"family":"Attack"}]}')
    assert r.status_code in (200, 201), r.text
    return full_client


def _assert_401(r) -> None:  # noqa: ANN001
    assert r.status_code == 401, f"{r.status_code} {r.text[:300]}"
    assert r.headers["www-authenticate"].startswith("Bearer")
    oo = r.json()
    assert oo["resourceType"] == "OperationOutcome" and oo["issue"][0]["code"] == "login"
    assert b"Attack" not in r.content


@pytest.mark.parametrize("forgery", FORGERY_NAMES)
def test_forged_token_refused_on_every_route(target: TestClient, full_settings: Settings, attack_cid: str,
                                             fingerprint: Callable[[], Any], forgery: str) -> None:
    token = _forgeries(full_settings, attack_cid)[forgery]
    before = fingerprint()
    for method, path, body, headers in ROUTES:
        r = target.request(method, path, content=body, headers={**headers, **bearer(token)})
        _assert_401(r)
    assert fingerprint() == before


def test_control_the_genuine_token_works_on_every_route(target: TestClient, full_settings: Settings,
                                                         attack_cid: str) -> None:
    """Without this, the forgeries could be 401 for an unrelated reason."""
    token = _sign(full_settings, _claims(full_settings, attack_cid))
    for method, path, body, headers in ROUTES[:8]:
        r = target.request(method, path, content=body, headers={**headers, **bearer(token)})
        assert r.status_code == 200, f"{method} {path}: {r.status_code} {r.text[:300]}"


def test_missing_or_malformed_authorization_header(target: TestClient) -> None:
    for header in (None, "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "bearer a b c", "Bearer " + "A" * 20000):
        headers = {} if header is None else {"Authorization": header}
        r = target.get("/fhir/Patient/ja1", headers=headers)
        assert r.status_code == 401, r.text
        assert b"Attack" not in r.content


def test_disabled_client_tokens_die_on_the_real_app(target: TestClient, full_engine: Engine) -> None:
    cid = f"attack-dis-{uuid.uuid4().hex[:6]}"
    key = make_client_keypair()
    with write_tx(full_engine) as conn:
        register_client(conn, client_id=cid, jwks=key.public_jwks(), scopes="system/*.rs", organizations="A81001")
    token = system_token(target, key, cid, "system/*.rs")
    assert target.get("/fhir/Patient/ja1", headers=bearer(token)).status_code == 200
    with write_tx(full_engine) as conn:
        assert set_disabled(conn, cid)
    for method, path, body, headers in ROUTES:
        _assert_401(target.request(method, path, content=body, headers={**headers, **bearer(token)}))


def test_user_for_unregistered_organisation_gets_no_token(target: TestClient, full_engine: Engine,
                                                           full_settings: Settings) -> None:
    cid = f"attack-org-{uuid.uuid4().hex[:6]}"
    key = make_client_keypair()
    with write_tx(full_engine) as conn:
        register_client(conn, client_id=cid, jwks=key.public_jwks(), scopes="user/*.rs", organizations="A81001",
                        may_assert_users=True)
    with pytest.raises(AssertionError, match="invalid_grant"):
        user_token(target, key, cid, "user/*.rs", organization="Z99999")
    # the registered organisation works (control)
    assert user_token(target, key, cid, "user/*.rs", organization="A81001")
    # a token request whose user assertion is signed by someone else
    url = full_settings.base_url + "/auth/token"
    attacker = make_client_keypair()
    from exchange.auth.testing import client_assertion

    form = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "scope": "user/*.rs",
            "assertion": user_assertion(attacker, cid, url, organization="A81001"),
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": client_assertion(key, cid, url)}
    r = target.post("/fhir/auth/token", data=form)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_scope_escalation_write_with_read_token(target: TestClient, token_for, fingerprint) -> None:  # noqa: ANN001
    headers = token_for(kind="system", scope="system/*.rs", practitioner=None, role=None, purpose=None,
                        client_id="attack-readonly")
    before = fingerprint()
    for method, path, body, extra in ROUTES[11:17]:
        r = target.request(method, path, content=body, headers={**extra, **headers})
        assert r.status_code == 403, f"{method} {path}: {r.status_code} {r.text[:200]}"
        assert r.json()["resourceType"] == "OperationOutcome"
    assert fingerprint() == before
    # the access log is for information governance and system clients only
    clinician = token_for(organization="A81001", scope="user/*.rs", client_id="attack-clinician")
    assert target.get("/fhir/AuditEvent", headers=clinician).status_code == 403
    # a type-restricted token cannot read another type, even inside a batch
    obs_only = token_for(kind="system", scope="system/Observation.rs", practitioner=None, role=None, purpose=None,
                         client_id="attack-obsonly")
    assert target.get("/fhir/Patient/ja1", headers=obs_only).status_code == 403
    batch = target.post("/fhir", headers={**JSON, **obs_only}, content=ROUTES[10][2])
    assert batch.status_code in (200, 403)
    if batch.status_code == 200:
        assert batch.json()["entry"][0]["response"]["status"].startswith("403")
        assert b"Attack" not in batch.content


PATIENT_PROBES = [
    ("GET", "/fhir/Patient/jb2"), ("GET", "/fhir/Patient/jb2/_history/1"), ("GET", "/fhir/Patient/jb2/_history"),
    ("GET", "/fhir/Patient/jb2/$everything"), ("GET", "/fhir/Observation/jb2-obs"),
    ("GET", "/fhir/Observation?patient=jb2"), ("GET", "/fhir/Observation?subject=Patient/jb2"),
    ("GET", "/fhir/Observation?subject:Patient.family=Otherside"), ("GET", "/fhir/Observation"),
    ("GET", "/fhir/Patient?family=Otherside"), ("GET", "/fhir/Patient?_has:Observation:patient:code=29463-7"),
    ("GET", "/fhir/Patient"), ("GET", "/fhir/Observation?_include=Observation:subject"),
    ("GET", "/fhir/Patient?_revinclude=Observation:subject"), ("GET", "/fhir/_history"),
    ("GET", "/fhir/Observation/_history"), ("GET", "/fhir/Patient/jb2/Observation"),
]


@pytest.fixture(scope="module")
def two_patients(target: TestClient, system_headers: dict[str, str]) -> TestClient:
    for pid, family in (("jb1", "Ownself"), ("jb2", "Otherside")):
        r = target.put(f"/fhir/Patient/{pid}", headers={**system_headers, **JSON},
                       content=orjson.dumps({"resourceType": "Patient", "id": pid, "name": [{"family": family}]}))
        assert r.status_code in (200, 201), r.text
        obs = {"resourceType": "Observation", "id": f"{pid}-obs", "status": "final",
               "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}], "text": f"weight {family}"},
               "subject": {"reference": f"Patient/{pid}"}, "valueQuantity": {"value": 70, "unit": "kg"}}
        r = target.put(f"/fhir/Observation/{pid}-obs", headers={**system_headers, **JSON}, content=orjson.dumps(obs))
        assert r.status_code in (200, 201), r.text
    return target


@pytest.mark.parametrize(("method", "path"), PATIENT_PROBES, ids=[p for _m, p in PATIENT_PROBES])
def test_patient_token_cannot_reach_another_patient(two_patients: TestClient, token_for, method: str,  # noqa: ANN001
                                                    path: str) -> None:
    headers = token_for(kind="patient", patient="jb1", scope="patient/*.rs", role=None, organization=None,
                        practitioner=None, purpose=None, client_id="attack-patient-app")
    r = two_patients.request(method, path, headers=headers)
    assert r.status_code in (200, 400, 403, 404), f"{r.status_code} {r.text[:300]}"
    body = r.json()
    if r.status_code >= 400:
        assert body["resourceType"] == "OperationOutcome"
    else:  # the query may be echoed in the links; no entry may carry the other patient's data
        entries = body.get("entry", []) if body["resourceType"] == "Bundle" else [{"resource": body}]
        assert b"Otherside" not in orjson.dumps(entries), r.text[:500]
        ids = {(e.get("resource") or {}).get("id") for e in entries}
        assert not ids & {"jb2", "jb2-obs"}, ids


def test_patient_token_batch_and_write_cannot_reach_another_patient(two_patients: TestClient, token_for,  # noqa: ANN001
                                                                    fingerprint, system_headers) -> None:
    """Regression: a patient token could PUT over another patient's Observation (and
    move it into its own record), and POST resources into another patient's record;
    update never consulted the disclosure gate and writes ignored the patient bound."""
    headers = token_for(kind="patient", patient="jb1", scope="patient/*.cruds", role=None, organization=None,
                        practitioner=None, purpose=None, client_id="attack-patient-app")
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": url}} for url in
        ("Patient/jb2", "Observation?patient=jb2", "Patient/jb2/$everything", "Observation/jb2-obs")]}
    r = two_patients.post("/fhir", headers={**JSON, **headers}, content=orjson.dumps(batch))
    assert r.status_code in (200, 403), r.text
    assert b"Otherside" not in r.content
    before = fingerprint()
    writes = [
        ("PUT", "/fhir/Observation/jb2-obs", {"resourceType": "Observation", "id": "jb2-obs", "status": "final",
                                              "code": {"text": "x"}, "subject": {"reference": "Patient/jb2"}}),
        ("POST", "/fhir/Observation", {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                                       "subject": {"reference": "Patient/jb2"}}),
        ("PUT", "/fhir/Observation/jb2-obs", {"resourceType": "Observation", "id": "jb2-obs", "status": "final",
                                              "code": {"text": "x"}, "subject": {"reference": "Patient/jb1"}}),
        ("PUT", "/fhir/Patient/jb2", {"resourceType": "Patient", "id": "jb2", "name": [{"family": "Hijacked"}]}),
        ("PATCH", "/fhir/Observation/jb1-obs", [{"op": "replace", "path": "/subject/reference", "value": "Patient/jb2"}]),
        ("DELETE", "/fhir/Observation/jb2-obs", None),
        ("DELETE", "/fhir/Observation?patient=jb2", None),
    ]
    for method, path, body in writes:
        ctype = {"content-type": "application/json-patch+json"} if method == "PATCH" else JSON
        r = two_patients.request(method, path, headers={**headers, **ctype},
                                 content=None if body is None else orjson.dumps(body))
        assert r.status_code in (204, 400, 403, 404), f"{method} {path}: {r.status_code} {r.text[:300]}"
    assert fingerprint() == before
    # the other patient's observation is untouched
    seen = two_patients.get("/fhir/Observation/jb2-obs", headers=system_headers).json()
    assert seen["meta"]["versionId"] == "1" and seen["subject"]["reference"] == "Patient/jb2"


def test_patient_token_may_write_its_own_record(two_patients: TestClient, token_for) -> None:  # noqa: ANN001
    """Control for the confinement above: writes into the bound patient's record work."""
    headers = {**token_for(kind="patient", patient="jb1", scope="patient/*.cruds", role=None, organization=None,
                           practitioner=None, purpose=None, client_id="attack-patient-app"), **JSON}
    own = {"resourceType": "Observation", "status": "final", "code": {"text": "self-reported"},
           "subject": {"reference": "Patient/jb1"}}
    assert two_patients.post("/fhir/Observation", headers=headers, content=orjson.dumps(own)).status_code == 201
    current = two_patients.get("/fhir/Observation/jb1-obs", headers=headers).json()
    current["status"] = "amended"
    r = two_patients.put("/fhir/Observation/jb1-obs", headers=headers, content=orjson.dumps(current))
    assert r.status_code == 200, r.text


def test_patient_token_cannot_use_cds_hooks_for_another_patient(two_patients: TestClient, token_for) -> None:  # noqa: ANN001
    headers = token_for(kind="patient", patient="jb1", scope="patient/*.rs", role=None, organization=None,
                        practitioner=None, purpose=None, client_id="attack-patient-app")
    hook = {"hook": "patient-view", "hookInstance": "h2", "context": {"userId": "Patient/jb1", "patientId": "jb2"}}
    r = two_patients.post("/cds-services/care-preferences-patient-view", headers=headers, json=hook)
    assert r.status_code in (403, 404), r.text
    assert b"Otherside" not in r.content


HOSTILE_ASSERTIONS = [
    ("nul-client-id", {"iss": "{cid}\x00", "sub": "{cid}\x00"}, (401,), None),
    ("nul-jti", {"jti": "a\x00b"}, (401,), None),
    ("long-jti", {"jti": "j" * 5000}, (400, 401), None),
    ("exp-not-a-number", {"exp": "soon"}, (400, 401), None),
    ("sql-client-id", {"iss": "x' OR '1'='1", "sub": "x' OR '1'='1"}, (401,), None),
]


@pytest.mark.parametrize(("name", "claims", "statuses", "reason"), HOSTILE_ASSERTIONS,
                         ids=[h[0] for h in HOSTILE_ASSERTIONS])
def test_hostile_client_assertions_never_fail_the_token_endpoint(target: TestClient, full_engine: Engine,
                                                                  full_settings: Settings, db_url: str,
                                                                  request: pytest.FixtureRequest, name: str,
                                                                  claims: dict[str, Any], statuses: tuple[int, ...],
                                                                  reason: str | None) -> None:
    if reason and db_url.startswith("postgres"):
        request.applymarker(pytest.mark.xfail(strict=True, reason=reason))
    from exchange.auth.testing import client_assertion

    cid = f"attack-tk-{uuid.uuid4().hex[:6]}"
    key = make_client_keypair()
    with write_tx(full_engine) as conn:
        register_client(conn, client_id=cid, jwks=key.public_jwks(), scopes="system/*.rs", organizations="A81001")
    url = full_settings.base_url + "/auth/token"
    overrides = {k: v.replace("{cid}", cid) if isinstance(v, str) else v for k, v in claims.items()}
    form = {"grant_type": "client_credentials", "scope": "system/*.rs",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": client_assertion(key, cid, url, **overrides)}
    r = target.post("/fhir/auth/token", data=form)
    assert r.status_code in statuses, f"{r.status_code} {r.text[:200]}"
    if r.status_code != 200:
        assert r.json()["error"] in ("invalid_client", "invalid_request", "invalid_grant")
