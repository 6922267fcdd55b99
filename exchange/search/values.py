"""Turning FHIR element values into typed search index values (FHIR R4 search.html §3.1.1).

* token (search.html#token): code / Coding / CodeableConcept / Identifier / ContactPoint /
  boolean / code strings -> (system, code, text); Identifier.type -> ``:of-type`` rows.
* string (search.html#string): strings, HumanName and Address parts -> (normalised, exact).
* date (search.html#date): date / dateTime / instant / Period / Timing -> an implicit
  range [low, high) in UTC; partial dates cover their whole precision; values without a
  time zone are taken as UTC (the server's local time).
* reference (search.html#reference): Reference / canonical -> (type, id, url).
* quantity and number (search.html#quantity, #number): Quantity / Age / Range -> a
  numeric [low, high] range with system and code.
* uri (search.html#uri).
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from exchange.search.fhirpath import reference_type

MIN_DT = datetime(1, 1, 1)
MAX_DT = datetime(9999, 12, 31, 23, 59, 59)

_DATE_RE = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?"
    r"(Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


#: longest indexed text (characters): keeps every btree entry under PostgreSQL's ~2,700
#: byte limit even for 4-byte UTF-8; longer values are compared on this prefix
CLIP = 600


def clip(text: str | None) -> str | None:
    return text[:CLIP] if text is not None else None


#: longest text whose derived values are memoised (names, displays, dates, references
#: recur across a feed); longer ones, e.g. from a hostile query, are computed each time
#: so the caches stay small
CACHE_TEXT = 256


def normalise(text: str) -> str:
    """Case- and accent-insensitive form used by string search (casefold, strip marks)."""
    return _normalise_cached(text) if len(text) <= CACHE_TEXT else _normalise(text)


@lru_cache(maxsize=8192)
def _normalise_cached(text: str) -> str:
    return _normalise(text)


def _normalise(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.casefold().split())


def _add_months(dt: datetime, months: int) -> datetime:
    y, m = divmod(dt.month - 1 + months, 12)
    return dt.replace(year=dt.year + y, month=m + 1)


def date_range(text: str) -> tuple[datetime, datetime] | None:
    """[low, high) in naive UTC for a FHIR date/dateTime/instant string, None if invalid."""
    return _date_range_cached(text) if len(text) <= CACHE_TEXT else _date_range(text)


@lru_cache(maxsize=8192)
def _date_range_cached(text: str) -> tuple[datetime, datetime] | None:
    return _date_range(text)


def _date_range(text: str) -> tuple[datetime, datetime] | None:
    m = _DATE_RE.match(text.strip())
    if not m:
        return None
    y, mo, d, hh, mi, ss, frac, tz = m.groups()
    try:
        if mo is None:
            low = datetime(int(y), 1, 1)
            return low, low.replace(year=low.year + 1) if low.year < 9999 else MAX_DT
        if d is None:
            low = datetime(int(y), int(mo), 1)
            return low, (_add_months(low, 1) if low.year < 9999 or low.month < 12 else MAX_DT)
        if hh is None:
            low = datetime(int(y), int(mo), int(d))
            return low, low + timedelta(days=1)
        micro = int(round(float(frac) * 1_000_000)) if frac else 0
        low = datetime(int(y), int(mo), int(d), int(hh), int(mi), int(ss or 0), min(micro, 999_999))
    except ValueError:
        return None
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        low = low - sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6]))
    if frac:
        step = timedelta(microseconds=max(1, 10 ** (6 - min(len(frac) - 1, 6))))
    elif ss is not None:
        step = timedelta(seconds=1)
    else:
        step = timedelta(minutes=1)
    return low, low + step


def to_naive_utc(ts: datetime) -> datetime:
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC).replace(tzinfo=None)
    return ts


# --- per-type extraction -----------------------------------------------------------


def _unwrap_extension(v: Any) -> Any:
    if isinstance(v, dict) and "url" in v and "extension" not in v:
        for k, val in v.items():
            if k.startswith("value"):
                return val
    return v


def tokens(values: list[Any]) -> list[tuple[str | None, str | None, str | None, bool]]:
    """(system, code, text, of_type) rows; of_type rows carry type system/code and the
    identifier value as text (for ``identifier:of-type=system|code|value``)."""
    out: list[tuple[str | None, str | None, str | None, bool]] = []
    for v in values:
        v = _unwrap_extension(v)
        if isinstance(v, bool):
            out.append((None, "true" if v else "false", None, False))
        elif isinstance(v, str | int):
            out.append((None, str(v), None, False))
        elif isinstance(v, dict):
            if "value" in v:  # Identifier or ContactPoint
                val = v.get("value")
                system = v.get("system")
                if system in _CONTACT_SYSTEMS:
                    system = None  # ContactPoint: the value is the token
                out.append((system, str(val) if val is not None else None, None, False))
                typ = v.get("type")
                if isinstance(typ, dict) and val is not None:
                    for c in typ.get("coding") or ():
                        if isinstance(c, dict):
                            out.append((c.get("system"), c.get("code"), str(val), True))
            elif "coding" in v or ("text" in v and "code" not in v):  # CodeableConcept
                for c in v.get("coding") or ():
                    if isinstance(c, dict):
                        out.append(_coding(c))
                if v.get("text"):
                    out.append((None, None, normalise(str(v["text"])), False))
            elif "code" in v or "system" in v:  # Coding
                out.append(_coding(v))
    return out


_CONTACT_SYSTEMS = frozenset({"phone", "fax", "email", "pager", "url", "sms", "other"})


def _coding(c: dict[str, Any]) -> tuple[str | None, str | None, str | None, bool]:
    display = c.get("display")
    return (c.get("system"), c.get("code"), normalise(str(display)) if display else None, False)


_NAME_PARTS = ("text", "family", "given", "prefix", "suffix")
_ADDRESS_PARTS = ("text", "line", "city", "district", "state", "postalCode", "country")


def strings(values: list[Any]) -> list[str]:
    out: list[str] = []
    for v in values:
        v = _unwrap_extension(v)
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, dict):
            parts = _NAME_PARTS if ("family" in v or "given" in v) else _ADDRESS_PARTS
            if not any(p in v for p in parts):
                parts = _NAME_PARTS
            for p in parts:
                got = v.get(p)
                if isinstance(got, list):
                    out.extend(str(x) for x in got if x)
                elif got:
                    out.append(str(got))
    return [s for s in out if s.strip()]


def dates(values: list[Any]) -> list[tuple[datetime, datetime]]:
    out: list[tuple[datetime, datetime]] = []
    for v in values:
        v = _unwrap_extension(v)
        if isinstance(v, str):
            r = date_range(v)
            if r:
                out.append(r)
        elif isinstance(v, dict):
            if "start" in v or "end" in v:  # Period
                lo = date_range(v["start"]) if isinstance(v.get("start"), str) else None
                hi = date_range(v["end"]) if isinstance(v.get("end"), str) else None
                if lo or hi:
                    out.append((lo[0] if lo else MIN_DT, hi[1] if hi else MAX_DT))
            elif "event" in v or "repeat" in v:  # Timing
                for e in v.get("event") or ():
                    r = date_range(e) if isinstance(e, str) else None
                    if r:
                        out.append(r)
                bounds = (v.get("repeat") or {}).get("boundsPeriod")
                if isinstance(bounds, dict):
                    out.extend(dates([bounds]))
    return out


def references(values: list[Any]) -> list[tuple[str | None, str | None, str | None]]:
    """(target type, target id, absolute url or canonical) per reference."""
    out: list[tuple[str | None, str | None, str | None]] = []
    for v in values:
        v = _unwrap_extension(v)
        ref = v.get("reference") if isinstance(v, dict) else v
        if not isinstance(ref, str) or not ref or ref.startswith("#"):
            continue
        explicit = str(v["type"]) if isinstance(v, dict) and v.get("type") else None
        row = (_reference_row_cached if len(ref) <= CACHE_TEXT else _reference_row)(ref, explicit)
        if row is not None:
            out.append(row)
    return out


@lru_cache(maxsize=8192)  # a resource's subject/patient/encounter recur across parameters
def _reference_row_cached(ref: str, explicit_type: str | None) -> tuple[str | None, str | None, str | None] | None:
    return _reference_row(ref, explicit_type)


def _reference_row(ref: str, explicit_type: str | None) -> tuple[str | None, str | None, str | None] | None:
    rtype = explicit_type if explicit_type is not None else reference_type(ref)
    parts = ref.split("|")[0].split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    rid = parts[-1] if rtype and len(parts) >= 2 else None
    if rtype and (len(rtype) > 64 or not rid or len(rid) > 64):
        rtype = rid = None  # not a valid type / id (FHIR ids are at most 64 characters)
    absolute = ref if "://" in ref or ref.startswith("urn:") else None
    if rtype is None and absolute is None:
        return None
    return (rtype, rid, absolute)


def quantities(values: list[Any]) -> list[tuple[float, float, str | None, str | None]]:
    """(low, high, system, code) per Quantity / Age / Duration / Range / number."""
    out: list[tuple[float, float, str | None, str | None]] = []
    for v in values:
        v = _unwrap_extension(v)
        if isinstance(v, bool):
            continue
        if isinstance(v, int | float):
            out.append((float(v), float(v), None, None))
        elif isinstance(v, dict):
            if "value" in v and isinstance(v["value"], int | float):
                code = v.get("code") or v.get("unit")
                out.append((float(v["value"]), float(v["value"]), v.get("system"), code))
            elif "low" in v or "high" in v:  # Range
                lo, hi = v.get("low") or {}, v.get("high") or {}
                lo_v, hi_v = lo.get("value"), hi.get("value")
                if lo_v is None and hi_v is None:
                    continue
                unit = lo if lo_v is not None else hi
                out.append((
                    float(lo_v) if lo_v is not None else -1e300,
                    float(hi_v) if hi_v is not None else 1e300,
                    unit.get("system"), unit.get("code") or unit.get("unit"),
                ))
    return out


def uris(values: list[Any]) -> list[str]:
    return [v for v in (_unwrap_extension(x) for x in values) if isinstance(v, str) and v]


def number_range(text: str) -> tuple[float, float, float]:
    """(value, low, high) for a search number: the implicit precision range (search.html#number)."""
    try:
        d = Decimal(text)
    except InvalidOperation as exc:
        raise ValueError(f"not a number: {text!r}") from exc
    exp = d.as_tuple().exponent
    half = Decimal(5).scaleb(int(exp) - 1) if isinstance(exp, int) else Decimal(0)
    return float(d), float(d - half), float(d + half)
