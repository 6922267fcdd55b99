"""SMART v1/v2 scope parsing, grant intersection and per-interaction enforcement."""

from __future__ import annotations

import pytest

from exchange.auth.scopes import (
    check_access,
    check_patient,
    confine,
    grant,
    granular_filters,
    parse_scope,
    patient_restriction,
)
from exchange.outcome import Forbidden
from exchange.pipeline.context import ANONYMOUS, Requester


def who(*scopes: str, kind: str = "user", patient: str | None = None) -> Requester:
    return Requester(kind=kind, client_id="c", scopes=frozenset(scopes), patient_id=patient)


@pytest.mark.parametrize(
    ("text", "context", "rtype", "perms"),
    [
        ("patient/*.read", "patient", "*", "rs"),
        ("user/Observation.*", "user", "Observation", "cruds"),
        ("system/*.write", "system", "*", "cud"),
        ("system/Patient.rs", "system", "Patient", "rs"),
        ("user/*.cruds", "user", "*", "cruds"),
        ("user/Encounter.cu", "user", "Encounter", "cu"),
    ],
)
def test_parse_v1_and_v2(text: str, context: str, rtype: str, perms: str) -> None:
    s = parse_scope(text)
    assert s is not None
    assert (s.context, s.resource_type, s.permissions) == (context, rtype, frozenset(perms))
    assert str(s) == text


@pytest.mark.parametrize(
    "text",
    ["openid", "launch/patient", "user/*.sr", "user/*.rrs", "user/*.x", "admin/*.read",
     "user/observation.rs", "patient/*.read?category=x", "user/Observation.rs?", ""],
)
def test_invalid_or_non_resource_scopes_are_none(text: str) -> None:
    assert parse_scope(text) is None


def test_granular_scope_parsed() -> None:
    s = parse_scope("patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory")
    assert s is not None
    assert s.query == (("category", "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"),)


def test_grant_is_requested_intersect_registered() -> None:
    registered = "system/*.rs user/Observation.rs user/Patient.cruds"
    assert grant("system/*.cruds", registered, ["system"]) == ["system/*.rs"]
    assert grant("system/Patient.read", registered, ["system"]) == ["system/Patient.read"]
    assert grant("user/*.read", registered, ["user"]) == ["user/Observation.read", "user/Patient.read"]
    assert grant("user/Patient.*", registered, ["user"]) == ["user/Patient.*"]
    # escalation attempts get nothing more than registered
    assert grant("system/*.write", registered, ["system"]) == []
    assert grant("user/Condition.rs", registered, ["user"]) == []
    # context restriction: a client_credentials grant never gets user/ scopes
    assert grant("user/Patient.rs", registered, ["system"]) == []


def test_grant_keeps_registered_granular_constraint() -> None:
    registered = "user/Observation.rs?category=laboratory"
    assert grant("user/*.rs", registered, ["user"]) == ["user/Observation.rs?category=laboratory"]


@pytest.mark.parametrize(
    ("interaction", "rtype", "scope", "allowed"),
    [
        ("read", "Patient", "user/Patient.r", True),
        ("read", "Patient", "user/Patient.s", False),
        ("vread", "Patient", "user/*.read", True),
        ("search-type", "Observation", "user/Observation.s", True),
        ("search-type", "Observation", "user/Observation.r", False),
        ("search-system", None, "user/*.s", True),
        ("search-system", None, "user/Patient.s", False),
        ("history-instance", "Patient", "user/Patient.r", True),
        ("history-type", "Patient", "user/Patient.rs", True),
        ("history-system", None, "user/Patient.rs", False),
        ("create", "Observation", "system/Observation.c", True),
        ("create", "Observation", "system/*.read", False),
        ("update", "Observation", "system/*.write", True),
        ("patch", "Observation", "system/*.u", True),
        ("delete", "Observation", "system/*.cru", False),
        ("delete", "Observation", "system/*.*", True),
        ("operation", "Patient", "user/Patient.rs", True),
        ("batch", None, "user/Patient.rs", True),
        ("transaction", None, "openid", False),
        ("capabilities", None, "openid", True),
    ],
)
def test_check_access(interaction: str, rtype: str | None, scope: str, allowed: bool) -> None:
    requester = who(scope, kind="system" if scope.startswith("system") else "user")
    if allowed:
        check_access(requester, interaction, rtype)
    else:
        with pytest.raises(Forbidden) as info:
            check_access(requester, interaction, rtype)
        assert info.value.status == 403


def test_check_access_unknown_interaction_is_programming_error() -> None:
    with pytest.raises(ValueError):
        check_access(who("user/*.rs"), "teleport", "Patient")


def test_anonymous_may_do_anything() -> None:
    check_access(ANONYMOUS, "delete", "Patient")
    assert patient_restriction(ANONYMOUS) is None


def test_patient_scopes_need_a_bound_patient() -> None:
    with pytest.raises(Forbidden):
        check_access(who("patient/*.rs", kind="user"), "read", "Observation")
    check_access(who("patient/*.rs", kind="user", patient="p1"), "read", "Observation")


def test_patient_token_cannot_reach_another_patient() -> None:
    token = who("patient/*.rs", kind="patient", patient="p1")
    assert patient_restriction(token) == "p1"
    check_patient(token, ["p1"])
    with pytest.raises(Forbidden):
        check_patient(token, ["p1", "p2"])
    # a patient session without a bound patient is confined to nothing
    assert patient_restriction(who("patient/*.rs", kind="patient")) == ""
    with pytest.raises(Forbidden):
        check_patient(who("patient/*.rs", kind="patient"), ["p1"])
    # user-level tokens are not confined
    assert patient_restriction(who("user/*.rs")) is None
    check_patient(who("user/*.rs"), ["p1", "p2"])


def test_mixed_patient_and_user_scopes_do_not_widen() -> None:
    assert confine(["user/Observation.rs", "patient/*.rs", "openid"]) == ["user/Observation.rs", "openid"]
    mixed = who("user/Observation.rs", "patient/*.rs", patient="p1")
    with pytest.raises(Forbidden):
        check_access(mixed, "read", "Condition")  # patient/*.rs must not open Condition for all
    check_access(mixed, "read", "Observation")
    assert patient_restriction(mixed) is None


def test_granular_filters() -> None:
    lab = "user/Observation.rs?category=laboratory"
    vit = "user/Observation.rs?category=vital-signs"
    assert granular_filters(who(lab), "Observation") == [("category", "laboratory")]
    assert granular_filters(who(lab, vit), "Observation") == [("category", "laboratory,vital-signs")]
    # an unconstrained covering scope lifts the constraint
    assert granular_filters(who(lab, "user/*.rs"), "Observation") is None
    assert granular_filters(who(lab), "Condition") is None
    # different parameters: AND-ed (never wider than the union)
    both = who(lab, "user/Observation.s?status=final")
    assert granular_filters(both, "Observation") == [("category", "laboratory"), ("status", "final")]
    # only scopes carrying the needed permission count
    assert granular_filters(who(lab, "user/Observation.c"), "Observation", interaction="read") == [
        ("category", "laboratory")
    ]
