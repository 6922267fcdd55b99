"""Consent directives: applicability, nested exceptions, and the deny-wins conflict rule
(consent/directives.py module docstring; docs/consent-policy.md)."""

from __future__ import annotations

from datetime import UTC, datetime

from consent.directives import Actor, Requesting, combine, parse_directive

ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
HOSP = Requesting(organization="RXX01", role="R8000", purpose="TREAT")
GP = Requesting(organization="A81001", role="R0260", purpose="TREAT")
OBS = {"resourceType": "Observation", "id": "o1", "effectiveDateTime": "2019-05-01",
       "code": {"coding": [{"system": "http://snomed.info/sct", "code": "75367002"}]}}


def resolve(ref: dict) -> Actor:
    ident = (ref or {}).get("identifier") or {}
    return Actor(org_ods={ident["value"]} if ident.get("system") == ODS else set())


def org(ods: str) -> list[dict]:
    return [{"reference": {"identifier": {"system": ODS, "value": ods}}}]


def consent(provision: dict, *, cid: str = "c1", status: str = "active", scope: str = "patient-privacy",
            policy_rule: str | None = None) -> dict:
    c = {"resourceType": "Consent", "id": cid, "status": status,
         "scope": {"coding": [{"code": scope}]}, "patient": {"reference": "Patient/p1"},
         "provision": provision}
    if policy_rule:
        c["policyRule"] = {"coding": [{"code": policy_rule}]}
    return c


def outcome(provision: dict, who: Requesting = HOSP, res: dict = OBS, **kw: object):
    d = parse_directive(consent(provision, **kw), resolve, NOW)
    assert d is not None
    return d.evaluate(who, res, NOW)


def test_nested_provision_is_an_exception_to_its_parent():
    tree = {"type": "deny", "provision": [{"type": "permit", "actor": org("A81001")}]}
    assert outcome(tree, GP).effect == "permit"
    assert outcome(tree, GP).path == "provision.provision[0]"
    assert outcome(tree, HOSP).effect == "deny"
    assert outcome(tree, HOSP).path == "provision"


def test_exception_to_an_exception():
    tree = {"type": "deny", "provision": [{"type": "permit", "actor": org("RXX01"), "provision": [
        {"type": "deny", "class": [{"code": "Observation"}]}]}]}
    o = outcome(tree)
    assert (o.effect, o.path, o.explicit) == ("deny", "provision.provision[0].provision[0]", True)
    assert outcome(tree, res={"resourceType": "Condition", "id": "x"}).effect == "permit"


def test_conflicting_siblings_deny_wins():
    tree = {"type": "permit", "provision": [
        {"type": "permit", "actor": org("RXX01")},
        {"type": "deny", "code": [{"coding": [{"system": "http://snomed.info/sct", "code": "75367002"}]}]}]}
    o = outcome(tree)
    assert (o.effect, o.path) == ("deny", "provision.provision[1]")


def test_deny_wins_across_directives():
    permit = parse_directive(consent({"type": "permit"}, cid="a"), resolve, NOW)
    deny = parse_directive(consent({"type": "deny", "actor": org("RXX01")}, cid="b"), resolve, NOW)
    got = combine([d.evaluate(HOSP, OBS, NOW) for d in (permit, deny)])
    assert (got.effect, got.consent_id) == ("deny", "b")
    assert combine([permit.evaluate(HOSP, OBS, NOW)]).effect == "permit"
    assert combine([]) is None


def test_periods_purpose_action_data_period_and_data():
    ended = {"type": "permit", "provision": [
        {"type": "deny", "actor": org("RXX01"), "period": {"start": "2025-01-01", "end": "2026-06-30"}}]}
    assert outcome(ended).effect == "permit"
    assert outcome({"type": "permit", "provision": [
        {"type": "deny", "purpose": [{"code": "ETREAT"}]}]}).effect == "permit"
    assert outcome({"type": "permit", "provision": [
        {"type": "deny", "action": [{"coding": [{"code": "correct"}]}]}]}).effect == "permit"
    data_period = {"type": "permit", "provision": [
        {"type": "deny", "dataPeriod": {"start": "2019-01-01", "end": "2019-12-31"}}]}
    assert outcome(data_period).effect == "deny"
    assert outcome(data_period, res={**OBS, "effectiveDateTime": "2021-03-01"}).effect == "permit"
    data = {"type": "permit", "provision": [
        {"type": "deny", "data": [{"meaning": "instance", "reference": {"reference": "Observation/o1"}}]}]}
    assert outcome(data).effect == "deny"
    assert outcome(data, res={**OBS, "id": "o2"}).effect == "permit"


def test_only_active_in_force_privacy_consents_are_directives():
    assert parse_directive(consent({"type": "deny"}, status="inactive"), resolve, NOW) is None
    assert parse_directive(consent({"type": "deny"}, scope="adr"), resolve, NOW) is None
    expired = {"type": "deny", "period": {"start": "2020-01-01", "end": "2021-01-01"}}
    assert parse_directive(consent(expired), resolve, NOW) is None


def test_root_without_type_uses_policy_rule():
    assert outcome({}, policy_rule="OPTOUT").effect == "deny"
    assert outcome({}, policy_rule="OPTIN").effect == "permit"
    assert outcome({}) is None
    assert outcome({}, policy_rule="OPTOUT").explicit is False
