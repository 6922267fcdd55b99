"""Parsing a search request's parameters (FHIR R4 search.html §3.1.0.x, "Search Parameters").

Splits ``(name, value)`` pairs into result parameters (``_count``, ``_sort``,
``_include`` ...; search.html#return) and criteria. Repeated parameters are ANDed,
comma-separated values ORed (search.html#combining); ``\\,`` escapes a comma.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from exchange.outcome import FhirError, Invalid

RESULT_PARAMS = {
    "_count", "_sort", "_total", "_summary", "_elements", "_include", "_revinclude",
    "_contained", "_containedType", "_format", "_pretty",
}
#: accepted and ignored: output formatting, and ``_totalMethod`` which fhirpy's count()
#: sends (an Aidbox hint; ``_count=0`` already makes this server return the total)
IGNORED_PARAMS = {"_format", "_pretty", "_totalMethod"}
SUMMARY_VALUES = {"true", "false", "count", "text", "data"}
TOTAL_VALUES = {"none", "estimate", "accurate"}


@dataclass
class Criterion:
    """One criteria parameter: ``name[:modifier]`` = comma-separated values."""

    name: str  # full name as sent, e.g. "subject:Patient.name" or "_has:Observation:patient:code"
    values: list[str]
    raw_value: str

    @property
    def code(self) -> str:
        return self.name.split(":", 1)[0].split(".", 1)[0]


@dataclass
class Include:
    source: str
    param: str  # "*" for every reference parameter
    target: str | None
    iterate: bool
    reverse: bool
    raw: tuple[str, str]


@dataclass
class SearchRequest:
    criteria: list[Criterion] = field(default_factory=list)
    count: int | None = None
    sort: list[tuple[str, bool]] = field(default_factory=list)  # (param code, descending)
    total: str = "none"
    summary: str | None = None
    elements: list[str] = field(default_factory=list)
    includes: list[Include] = field(default_factory=list)
    types: list[str] = field(default_factory=list)  # _type for system search
    used: list[tuple[str, str]] = field(default_factory=list)  # what the self link shows


def split_values(raw: str) -> list[str]:
    """Split on commas that are not escaped with a backslash; unescape ``\\,`` ``\\$`` ``\\|``."""
    out: list[str] = []
    cur: list[str] = []
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\" and i + 1 < len(raw):
            cur.append(raw[i : i + 2])
            i += 2
            continue
        if ch == ",":
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    out.append("".join(cur))
    return [v for v in out if v != ""]


def unescape(value: str) -> str:
    return value.replace("\\,", ",").replace("\\$", "$").replace("\\|", "|").replace("\\\\", "\\")


def split_escaped(value: str, sep: str) -> list[str]:
    """Split on ``sep`` not preceded by a backslash (for ``|`` in tokens, ``$`` in composites)."""
    parts: list[str] = []
    cur: list[str] = []
    i = 0
    while i < len(value):
        if value[i] == "\\" and i + 1 < len(value):
            cur.append(value[i : i + 2])
            i += 2
            continue
        if value[i] == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(value[i])
        i += 1
    parts.append("".join(cur))
    return parts


#: the most values one parameter may OR together (search.html#combining); more is a
#: denial-of-service shape (SQLite caps expression depth at 1000), answered 400 too-costly
MAX_OR_VALUES = 500


def _int(name: str, value: str) -> int:
    try:
        n = int(value)
    except ValueError as exc:
        raise Invalid(f"{name} must be an integer, got {value!r}", expression=name) from exc
    if n < 0:
        raise Invalid(f"{name} must not be negative", expression=name)
    return n


def parse_request(params: list[tuple[str, str]]) -> SearchRequest:
    """Parse result parameters strictly; criteria are validated later against the registry."""
    req = SearchRequest()
    for name, value in params:
        if name in IGNORED_PARAMS:
            continue
        base = name.split(":", 1)[0]
        if base == "_count":
            req.count = _int("_count", value)
        elif base == "_sort":
            for key in value.split(","):
                key = key.strip()
                if key:
                    req.sort.append((key.lstrip("-"), key.startswith("-")))
        elif base == "_total":
            if value not in TOTAL_VALUES:
                raise Invalid(f"_total must be one of {sorted(TOTAL_VALUES)}", expression="_total")
            req.total = value
        elif base == "_summary":
            if value not in SUMMARY_VALUES:
                raise Invalid(f"_summary must be one of {sorted(SUMMARY_VALUES)}", expression="_summary")
            req.summary = None if value == "false" else value
        elif base == "_elements":
            req.elements.extend(e.strip() for e in value.split(",") if e.strip())
        elif base in ("_include", "_revinclude"):
            req.includes.append(_parse_include(name, value))
        elif base == "_type":
            req.types.extend(t.strip() for t in value.split(",") if t.strip())
        elif base in ("_contained", "_containedType"):
            if value not in ("false", "container"):
                raise Invalid(f"{base}={value} is not supported", code="not-supported", expression=base)
        else:
            values = split_values(value)
            if len(values) > MAX_OR_VALUES:
                raise FhirError("too-costly", f"{name[:64]} has {len(values)} comma-separated values; this server "
                                f"accepts at most {MAX_OR_VALUES} per parameter", status=400, expression=name[:64])
            req.criteria.append(Criterion(name=name, values=values, raw_value=value))
            continue
        if name not in ("_count",):
            req.used.append((name, value))
    return req


def _parse_include(name: str, value: str) -> Include:
    mods = name.split(":")[1:]
    iterate = "iterate" in mods or "recurse" in mods
    if value == "*":
        return Include("*", "*", None, iterate, name.startswith("_revinclude"), (name, value))
    parts = value.split(":")
    if len(parts) < 2 or len(parts) > 3:
        raise Invalid(f"{name} value must be SourceType:param[:TargetType], got {value!r}", expression=name)
    target = parts[2] if len(parts) == 3 else None
    return Include(parts[0], parts[1], target, iterate, name.startswith("_revinclude"), (name, value))


PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")


def split_prefix(value: str) -> tuple[str, str]:
    """(prefix, rest) for date / number / quantity values (search.html#prefix)."""
    if len(value) > 2 and value[:2] in PREFIXES and not value[:2].isdigit():
        return value[:2], value[2:]
    return "eq", value
