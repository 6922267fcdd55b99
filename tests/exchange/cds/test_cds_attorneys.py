"""LPA cards list that LPA's attorneys, each person once (issue 6, gaps-6 #6): the same
attorney recorded by two sources is not listed twice, and an LPA's card does not list
the attorneys another source's LPA names. Pure functions, then over HTTP with a real
token. SQLite and PostgreSQL for the HTTP part."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "operations"))

from eol_fixtures import attorney, flag  # noqa: E402

from exchange.auth.testing import bearer, quick_token  # noqa: E402
from exchange.cds.cards import build_cards  # noqa: E402
from exchange.db.engine import write_tx  # noqa: E402
from exchange.operations.eol_classify import attorney_of, classify  # noqa: E402
from exchange.operations.eol_current import assess, attorneys_for, merge_attorneys  # noqa: E402
from exchange.repository.store import lock_current, write_version  # noqa: E402

LPA = "816361000000101"
DETAIL = "http://hl7.org/fhir/StructureDefinition/flag-detail"
URL = "/cds-services/care-preferences-patient-view"


def person(rid: str, name: str, phone: str, *, source: str, patient: str = "p1", active: bool = True) -> dict:
    res = attorney(rid, patient=patient, source=source, active=active)
    res["name"] = [{"text": name}]
    res["telecom"] = [{"system": "phone", "value": phone}]
    return res


def lpa(fid: str, *, source: str, patient: str = "p1", names: str | None = None) -> dict:
    ext = [{"url": DETAIL, "valueReference": {"reference": f"RelatedPerson/{names}"}}] if names else None
    return flag(fid, LPA, source=source, patient=patient, start="2024-01-01", ext=ext)


def lpa_cards(resources: list[dict]) -> list[dict]:
    prefs = [p for p in map(classify, resources) if p is not None]
    people = [a for a in map(attorney_of, resources) if a is not None]
    cards = build_cards(assess(prefs, people), "https://x/fhir/Patient/p1/$care-preferences")
    return sorted((c for c in cards if "attorney" in c["summary"]), key=lambda c: c["source"]["label"])


def attorney_lines(card: dict) -> list[str]:
    return [line for line in card["detail"].splitlines() if line.startswith("- **Attorney:**")]


def test_same_attorney_from_two_sources_is_listed_once() -> None:
    cards = lpa_cards([
        lpa("gp-lpa", source="GP"), lpa("h-lpa", source="Hospital"),
        person("gp-karen", "Karen Whitfield", "07700 900111", source="GP"),
        person("h-karen", "karen  whitfield", "07700 900111", source="Hospital"),
    ])
    assert len(cards) == 2  # one card per source's LPA decision
    for c in cards:
        assert " ".join(c["summary"].split()).lower().endswith(": karen whitfield"), c["summary"]
        (line,) = attorney_lines(c)
        assert line.count("07700 900111") == 1


def test_each_lpa_lists_its_own_attorneys() -> None:
    cards = lpa_cards([
        lpa("gp-lpa", source="GP", names="ann"), lpa("h-lpa", source="Hospital"),
        person("ann", "Ann Smith", "07700 900001", source="GP"),
        person("bob", "Bob Jones", "07700 900002", source="Hospital"),
        person("gone", "Old Attorney", "07700 900003", source="GP", active=False),
    ])
    gp, hosp = cards
    assert gp["summary"].endswith(": Ann Smith") and "Bob" not in gp["detail"]
    assert hosp["summary"].endswith(": Bob Jones") and "Ann" not in hosp["detail"]
    assert "Old Attorney" not in gp["detail"] + hosp["detail"]


def test_an_attorney_tied_to_no_lpa_is_still_shown() -> None:
    (card,) = lpa_cards([
        lpa("gp-lpa", source="GP"),
        person("c-cara", "Cara Lee", "07700 900004", source="Community"),
    ])
    assert card["summary"].endswith(": Cara Lee")


def test_merge_keeps_every_contact_detail_and_source() -> None:
    people = [a for a in map(attorney_of, [
        person("a1", "Karen Whitfield", "07700 900111", source="GP"),
        person("a2", "Karen Whitfield", "07700 900222", source="Hospital"),
        person("a3", "Someone Else", "07700 900333", source="GP"),
    ]) if a is not None]
    karen, other = merge_attorneys(people)
    assert karen.telecom == ["phone: 07700 900111", "phone: 07700 900222"]
    assert karen.source == "GP, Hospital" and karen.also == ["RelatedPerson/a2"]
    assert other.name == "Someone Else"
    assert [a.name for a in people] == ["Karen Whitfield", "Karen Whitfield", "Someone Else"]  # inputs untouched


def test_attorneys_for_is_empty_without_attorneys() -> None:
    a = assess([classify(lpa("gp-lpa", source="GP"))], [])
    assert attorneys_for(a, a.current("lpa")[0]) == []


@pytest.fixture(scope="module")
def secure_client(engine, settings):  # noqa: ANN001, ANN201
    from fastapi.testclient import TestClient

    from exchange.app import create_app

    s = settings.with_(auth_enabled=True, audit_enabled=False, consent_enabled=False)
    with write_tx(engine) as conn:
        for res in [
            {"resourceType": "Patient", "id": "att-p"},
            lpa("att-gp-lpa", source="GP", patient="att-p"), lpa("att-h-lpa", source="Hospital", patient="att-p"),
            person("att-gp-karen", "Karen Whitfield", "07700 900111", source="GP", patient="att-p"),
            person("att-h-karen", "Karen Whitfield", "07700 900111", source="Hospital", patient="att-p"),
        ]:
            cur = lock_current(conn, res["resourceType"], res["id"])
            write_version(conn, res["resourceType"], res["id"], dict(res), method="PUT", current=cur)
    with TestClient(create_app(s, engine=engine)) as c:
        c.att_settings = s  # type: ignore[attr-defined]
        yield c


def test_no_card_lists_the_same_attorney_twice_over_http(engine, secure_client) -> None:  # noqa: ANN001
    hook = {"hook": "patient-view", "hookInstance": str(uuid.uuid4()), "context": {"patientId": "att-p"}}
    h = bearer(quick_token(engine, secure_client.att_settings, client_id="cds-attorneys", scope="user/*.rs"))
    r = secure_client.post(URL, json=hook, headers=h)
    assert r.status_code == 200, r.text
    cards = [c for c in r.json()["cards"] if "attorney" in c["summary"]]
    assert len(cards) == 2
    for c in cards:
        assert c["summary"] == "Lasting power of attorney (health and welfare): Karen Whitfield"
        assert len(attorney_lines(c)) == 1
