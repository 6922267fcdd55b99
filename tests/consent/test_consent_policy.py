"""The sharing policy file: the default loads, and bad fields are named in the error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from consent.policy import DEFAULT_POLICY_PATH, PolicyError, load_policy, parse_policy


def _default() -> dict:
    return yaml.safe_load(DEFAULT_POLICY_PATH.read_text())


def test_default_policy_loads_with_documented_roles():
    pol = load_policy()
    assert pol.version
    assert pol.group_for_role("R8000").name == "clinical"
    assert pol.group_for_role("R0260").access == "full"
    assert pol.group_for_role("R0243").access == "limited"
    assert pol.group_for_role("R9999") is None
    assert "objection" in pol.break_glass_overrides
    assert "legally_restricted" not in pol.break_glass_overrides
    assert pol.system_policy("unknown-client").client_id == "*"


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda d: d["role_groups"]["clinical"].__setitem__("access", "everything"),
     "role_groups.clinical.access"),
    (lambda d: d["role_groups"]["social_care"].pop("roles"), "role_groups.social_care.roles"),
    (lambda d: d["role_groups"]["student"].__setitem__("roles", ["R8000"]),
     "role_groups.student.roles"),
    (lambda d: d["break_glass"].__setitem__("overrides", ["legally_restricted"]),
     "break_glass.overrides"),
    (lambda d: d["system_clients"]["population-health"].pop("resource_types"),
     "system_clients.population-health.resource_types"),
    (lambda d: d.__setitem__("colour", "blue"), "colour"),
    (lambda d: d.pop("version"), "version"),
    (lambda d: d["legally_restricted_labels"].append({"code": "X"}), "legally_restricted_labels[3]"),
])
def test_invalid_policy_names_the_bad_field(mutate, field):
    doc = _default()
    mutate(doc)
    with pytest.raises(PolicyError) as err:
        parse_policy(doc)
    assert str(err.value).startswith(field)


def test_json_policy_file_and_missing_file(tmp_path: Path):
    p = tmp_path / "policy.json"
    p.write_text(json.dumps(_default()))
    assert load_policy(p).version == load_policy().version
    with pytest.raises(PolicyError, match="does not exist"):
        load_policy(tmp_path / "nope.yaml")
