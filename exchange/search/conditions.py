"""SQL conditions for one search value on one index table (FHIR R4 search.html §3.1.1).

Each ``*_cond`` turns one (already comma-split) search value plus the modifier into a
condition on an index table alias: token (search.html#token), string (#string), date
with prefixes and implicit ranges (#date, #prefix), reference (#reference), quantity
and number with precision ranges (#quantity, #number), uri with ``:below``/``:above``
(#uri). Composite values are split on ``$`` by the query builder.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, false, not_, or_, true

from exchange.outcome import Invalid
from exchange.search import values as V
from exchange.search.params import split_escaped, split_prefix, unescape


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def prefix_upper_bound(text: str) -> str | None:
    """The least string above every string that starts with ``text`` in code point order
    (= the byte order of UTF-8): ``text`` with its last character incremented, dropping
    trailing U+10FFFF; None when there is none (``text`` empty or all U+10FFFF)."""
    chars = list(text)
    while chars:
        cp = ord(chars[-1]) + 1
        if 0xD800 <= cp <= 0xDFFF:  # surrogates are not characters
            cp = 0xE000
        if cp <= 0x10FFFF:
            chars[-1] = chr(cp)
            return "".join(chars)
        chars.pop()
    return None


def prefix_match(col: Any, text: str, is_pg: bool) -> ColumnElement[bool]:
    """``col`` starts with ``text``: the range ``[text, prefix_upper_bound(text))`` in
    binary order. On SQLite (which cannot use an index for a case-insensitive LIKE) with
    ``>=`` / ``<``; on PostgreSQL with the ``varchar_pattern_ops`` operators ``~>=~`` /
    ``~<~`` plus the LIKE itself: a LIKE alone only becomes an index range when the
    pattern is a constant, which it is not in the generic plan of a prepared statement."""
    upper = prefix_upper_bound(text)
    if is_pg:
        conds = [col.op("~>=~", is_comparison=True)(text)]
        if upper is not None:
            conds.append(col.op("~<~", is_comparison=True)(upper))
        return and_(*conds, col.like(_like_escape(text) + "%", escape="\\"))
    return and_(col >= text, col < upper) if upper is not None else col >= text


def token_cond(t: Any, raw: str, modifier: str | None, name: str) -> ColumnElement[bool]:
    value = raw
    if modifier == "text":
        norm = V.normalise(unescape(value))
        esc = _like_escape(norm)
        return or_(t.c.text.like(esc + "%", escape="\\"), t.c.text.like("% " + esc + "%", escape="\\"))
    parts = split_escaped(value, "|")
    if modifier == "of-type":
        if len(parts) != 3:
            raise Invalid(f"{name}: of-type needs system|code|value", expression=name)
        s, c, v = (unescape(p) for p in parts)
        return and_(t.c.system == V.clip(s), t.c.code == V.clip(c), t.c.text == v)
    if len(parts) == 1:
        return t.c.code == V.clip(unescape(parts[0]))
    if len(parts) != 2:
        raise Invalid(f"{name}: invalid token {raw!r}", expression=name)
    system, code = V.clip(unescape(parts[0])) or "", V.clip(unescape(parts[1])) or ""
    if system == "" and code == "":
        raise Invalid(f"{name}: empty token", expression=name)
    if system == "":
        return and_(t.c.code == code, t.c.system.is_(None))
    if code == "":
        return t.c.system == system
    return and_(t.c.code == code, t.c.system == system)


def string_cond(t: Any, raw: str, modifier: str | None, is_pg: bool) -> ColumnElement[bool]:
    text = unescape(raw)
    if modifier == "exact":
        return and_(t.c.norm == V.clip(V.normalise(text)), t.c.exact == text)
    norm = V.clip(V.normalise(text)) or ""
    if modifier == "contains":
        return t.c.norm.like("%" + _like_escape(norm) + "%", escape="\\")
    return prefix_match(t.c.norm, norm, is_pg)


def _approx_delta(low: datetime, high: datetime) -> timedelta:
    now = datetime.utcnow()
    gap = abs(now - low)
    return max(timedelta(days=1), gap / 10, (high - low) / 10)


def date_cond(t: Any, raw: str, name: str) -> ColumnElement[bool]:
    prefix, text = split_prefix(raw)
    rng = V.date_range(text.replace(" ", "+"))  # an unencoded "+" of a zone arrives as a space
    if rng is None:
        raise Invalid(f"{name}: invalid date {text!r}", expression=name)
    sl, sh = rng
    return range_cond(t.c.low, t.c.high, prefix, sl, sh, high_exclusive=True)


def range_cond(
    lo: Any, hi: Any, prefix: str, sl: Any, sh: Any, *, high_exclusive: bool, value: Any = None
) -> ColumnElement[bool]:
    """Compare a stored range [lo, hi) with the search range [sl, sh) (search.html#prefix)."""
    within = and_(lo >= sl, hi <= sh) if high_exclusive else and_(lo >= sl, hi < sh)
    if prefix == "eq":
        return within
    if prefix == "ne":
        return not_(within)
    if value is not None:  # numbers and quantities compare against the exact value
        sl = sh = value
    if prefix == "gt":
        return hi > sh
    if prefix == "lt":
        return lo < sl
    # ge / le: the leading redundant bound (every match satisfies it) lets the index on
    # high / low narrow the scan before the OR is checked
    if prefix == "ge":
        return and_(hi > sl, or_(hi > sh, within)) if high_exclusive else hi >= sl
    if prefix == "le":
        return and_(lo < sh, or_(lo < sl, within)) if high_exclusive else lo <= sh
    if prefix == "sa":
        return lo >= sh if high_exclusive else lo > sh
    if prefix == "eb":
        return hi <= sl if high_exclusive else hi < sl
    if prefix == "ap":
        if isinstance(sl, datetime):
            d = _approx_delta(sl, sh)
            return and_(lo < sh + d, hi > sl - d)
        d = abs(value if value is not None else sl) * 0.1
        return and_(lo <= (sh + d), hi >= (sl - d))
    raise Invalid(f"unknown prefix {prefix!r}")


def number_cond(t: Any, raw: str, name: str, *, units: bool) -> ColumnElement[bool]:
    prefix, text = split_prefix(raw)
    parts = split_escaped(text, "|") if units else [text]
    try:
        value, sl, sh = V.number_range(parts[0])
    except ValueError as exc:
        raise Invalid(f"{name}: {exc}", expression=name) from exc
    if prefix == "eq":
        cond = and_(t.c.low >= sl, t.c.high < sh)
    elif prefix == "ne":
        cond = not_(and_(t.c.low >= sl, t.c.high < sh))
    else:
        cond = range_cond(t.c.low, t.c.high, prefix, sl, sh, high_exclusive=False, value=value)
    if units and len(parts) >= 2:
        system = unescape(parts[1])
        code = unescape(parts[2]) if len(parts) > 2 else ""
        if system:
            cond = and_(cond, t.c.system == V.clip(system))
        if code:
            cond = and_(cond, t.c.code == V.clip(code))
    return cond


def reference_cond(
    t: Any, raw: str, modifier: str | None, targets: tuple[str, ...], base_url: str, name: str
) -> ColumnElement[bool]:
    ref = unescape(raw)
    base = base_url.rstrip("/") + "/"
    if ref.startswith(base):
        ref = ref[len(base) :]
    if "://" in ref or ref.startswith("urn:"):
        return t.c.url == V.clip(ref.split("|")[0])
    parts = ref.split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) == 2:
        rtype, rid = parts
        if modifier and modifier != rtype:
            return false()
        return and_(t.c.target_type == rtype, t.c.target_id == rid)
    if len(parts) != 1 or not parts[0]:
        raise Invalid(f"{name}: invalid reference {raw!r}", expression=name)
    if modifier:
        return and_(t.c.target_type == modifier, t.c.target_id == parts[0])
    if len(targets) == 1:
        return and_(t.c.target_type == targets[0], t.c.target_id == parts[0])
    return t.c.target_id == parts[0]


def uri_cond(t: Any, raw: str, modifier: str | None, is_pg: bool) -> ColumnElement[bool]:
    uri = V.clip(unescape(raw)) or ""
    if modifier == "below":
        return prefix_match(t.c.value, uri, is_pg)
    if modifier == "above":
        prefixes = []
        cut = uri
        while cut:
            prefixes.append(cut)
            if "/" not in cut.rstrip("/") or cut.endswith("//"):
                break
            cut = cut.rstrip("/").rsplit("/", 1)[0]
            if cut.endswith(":/") or cut.endswith(":"):
                break
        return t.c.value.in_(prefixes) if prefixes else false()
    return t.c.value == uri


MODIFIERS: dict[str, set[str]] = {
    "token": {"not", "text", "of-type", "missing"},
    "string": {"exact", "contains", "missing"},
    "date": {"missing"},
    "reference": {"missing"},  # plus :Type (checked by the query builder)
    "quantity": {"missing"},
    "number": {"missing"},
    "uri": {"below", "above", "missing"},
    "composite": {"missing"},
}

__all__ = [
    "MODIFIERS", "date_cond", "number_cond", "prefix_match", "prefix_upper_bound", "reference_cond",
    "string_cond", "token_cond", "true", "uri_cond",
]
