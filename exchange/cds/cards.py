"""CDS Hooks cards from a care-preference assessment (CDS Hooks 2.0 "Card Attributes").

* ``critical``: a current "not for CPR" decision, or conflicting current CPR decisions;
* ``warning``: a decision whose review date has passed (needs review, not current);
* ``info``: a lasting power of attorney for health and welfare (one card per current
  LPA decision, listing that LPA's attorneys once each: ``eol_current.attorneys_for``),
  a preferred place of death, care preferences a consent directive explicitly
  restricts or the token's scopes do not cover (never a count of withheld records), and
  the consent layer's notices.

Every card has a ``source`` label naming where the decision came from, a summary under
140 characters, a markdown ``detail`` (who decided, when, review date, source) and a
link to the ``$care-preferences`` document. Pure functions: no I/O.
"""

from __future__ import annotations

import uuid
from typing import Any

from exchange.operations.eol_current import attorneys_for, describe
from exchange.operations.eol_model import NOT_FOR_CPR, Assessment, Preference

SUMMARY_MAX = 139
SOURCE_LABEL = "Integrated care record exchange"


def _summary(text: str) -> str:
    return text if len(text) <= SUMMARY_MAX else text[: SUMMARY_MAX - 1].rstrip() + "…"


def _md(text: object) -> str:
    """Escape markdown control characters in source-provided text."""
    s = str(text)
    for ch in "\\`*_{}[]<>#|":
        s = s.replace(ch, "\\" + ch)
    return s


def _lines(p: Preference) -> list[str]:
    out = [
        f"- **Decision:** {_md(p.label)}",
        f"- **Made by:** {_md(p.author_display or p.author_ref or 'not recorded')}",
        f"- **Date:** {_md(p.decided.text if p.decided else 'not recorded')}",
    ]
    if p.review:
        out.append(f"- **Review date:** {_md(p.review.text)}")
    out.append(f"- **Source:** {_md(p.source)}" + (f" ({_md(p.source_org)})" if p.source_org else ""))
    if p.document:
        out.append(f"- **Form / document:** {_md(p.document)}")
    out.extend(f"- {_md(d)}" for d in p.details[:5])
    return out


def _card(indicator: str, summary: str, detail: str, source: str, link: str) -> dict[str, Any]:
    return {
        "uuid": str(uuid.uuid4()),
        "summary": _summary(summary),
        "indicator": indicator,
        "detail": detail,
        "source": {"label": source},
        "links": [{"label": "Open the care preferences document", "url": link, "type": "absolute"}],
    }


def build_cards(a: Assessment, document_url: str) -> list[dict[str, Any]]:
    """The cards for one patient, most urgent first."""
    cards: list[dict[str, Any]] = []
    for c in a.conflicts:
        detail = "Current resuscitation decisions from different sources disagree. Do not rely on either " \
                 "without checking with the decision makers.\n\n" + "\n\n".join("\n".join(_lines(p)) for p in c.items)
        sources = ", ".join(sorted({p.source for p in c.items}))
        cards.append(_card("critical", "CONFLICT: resuscitation decisions disagree (" + sources + ")",
                           detail, f"{SOURCE_LABEL}: {sources}", document_url))
    for p in a.current("cpr"):
        if p.cpr == NOT_FOR_CPR:
            who = p.author_display or "author not recorded"
            when = p.decided.text if p.decided else "undated"
            cards.append(_card("critical", f"DNACPR: {p.label} ({who}, {when})",
                               "\n".join(_lines(p)), f"{SOURCE_LABEL}: {p.source}", document_url))
    for w in a.warnings:
        if w.code == "review-overdue" and w.item is not None:
            p = w.item
            cards.append(_card("warning", f"Review date passed: {p.label} (review {p.review.text if p.review else ''})",
                               _md(w.text) + "\n\n" + "\n".join(_lines(p)), f"{SOURCE_LABEL}: {p.source}", document_url))
    for p in a.current("lpa"):
        attorneys = attorneys_for(a, p)  # this LPA's attorneys, each person once
        who = ", ".join(at.name for at in attorneys) if attorneys else "attorney details not recorded"
        lines = _lines(p) + [
            f"- **Attorney:** {_md(at.name)}: {_md('; '.join(at.telecom) or 'no contact details')}"
            for at in attorneys
        ]
        cards.append(_card("info", f"Lasting power of attorney (health and welfare): {who}",
                           "\n".join(lines), f"{SOURCE_LABEL}: {p.source}", document_url))
    for p in a.current("place_of_death"):
        cards.append(_card("info", p.label, "\n".join(_lines(p)), f"{SOURCE_LABEL}: {p.source}", document_url))
    for w in a.warnings:
        if w.code == "withheld":
            why = "not covered by this system's access" if w.reason == "scope" else "patient's consent restricts them"
            cards.append(_card("info", f"Care preferences may be withheld ({why})",
                               _md(w.text), SOURCE_LABEL, document_url))
        elif w.code == "notice":
            cards.append(_card("info", w.text, _md(w.text), SOURCE_LABEL, document_url))
    return cards


def describe_all(a: Assessment) -> list[str]:
    """One line per current decision (for logs and the demo's printed examples)."""
    return [describe(p) for p in a.current()]
