"""Security labels on the way in: code rules that mark legally restricted data.

FHIR R4 security-labels.html: ``meta.security`` carries a confidentiality code
(v3-Confidentiality, e.g. ``R`` restricted) and sensitivity codes
(v3-ActCode ActInformationSensitivityPolicy, e.g. ``SEX``, ``STD``, ``HIV``). The write
path calls :func:`apply_labels` on every resource it stores; the rules (SNOMED CT code
lists -> labels) live in ``consent/data/restricted_codes.yaml`` and can be replaced with
:func:`load_rules`. Labels already present (from source systems) are kept.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

DEFAULT_RULES_PATH = Path(__file__).parent / "data" / "restricted_codes.yaml"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
_CONF_RANK = {"U": 0, "L": 1, "M": 2, "N": 3, "R": 4, "V": 5}


@dataclass(frozen=True)
class LabelRule:
    name: str
    codes: frozenset[tuple[str, str]]
    labels: tuple[dict[str, str], ...]


@dataclass(frozen=True)
class RuleSet:
    version: str
    rules: tuple[LabelRule, ...]
    index: dict[tuple[str, str], tuple[LabelRule, ...]]


def parse_rules(doc: Any) -> RuleSet:
    if not isinstance(doc, dict) or not isinstance(doc.get("rules"), list):
        raise ValueError("restricted codes: 'rules' must be a list")
    rules: list[LabelRule] = []
    for i, r in enumerate(doc["rules"]):
        where = f"rules[{i}]"
        if not isinstance(r, dict) or not r.get("name"):
            raise ValueError(f"{where}.name: required")
        codes = set()
        for j, c in enumerate(r.get("codes") or []):
            if not isinstance(c, dict) or not c.get("system") or not c.get("code"):
                raise ValueError(f"{where}.codes[{j}]: needs system and code")
            codes.add((str(c["system"]), str(c["code"])))
        labels = []
        for j, lab in enumerate(r.get("labels") or []):
            if not isinstance(lab, dict) or not lab.get("system") or not lab.get("code"):
                raise ValueError(f"{where}.labels[{j}]: needs system and code")
            labels.append({k: str(lab[k]) for k in ("system", "code", "display") if k in lab})
        if not codes or not labels:
            raise ValueError(f"{where}: needs at least one code and one label")
        rules.append(LabelRule(str(r["name"]), frozenset(codes), tuple(labels)))
    index: dict[tuple[str, str], list[LabelRule]] = {}
    for rule in rules:
        for c in rule.codes:
            index.setdefault(c, []).append(rule)
    return RuleSet(str(doc.get("version", "")), tuple(rules),
                   {k: tuple(v) for k, v in index.items()})


@lru_cache(maxsize=4)
def load_rules(path: str | None = None) -> RuleSet:
    p = Path(path) if path else DEFAULT_RULES_PATH
    return parse_rules(yaml.safe_load(p.read_text(encoding="utf-8")))


def iter_codings(node: Any) -> Iterator[tuple[str, str]]:
    """Every (system, code) of every Coding anywhere in the resource (meta excluded)."""
    stack = [node]
    while stack:
        cur = stack.pop()
        if isinstance(cur, dict):
            system, code = cur.get("system"), cur.get("code")
            if isinstance(system, str) and isinstance(code, str):
                yield system, code
            for k, v in cur.items():
                if k != "meta" and isinstance(v, dict | list):
                    stack.append(v)
        elif isinstance(cur, list):
            stack.extend(x for x in cur if isinstance(x, dict | list))


def matching_rules(resource: dict[str, Any], rules: RuleSet | None = None) -> list[LabelRule]:
    rs = rules or load_rules()
    found: dict[str, LabelRule] = {}
    for c in iter_codings(resource):
        for rule in rs.index.get(c, ()):
            found.setdefault(rule.name, rule)
    return list(found.values())


def apply_labels(resource: dict[str, Any], rules: RuleSet | None = None) -> dict[str, Any]:
    """Add the ``meta.security`` labels the code rules call for; returns ``resource``.

    Existing labels are kept; a confidentiality label is raised, never lowered (only one
    confidentiality code is kept: the most restrictive).
    """
    matched = matching_rules(resource, rules)
    if not matched:
        return resource
    meta = resource.setdefault("meta", {})
    security: list[dict[str, Any]] = list(meta.get("security") or [])
    have = {(s.get("system"), s.get("code")) for s in security if isinstance(s, dict)}
    for rule in matched:
        for lab in rule.labels:
            key = (lab["system"], lab["code"])
            if key in have:
                continue
            if lab["system"] == CONFIDENTIALITY:
                current = [s for s in security if s.get("system") == CONFIDENTIALITY]
                rank = _CONF_RANK.get(lab["code"], 0)
                if any(_CONF_RANK.get(s.get("code", ""), 0) >= rank for s in current):
                    continue
                security = [s for s in security if s.get("system") != CONFIDENTIALITY]
            security.append(dict(lab))
            have.add(key)
    meta["security"] = security
    return resource


def security_labels(resource: dict[str, Any]) -> set[tuple[str, str]]:
    meta = resource.get("meta") or {}
    return {
        (s.get("system", ""), s.get("code", ""))
        for s in meta.get("security") or []
        if isinstance(s, dict)
    }
