"""Deciding which care preferences are current (issue 6, "Deciding what is current").

Pure functions over :class:`~exchange.operations.eol_model.Preference` items:

0. CPR items from the same source with the same code, decision date and record status
   are ONE decision recorded twice (a GP Observation and the Flag the gp-connect adapter
   emits for it): one item is kept (Flag first, then Consent, then Observation), names
   the other in its details and borrows what only the other recorded (author, review
   date, document, organisation). Never shown as one copy superseding the other.
1. Entered-in-error, cancelled (inactive / revoked / rejected), source-declared
   superseded and draft records are shown as such, never as current.
2. For each (source, kind, topic) the latest active decision (by decision date, then
   ``meta.lastUpdated``) is the candidate; earlier active ones are *superseded* by it.
3. A candidate whose review date has passed is *review-overdue*: shown, flagged as
   needing review, not current.
4. Current CPR decisions from different sources that disagree (not for CPR vs for CPR)
   are a :class:`Conflict` carrying every disagreeing decision: never silently resolved.
5. Each current LPA's attorneys (:func:`attorneys_for`): those its record names, else
   those from its source system, each person once (:func:`merge_attorneys`).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

from exchange.operations.eol_codes import KIND_ORDER, codebook
from exchange.operations.eol_model import (
    CANCELLED,
    CURRENT,
    ENTERED_IN_ERROR,
    FOR_CPR,
    NOT_FOR_CPR,
    NOT_YET_ACTIVE,
    REVIEW_OVERDUE,
    SUPERSEDED,
    Assessment,
    Attorney,
    CareWarning,
    Conflict,
    Preference,
)

_BY_STATUS = {"cancelled": CANCELLED, "entered-in-error": ENTERED_IN_ERROR, "draft": NOT_YET_ACTIVE,
              "superseded": SUPERSEDED}


def describe(p: Preference) -> str:
    """One line naming a decision: what, who, when, where from."""
    when = p.decided.text if p.decided else "undated"
    who = p.author_display or p.author_ref or "author not recorded"
    return f"{p.label} ({who}, {when}, source {p.source})"


_PREFERRED_TYPE = {"Flag": 0, "Consent": 1, "Observation": 2}


def _decision_key(p: Preference) -> tuple[str, ...] | None:
    """What makes two CPR items one decision; None for items never merged (undated,
    unknown source, other kinds). ``label`` is the code list's display: one per code."""
    if p.kind != "cpr" or p.decided is None:
        return None
    return (*p.group_key, p.cpr or "", p.label.lower(), p.decided.text[:10], p.record_status)


def same_decisions(items: list[Preference]) -> list[Preference]:
    """``items`` with duplicate records of one CPR decision collapsed (step 0 above)."""
    groups: dict[tuple[str, ...], list[Preference]] = defaultdict(list)
    for p in items:
        key = _decision_key(p)
        if key is not None:
            groups[key].append(p)
    dropped: set[int] = set()
    for group in groups.values():
        if len(group) < 2:
            continue
        group.sort(key=lambda p: p.last_updated or "", reverse=True)
        group.sort(key=lambda p: _PREFERRED_TYPE.get(p.resource_type, len(_PREFERRED_TYPE)))
        keep = group[0]
        for other in group[1:]:
            dropped.add(id(other))
            note = f"Same decision also recorded as {other.reference}"
            if note not in keep.details:
                keep.details.append(note)
            if not (keep.author_ref or keep.author_display):
                keep.author_ref, keep.author_display = other.author_ref, other.author_display
            keep.review = keep.review or other.review
            keep.document = keep.document or other.document
            keep.source_org = keep.source_org or other.source_org
    return [p for p in items if id(p) not in dropped]


def assess(
    items: list[Preference],
    attorneys: list[Attorney] | None = None,
    *,
    now: datetime | None = None,
) -> Assessment:
    """Give every item its state and find conflicts and warnings (items are updated in place;
    duplicate records of one CPR decision are left out of the result, see step 0)."""
    now = now or datetime.now(UTC)
    items = same_decisions(items)
    groups: dict[tuple[str, str, str], list[Preference]] = defaultdict(list)
    for p in items:
        p.superseded_by = None
        p.needs_review = False
        if p.record_status in _BY_STATUS:
            p.state = _BY_STATUS[p.record_status]
            continue
        groups[p.group_key].append(p)
    for group in groups.values():
        group.sort(key=Preference.sort_key, reverse=True)
        latest = group[0]
        for older in group[1:]:
            older.state = SUPERSEDED
            older.superseded_by = latest.reference
        if latest.review is not None and latest.review.end < now:
            latest.state = REVIEW_OVERDUE
            latest.needs_review = True
        else:
            latest.state = CURRENT
    conflicts = find_conflicts(items)
    warnings = _warnings(items)
    ordered = sorted(items, key=_display_order)
    return Assessment(ordered, list(attorneys or []), conflicts, warnings, now)


def find_conflicts(items: list[Preference]) -> list[Conflict]:
    """Current CPR decisions that disagree across sources (both sides, every item)."""
    current = [p for p in items if p.kind == "cpr" and p.state == CURRENT]
    refusing = [p for p in current if p.cpr == NOT_FOR_CPR]
    attempting = [p for p in current if p.cpr == FOR_CPR]
    if not refusing or not attempting:
        return []
    both = sorted(refusing + attempting, key=Preference.sort_key)
    summary = (
        "Conflicting resuscitation decisions: "
        + "; ".join(describe(p) for p in both)
        + ". Check with the decision makers before acting."
    )
    return [Conflict("cpr", summary, both)]


def _warnings(items: list[Preference]) -> list[CareWarning]:
    titles = codebook().titles
    out: list[CareWarning] = []
    for p in items:
        if p.state == REVIEW_OVERDUE:
            out.append(CareWarning(
                "review-overdue",
                f"Review date {p.review.text if p.review else ''} has passed for "
                f"{_titled(p, titles)}. Needs review; not treated as current.",
                p,
            ))
        elif p.kind == "cpr" and p.state == CURRENT and (p.decided is None or not (p.author_display or p.author_ref)):
            missing = " and ".join(x for x, ok in (("decision date", p.decided), ("author", p.author_display or p.author_ref)) if not ok)
            out.append(CareWarning("incomplete", f"{_titled(p, titles)} has no recorded {missing}.", p))
    return out


def _titled(p: Preference, titles: dict[str, str]) -> str:
    title = titles.get(p.kind, p.kind)
    text = describe(p)
    return text if p.label.lower().startswith(title.lower()) else f"{title.lower()}: {text}"


def _display_order(p: Preference) -> tuple[int, int, float]:
    state_rank = {CURRENT: 0, REVIEW_OVERDUE: 1, NOT_YET_ACTIVE: 2, SUPERSEDED: 3, CANCELLED: 4,
                  ENTERED_IN_ERROR: 5}.get(p.state, 6)
    kind_rank = KIND_ORDER.index(p.kind) if p.kind in KIND_ORDER else len(KIND_ORDER)
    return (kind_rank, state_rank, -p.sort_key()[0].timestamp())


def _person_key(a: Attorney) -> tuple[str, ...]:
    """Who an attorney is, for de-duplication: the name (case and spacing ignored); with
    no recorded name, the contact details; with neither, the record itself."""
    name = " ".join(a.name.split()).casefold()
    if a.name and not a.name.startswith("(") and name:
        return ("name", name)
    if a.telecom:
        return ("telecom", *sorted(t.casefold() for t in a.telecom))
    return ("record", a.reference)


def merge_attorneys(attorneys: list[Attorney]) -> list[Attorney]:
    """One entry per person: the same attorney recorded by several sources (or twice by
    one) is listed once, with every contact detail and source, first-seen order kept."""
    merged: dict[tuple[str, ...], Attorney] = {}
    for a in attorneys:
        key = _person_key(a)
        m = merged.get(key)
        if m is None:
            merged[key] = Attorney(a.resource_id, a.name, a.role, a.active, list(a.telecom), a.address,
                                   a.source, a.source_id, list(a.also))
            continue
        m.telecom += [t for t in a.telecom if t not in m.telecom]
        m.address = m.address or a.address
        if a.source and a.source not in m.source.split(", "):
            m.source = f"{m.source}, {a.source}" if m.source else a.source
        m.also += [r for r in (a.reference, *a.also) if r != m.reference and r not in m.also]
    return list(merged.values())


def attorneys_for(a: Assessment, lpa: Preference) -> list[Attorney]:
    """The active attorneys of one current LPA decision, each person once.

    An attorney belongs to the LPA whose record names it (a ``flag-detail`` reference to
    the RelatedPerson); an attorney no LPA names belongs to the LPAs from its own source
    system; an attorney that neither ties to any current LPA is listed with every current
    LPA rather than hidden (a clinician must still be able to find them)."""
    active = [t for t in a.attorneys if t.active]
    lpas = a.current("lpa")
    named = {ref for p in lpas for ref in p.linked}
    sources = {p.source_id for p in lpas}

    def ties(t: Attorney, p: Preference) -> bool:
        if t.reference in named:
            return t.reference in p.linked
        return bool(t.source_id) and t.source_id == p.source_id

    def orphan(t: Attorney) -> bool:
        return t.reference not in named and not (t.source_id and t.source_id in sources)

    return merge_attorneys([t for t in active if ties(t, lpa) or orphan(t)])
