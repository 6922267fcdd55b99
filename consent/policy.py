"""The local sharing policy: a declarative, versioned YAML/JSON file (docs/consent-policy.md).

The policy maps national RBAC job role codes to what a role may see, sets the policy of
each backend (system) client, lists the security labels that make data legally
restricted or not for disclosure to the patient, and says what break-glass
(v3 PurposeOfUse ``BTG``) unlocks. It is validated when loaded (at start-up): any bad
field raises :class:`PolicyError` naming the field, e.g.
``role_groups.social_care.access: must be one of full, limited``.

FHIR R4 references: security labels (security-labels.html), PurposeOfUse
(v3-PurposeOfUse), Consent (consent.html).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

DEFAULT_POLICY_PATH = Path(__file__).parent / "data" / "policy.yaml"
PURPOSES = ("TREAT", "ETREAT", "BTG")
ACCESS_USER = ("full", "limited")
ACCESS_SYSTEM = ("full", "types", "none")
OVERRIDABLE = ("relationship", "objection")
LINK_KINDS = ("registered_gp", "encounter", "episode_of_care", "care_team")

Code = tuple[str, str]  # (system, code)


class PolicyError(ValueError):
    """The policy file is invalid; the message names the offending field."""


@dataclass(frozen=True)
class RoleGroup:
    name: str
    roles: frozenset[str]
    access: str
    purposes: frozenset[str]
    resource_types: frozenset[str] = frozenset()
    tags: frozenset[Code] = frozenset()
    description: str = ""


@dataclass(frozen=True)
class SystemClientPolicy:
    client_id: str
    access: str
    resource_types: frozenset[str] = frozenset()
    honour_objections: bool = True
    legally_restricted: bool = False


@dataclass(frozen=True)
class Policy:
    version: str
    role_groups: tuple[RoleGroup, ...]
    demographic_types: frozenset[str]
    non_patient_types: frozenset[str]
    relationship_required: bool
    relationship_links: frozenset[str]
    legally_restricted_labels: frozenset[Code]
    not_for_patient_labels: frozenset[Code]
    authoring_tag_systems: tuple[str, ...]
    break_glass_requires_reason: bool
    break_glass_overrides: frozenset[str]
    system_clients: dict[str, SystemClientPolicy] = field(default_factory=dict)

    def group_for_role(self, role: str | None) -> RoleGroup | None:
        if not role:
            return None
        for g in self.role_groups:
            if role in g.roles:
                return g
        return None

    def system_policy(self, client_id: str | None) -> SystemClientPolicy | None:
        if client_id and client_id in self.system_clients:
            return self.system_clients[client_id]
        return self.system_clients.get("*")


def _req(d: dict[str, Any], key: str, where: str) -> Any:
    if key not in d:
        raise PolicyError(f"{where}{key}: required field is missing")
    return d[key]


def _str_list(v: Any, where: str) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
        raise PolicyError(f"{where}: must be a list of non-empty strings")
    return v


def _choice_list(v: Any, where: str, allowed: tuple[str, ...]) -> list[str]:
    items = _str_list(v, where)
    for x in items:
        if x not in allowed:
            raise PolicyError(f"{where}: {x!r} is not one of {', '.join(allowed)}")
    return items


def _codes(v: Any, where: str) -> frozenset[Code]:
    if not isinstance(v, list):
        raise PolicyError(f"{where}: must be a list of {{system, code}}")
    out = set()
    for i, c in enumerate(v):
        if not isinstance(c, dict) or not isinstance(c.get("system"), str) or not isinstance(
            c.get("code"), str
        ):
            raise PolicyError(f"{where}[{i}]: must have string 'system' and 'code'")
        out.add((c["system"], c["code"]))
    return frozenset(out)


def _bool(v: Any, where: str) -> bool:
    if not isinstance(v, bool):
        raise PolicyError(f"{where}: must be true or false")
    return v


def parse_policy(doc: Any) -> Policy:
    """Validate a parsed policy document and build the :class:`Policy`."""
    if not isinstance(doc, dict):
        raise PolicyError("policy: the document must be a mapping")
    known = {"schema", "version", "role_groups", "demographic_types", "non_patient_types",
             "relationship", "legally_restricted_labels", "not_for_patient_labels",
             "authoring_organisation_tag_systems", "break_glass", "system_clients"}
    for k in doc:
        if k not in known:
            raise PolicyError(f"{k}: unknown field")
    if _req(doc, "schema", "") != 1:
        raise PolicyError("schema: only schema 1 is supported")
    version = _req(doc, "version", "")
    if not isinstance(version, str) or not version:
        raise PolicyError("version: must be a non-empty string")

    groups_doc = _req(doc, "role_groups", "")
    if not isinstance(groups_doc, dict) or not groups_doc:
        raise PolicyError("role_groups: must be a non-empty mapping")
    groups: list[RoleGroup] = []
    seen_roles: dict[str, str] = {}
    for name, g in groups_doc.items():
        w = f"role_groups.{name}."
        if not isinstance(g, dict):
            raise PolicyError(f"role_groups.{name}: must be a mapping")
        roles = _str_list(_req(g, "roles", w), w + "roles")
        for r in roles:
            if r in seen_roles:
                raise PolicyError(f"{w}roles: {r} is already in role group {seen_roles[r]}")
            seen_roles[r] = name
        access = _req(g, "access", w)
        if access not in ACCESS_USER:
            raise PolicyError(f"{w}access: must be one of {', '.join(ACCESS_USER)}")
        purposes = _choice_list(g.get("purposes", list(PURPOSES)), w + "purposes", PURPOSES)
        groups.append(RoleGroup(
            name=name, roles=frozenset(roles), access=access, purposes=frozenset(purposes),
            resource_types=frozenset(_str_list(g.get("resource_types", []), w + "resource_types")),
            tags=_codes(g.get("tags", []), w + "tags"),
            description=str(g.get("description", "")),
        ))

    rel = doc.get("relationship", {})
    if not isinstance(rel, dict):
        raise PolicyError("relationship: must be a mapping")
    links = _choice_list(rel.get("links", list(LINK_KINDS)), "relationship.links", LINK_KINDS)

    bg = doc.get("break_glass", {})
    if not isinstance(bg, dict):
        raise PolicyError("break_glass: must be a mapping")
    overrides = _choice_list(bg.get("overrides", list(OVERRIDABLE)), "break_glass.overrides",
                             OVERRIDABLE)

    clients: dict[str, SystemClientPolicy] = {}
    for cid, c in (doc.get("system_clients") or {}).items():
        w = f"system_clients.{cid}."
        if not isinstance(c, dict):
            raise PolicyError(f"system_clients.{cid}: must be a mapping")
        access = _req(c, "access", w)
        if access not in ACCESS_SYSTEM:
            raise PolicyError(f"{w}access: must be one of {', '.join(ACCESS_SYSTEM)}")
        types = frozenset(_str_list(c.get("resource_types", []), w + "resource_types"))
        if access == "types" and not types:
            raise PolicyError(f"{w}resource_types: required when access is 'types'")
        clients[cid] = SystemClientPolicy(
            client_id=cid, access=access, resource_types=types,
            honour_objections=_bool(c.get("honour_objections", True), w + "honour_objections"),
            legally_restricted=_bool(c.get("legally_restricted", False), w + "legally_restricted"),
        )

    return Policy(
        version=version,
        role_groups=tuple(groups),
        demographic_types=frozenset(_str_list(doc.get("demographic_types", ["Patient"]),
                                              "demographic_types")),
        non_patient_types=frozenset(_str_list(doc.get("non_patient_types", []),
                                              "non_patient_types")),
        relationship_required=_bool(rel.get("required_for_users", True),
                                    "relationship.required_for_users"),
        relationship_links=frozenset(links),
        legally_restricted_labels=_codes(_req(doc, "legally_restricted_labels", ""),
                                         "legally_restricted_labels"),
        not_for_patient_labels=_codes(doc.get("not_for_patient_labels", []),
                                      "not_for_patient_labels"),
        authoring_tag_systems=tuple(_str_list(doc.get("authoring_organisation_tag_systems", []),
                                              "authoring_organisation_tag_systems")),
        break_glass_requires_reason=_bool(bg.get("requires_reason", True),
                                          "break_glass.requires_reason"),
        break_glass_overrides=frozenset(overrides),
        system_clients=clients,
    )


def read_document(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise PolicyError(f"{path}: not valid YAML/JSON: {exc}") from exc


def load_policy(path: Path | None = None) -> Policy:
    """Load and validate the policy at ``path`` (None = the packaged default)."""
    p = Path(path) if path is not None else DEFAULT_POLICY_PATH
    if not p.exists():
        raise PolicyError(f"consent_policy_path: file {p} does not exist")
    try:
        return parse_policy(read_document(p))
    except PolicyError as exc:
        raise PolicyError(f"{p}: {exc}") from None


@lru_cache(maxsize=8)
def cached_policy(path: str | None) -> Policy:
    return load_policy(Path(path) if path else None)
