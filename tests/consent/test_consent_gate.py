"""The consent gate against a real record, on SQLite and PostgreSQL: required behaviours
1-7 of issue 5 (one test each), always-shared care preferences, system clients, the
choke point's bookkeeping, and SQL narrowing agreeing with the per-resource check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from consent.gate import CARE_PREF_NOTICE, WITHHELD_NOTICE
from exchange.db.engine import read_tx
from exchange.db.tables import resource_current as rc
from exchange.pipeline.context import RequestContext, Requester
from exchange.pipeline.disclosure import release
from exchange.repository.store import read_current

ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
SRC = "https://exchange.example.nhs.uk/source-system"
SCT = "http://snomed.info/sct"
GP, HOSP, CLINIC, FAR, OTHER, COUNCIL = "A81001", "RXX01", "SHC01", "RYY02", "RZZ03", "SOC01"


def user(org: str, role: str = "R8000", purpose: str = "TREAT", reason: str | None = None,
         practitioner: str = "555000111") -> RequestContext:
    return RequestContext(requester=Requester(
        kind="user", role=role, organization=org, purpose_of_use=purpose,
        break_glass_reason=reason, practitioner_id=practitioner))


def patient_ctx(pid: str) -> RequestContext:
    return RequestContext(requester=Requester(kind="patient", patient_id=pid))


def system_ctx(client_id: str) -> RequestContext:
    return RequestContext(requester=Requester(kind="system", client_id=client_id))


def _day(delta: int) -> str:
    return (datetime.now(UTC) + timedelta(days=delta)).date().isoformat()


def org(rid: str, ods: str) -> dict:
    return {"resourceType": "Organization", "id": rid,
            "identifier": [{"system": ODS, "value": ods}], "name": rid}


def patient(pid: str) -> dict:
    return {"resourceType": "Patient", "id": pid, "name": [{"family": pid.upper()}],
            "generalPractitioner": [{"reference": "Organization/org-gp"}]}


def enc(eid: str, pid: str, ods: str, ended_days_ago: int | None) -> dict:
    period = {"start": _day(-(ended_days_ago or 0) - 2)}
    if ended_days_ago is not None:
        period["end"] = _day(-ended_days_ago)
    return {"resourceType": "Encounter", "id": eid, "status": "finished" if ended_days_ago is not None
            else "in-progress", "class": {"code": "IMP"}, "subject": {"reference": f"Patient/{pid}"},
            "serviceProvider": {"identifier": {"system": ODS, "value": ods}}, "period": period}


def obs(oid: str, pid: str, author: str, code: str = "75367002", **extra: object) -> dict:
    r = {"resourceType": "Observation", "id": oid, "status": "final",
         "code": {"coding": [{"system": SCT, "code": code}]},
         "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": _day(-10),
         "meta": {"tag": [{"system": SRC, "code": author}]}}
    r.update(extra)
    return r


def cond(cid: str, pid: str, author: str, code: str) -> dict:
    return {"resourceType": "Condition", "id": cid, "subject": {"reference": f"Patient/{pid}"},
            "code": {"coding": [{"system": SCT, "code": code}]},
            "meta": {"tag": [{"system": SRC, "code": author}]}}


def dnacpr(fid: str, pid: str) -> dict:
    return {"resourceType": "Flag", "id": fid, "status": "active",
            "code": {"coding": [{"system": SCT, "code": "450476008"}]},
            "subject": {"reference": f"Patient/{pid}"},
            "meta": {"tag": [{"system": SRC, "code": GP}]}}


def privacy(cid: str, pid: str, provision: dict) -> dict:
    return {"resourceType": "Consent", "id": cid, "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                                  "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": f"Patient/{pid}"}, "provision": provision}


def ods_actor(ods: str) -> list[dict]:
    return [{"role": {"coding": [{"code": "PRCP"}]},
             "reference": {"identifier": {"system": ODS, "value": ods}}}]


@pytest.fixture(scope="module")
def world(put):  # noqa: ANN001, ANN201
    for rid, ods in (("org-gp", GP), ("org-hosp", HOSP), ("org-clinic", CLINIC),
                     ("org-far", FAR), ("org-other", OTHER), ("org-council", COUNCIL)):
        put(org(rid, ods))
    # p1: registered at GP, recent hospital stay, an old one elsewhere, social care episode
    put(patient("p1"))
    put(enc("e1", "p1", HOSP, 30))
    put(enc("e1-old", "p1", FAR, 1000))
    put({"resourceType": "EpisodeOfCare", "id": "eoc1", "status": "active",
         "patient": {"reference": "Patient/p1"},
         "managingOrganization": {"reference": "Organization/org-council"}})
    put(obs("obs1", "p1", GP))
    put(cond("sti-clinic", "p1", CLINIC, "105629000"))
    put(cond("sti-gp", "p1", GP, "8098009"))
    put(dnacpr("flag1", "p1"))
    put(obs("obs-nopat", "p1", GP, meta={"tag": [{"system": SRC, "code": GP}], "security": [
        {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "NOPAT"}]}))
    # p2: objects to sharing outside the GP practice
    put(patient("p2"))
    put(enc("e2", "p2", HOSP, None))
    put(obs("obs2", "p2", GP))
    put(dnacpr("flag2", "p2"))
    put(privacy("c2", "p2", {"type": "deny", "provision": [
        {"type": "permit", "actor": [{"role": {"coding": [{"code": "PRCP"}]},
                                      "reference": {"reference": "Organization/org-gp"}}]}]}))
    # p3: organisation-level denials, one expired, one in force
    put(patient("p3"))
    put(enc("e3", "p3", HOSP, 5))
    put(enc("e3b", "p3", OTHER, 5))
    put(obs("obs3", "p3", GP))
    put(privacy("c3", "p3", {"type": "permit", "provision": [
        {"type": "deny", "actor": ods_actor(HOSP), "period": {"start": _day(-400), "end": _day(-30)}},
        {"type": "deny", "actor": ods_actor(OTHER), "period": {"start": _day(-10)}}]}))
    # p4: consent explicitly permits the hospital to see sexual-health data
    put(patient("p4"))
    put(enc("e4", "p4", HOSP, 3))
    put(cond("sti4", "p4", CLINIC, "105629000"))
    put(privacy("c4", "p4", {"type": "permit", "provision": [
        {"type": "permit", "actor": ods_actor(HOSP), "securityLabel": [
            {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "STD"}]}]}))
    # p5: blanket objection plus an explicit restriction of Flags (care preferences)
    put(patient("p5"))
    put(enc("e5", "p5", HOSP, 3))
    put(dnacpr("flag5", "p5"))
    put(privacy("c5", "p5", {"type": "deny", "provision": [
        {"type": "deny", "class": [{"system": "http://hl7.org/fhir/resource-types", "code": "Flag"}]}]}))
    return True


def decide(cengine, gate, ctx, rtype: str, rid: str):  # noqa: ANN001, ANN201
    with read_tx(cengine) as conn:
        res = read_current(conn, rtype, rid)
        assert res is not None
        return gate.check(conn, ctx, res)


def visible(cengine, gate, ctx, refs: list[tuple[str, str]]) -> set[str]:  # noqa: ANN001
    return {f"{t}/{i}" for t, i in refs if decide(cengine, gate, ctx, t, i).effect == "permit"}


P1 = [("Patient", "p1"), ("Observation", "obs1"), ("Condition", "sti-clinic"),
      ("Condition", "sti-gp"), ("Flag", "flag1"), ("Encounter", "e1")]


def test_behaviour_1_registered_gp_sees_all_but_restricted_from_elsewhere(world, cengine, gate):
    ctx = user(GP, role="R0260")
    seen = visible(cengine, gate, ctx, P1)
    assert seen == {"Patient/p1", "Observation/obs1", "Condition/sti-gp", "Flag/flag1", "Encounter/e1"}
    d = decide(cengine, gate, ctx, "Condition", "sti-clinic")
    assert d.rule == "label.legally-restricted"
    assert ctx.relationship is True


def test_behaviour_2_hospital_with_recent_encounter_sees_record(world, cengine, gate):
    ctx = user(HOSP)
    assert decide(cengine, gate, ctx, "Observation", "obs1").effect == "permit"
    assert decide(cengine, gate, ctx, "Patient", "p1").rule == "relationship.encounter"
    assert decide(cengine, gate, ctx, "Condition", "sti-gp").rule == "label.legally-restricted"


def test_behaviour_3_no_relationship_refused_unless_break_glass_with_reason(world, cengine, gate):
    far = user(FAR)  # its encounter ended 1000 days ago: outside the look-back window
    for t, i in P1:
        d = decide(cengine, gate, far, t, i)
        assert d.effect == "deny"
    refused = decide(cengine, gate, far, "Observation", "obs1")
    assert (refused.rule, refused.disclose_refusal) == ("relationship.none", True)  # 403 on read
    assert far.relationship is False
    no_reason = user(FAR, purpose="BTG")
    assert decide(cengine, gate, no_reason, "Observation", "obs1").rule == "break-glass.no-reason"
    btg = user(FAR, purpose="BTG", reason="unconscious patient in ED")
    d = decide(cengine, gate, btg, "Observation", "obs1")
    assert (d.effect, d.rule) == ("permit", "break-glass")
    assert btg.break_glass_used is True


def test_behaviour_4_objection_leaves_demographics_and_care_preferences(world, cengine, gate):
    hosp = user(HOSP)
    shown = decide(cengine, gate, hosp, "Patient", "p2")
    assert (shown.effect, shown.notice) == ("permit", WITHHELD_NOTICE)
    assert decide(cengine, gate, hosp, "Flag", "flag2").effect == "permit"
    d = decide(cengine, gate, hosp, "Observation", "obs2")
    assert (d.effect, d.rule) == ("deny", "consent.Consent/c2#provision")
    assert d.disclose_refusal is False  # a read answers 404: existence not disclosed
    # the permitted organisation (nested exception) sees everything
    gp = decide(cengine, gate, user(GP), "Observation", "obs2")
    assert (gp.rule, gp.notice) == ("consent.Consent/c2#provision.provision[0]", None)
    # break-glass overrides the objection
    btg = user(HOSP, purpose="BTG", reason="cardiac arrest")
    overridden = decide(cengine, gate, btg, "Observation", "obs2")
    assert (overridden.rule, overridden.notice) == ("break-glass", None)


def test_behaviour_4_notice_reaches_the_response_through_the_choke_point(world, cengine, gate):
    ctx = user(HOSP)
    ctx.gate = gate
    with read_tx(cengine) as conn:
        res = [read_current(conn, t, i) for t, i in
               (("Patient", "p2"), ("Observation", "obs2"), ("Flag", "flag2"))]
        out = release(conn, ctx, res)
    assert [r.id for r in out] == ["p2", "flag2"]
    assert ctx.withheld == 1 and ctx.withheld_rules["consent.Consent/c2#provision"] == 1
    assert ctx.informational == [WITHHELD_NOTICE]


def test_behaviour_5_restricted_never_outside_author_even_break_glass(world, cengine, gate):
    btg = user(HOSP, purpose="BTG", reason="emergency")
    assert decide(cengine, gate, btg, "Condition", "sti-clinic").rule == "label.legally-restricted"
    assert decide(cengine, gate, user(CLINIC, purpose="BTG", reason="x"), "Condition",
                  "sti-clinic").effect == "permit"
    # ... unless the patient's consent explicitly permits it, and only for that actor
    assert decide(cengine, gate, user(HOSP), "Condition", "sti4").effect == "permit"
    assert decide(cengine, gate, user(GP), "Condition", "sti4").rule == "label.legally-restricted"


def test_behaviour_6_org_denial_blocks_until_its_period_ends(world, cengine, gate):
    d = decide(cengine, gate, user(OTHER), "Observation", "obs3")
    assert (d.effect, d.rule) == ("deny", "consent.Consent/c3#provision.provision[1]")
    assert decide(cengine, gate, user(OTHER, role="R0260", practitioner="9"), "Observation",
                  "obs3").effect == "deny"
    assert decide(cengine, gate, user(HOSP), "Observation", "obs3").effect == "permit"


def test_behaviour_7_patient_sees_own_record_minus_not_for_patient(world, cengine, gate):
    me = patient_ctx("p1")
    seen = visible(cengine, gate, me, P1 + [("Observation", "obs-nopat"), ("Observation", "obs2")])
    assert seen == {f"{t}/{i}" for t, i in P1}
    assert decide(cengine, gate, me, "Observation", "obs-nopat").rule == "label.not-for-patient"
    assert decide(cengine, gate, me, "Observation", "obs2").rule == "patient.other-record"


def test_care_preferences_hidden_only_by_an_explicit_provision(world, cengine, gate):
    hosp = user(HOSP)
    shown = decide(cengine, gate, hosp, "Patient", "p5")
    assert shown.effect == "permit" and CARE_PREF_NOTICE in shown.notice
    d = decide(cengine, gate, hosp, "Flag", "flag5")
    assert (d.effect, d.rule) == ("deny", "consent.Consent/c5#provision.provision[0]")
    # p2's objection does not name care preferences: only the general notice
    assert CARE_PREF_NOTICE not in decide(cengine, gate, hosp, "Patient", "p2").notice


def test_notice_for_searches_scoped_to_the_patient(world, cengine, gate):
    ctx = user(HOSP)
    ctx.resource_type, ctx.query = "Observation", "patient=Patient/p2&code=1"
    with read_tx(cengine) as conn:
        gate.sql_filter(conn, ctx, "Observation", rc.c.rid)
    assert ctx.informational == [WITHHELD_NOTICE]
    other = user(HOSP)
    other.resource_type, other.query = "Observation", "patient=p1"
    with read_tx(cengine) as conn:
        gate.sql_filter(conn, other, "Observation", rc.c.rid)
    assert other.informational == []


def test_social_care_role_sees_its_scope_only(world, cengine, gate):
    sw = user(COUNCIL, role="R0243")
    assert visible(cengine, gate, sw, P1 + [("EpisodeOfCare", "eoc1")]) == {
        "Patient/p1", "Flag/flag1", "EpisodeOfCare/eoc1"}
    assert decide(cengine, gate, sw, "Observation", "obs1").rule == "policy.role-scope"


def test_unknown_role_and_disallowed_purpose(world, cengine, gate):
    assert decide(cengine, gate, user(GP, role="R9999"), "Patient", "p1").rule == "policy.no-role"
    student = user(GP, role="R8004", purpose="BTG", reason="x")
    assert decide(cengine, gate, student, "Patient", "p1").rule == "policy.purpose"
    assert decide(cengine, gate, user(FAR, role="R9999"), "Organization", "org-gp").effect == "permit"


def test_system_clients_follow_their_policy(world, cengine, gate):
    default = system_ctx("some-backend")
    assert decide(cengine, gate, default, "Observation", "obs1").effect == "permit"
    assert decide(cengine, gate, default, "Condition", "sti-clinic").rule == "label.legally-restricted"
    assert decide(cengine, gate, default, "Observation", "obs2").rule == "consent.Consent/c2#provision"
    pop = system_ctx("population-health")
    assert decide(cengine, gate, pop, "Flag", "flag1").rule == "policy.system-client"


def _sql_visible(cengine, gate, ctx) -> set[str]:  # noqa: ANN001
    with read_tx(cengine) as conn:
        cond = gate.sql_filter(conn, ctx, None, rc.c.rid)
        q = select(rc.c.res_type, rc.c.res_id)
        if cond is not None:
            q = q.where(cond)
        return {f"{t}/{i}" for t, i in conn.execute(q)}


@pytest.mark.parametrize("make", [
    lambda: user(GP), lambda: user(HOSP), lambda: user(FAR), lambda: user(OTHER),
    lambda: user(COUNCIL, role="R0243"), lambda: user(FAR, purpose="BTG", reason="r"),
    lambda: user(GP, role="R9999"), lambda: patient_ctx("p1"), lambda: system_ctx("x"),
    lambda: system_ctx("population-health"),
])
def test_sql_filter_never_hides_what_check_permits(world, cengine, gate, make):
    ctx = make()
    sql = _sql_visible(cengine, gate, ctx)
    with read_tx(cengine) as conn:
        everything = [(t, i) for t, i in conn.execute(select(rc.c.res_type, rc.c.res_id))]
    permitted = visible(cengine, gate, make(), everything)
    assert permitted <= sql


def test_sql_filter_narrows_what_it_can_express(world, cengine, gate):
    far = _sql_visible(cengine, gate, user(FAR))
    assert not {"Patient/p1", "Observation/obs1", "Flag/flag1"} & far
    assert "Organization/org-gp" in far
    hosp = _sql_visible(cengine, gate, user(HOSP))
    assert "Condition/sti-clinic" not in hosp and "Observation/obs1" in hosp
    assert "Condition/sti4" in hosp  # explicitly permitted by p4's consent
    assert "Observation/obs2" not in hosp and {"Patient/p2", "Flag/flag2"} <= hosp  # objection
    assert "Flag/flag5" not in hosp
    mine = _sql_visible(cengine, gate, patient_ctx("p1"))
    assert "Observation/obs2" not in mine and "Observation/obs-nopat" not in mine


def test_sql_filter_beyond_the_evaluation_limit_hides_conservatively(world, cengine, gate, monkeypatch):
    import consent.narrowing

    monkeypatch.setattr(consent.narrowing, "DIRECTIVE_EVAL_LIMIT", 0)
    sql = _sql_visible(cengine, gate, user(HOSP))
    assert "Encounter/e5" not in sql and "Patient/p5" in sql and "Flag/flag5" in sql
    with read_tx(cengine) as conn:
        everything = [(t, i) for t, i in conn.execute(select(rc.c.res_type, rc.c.res_id))]
    assert visible(cengine, gate, user(HOSP), everything) <= sql


def test_delete_markers_in_history_are_decided_from_the_kept_facts(world, put, cengine, gate):
    from consent.facts import index_facts
    from exchange.db.engine import write_tx
    from exchange.repository import store
    from exchange.repository.store import read_version

    put(cond("sti-del", "p1", CLINIC, "105629000"))
    put(obs("obs-del", "p2", GP))
    for rid in ("sti-del", "obs-del"):
        rtype = "Condition" if rid == "sti-del" else "Observation"
        with write_tx(cengine) as conn:
            cur = store.lock_current(conn, rtype, rid)
            gone = store.write_version(conn, rtype, rid, None, method="DELETE", current=cur)
            index_facts(conn, gone.rid, rtype, None)
    with read_tx(cengine) as conn:
        marker = read_version(conn, "Condition", "sti-del", 2)
        objected = read_version(conn, "Observation", "obs-del", 2)
        assert marker.deleted and marker.content is None
        assert gate.check(conn, user(FAR), marker).rule == "label.legally-restricted"
        assert gate.check(conn, user(GP), marker).rule == "label.legally-restricted"
        assert gate.check(conn, user(CLINIC, purpose="BTG", reason="r"), marker).effect == "permit"
        assert gate.check(conn, patient_ctx("p2"), marker).rule == "patient.other-record"
        assert gate.check(conn, user(HOSP), objected).effect == "deny"
        assert gate.check(conn, user(GP), objected).effect == "permit"
