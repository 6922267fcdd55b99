"""Plain data for care preferences: one recognised decision, its state, conflicts (issue 6).

A :class:`Preference` is what the exchange understood from one source resource (a Flag,
Consent, Observation, CarePlan, QuestionnaireResponse, ClinicalImpression); an
:class:`Attorney` is a RelatedPerson holding a lasting power of attorney;
:class:`Assessment` is the outcome of ``eol_current.assess``. Dates follow FHIR R4
datatypes.html#date / #dateTime (partial dates allowed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

# Lifecycle states shown to the clinician (docs/care-preferences.md, "Deciding what is current").
CURRENT = "current"
SUPERSEDED = "superseded"
CANCELLED = "cancelled"
ENTERED_IN_ERROR = "entered-in-error"
REVIEW_OVERDUE = "review-overdue"
NOT_YET_ACTIVE = "not-yet-active"  # draft / proposed / in-progress records

STATE_LABELS = {
    CURRENT: "Current",
    SUPERSEDED: "Superseded by a later decision from the same source",
    CANCELLED: "Cancelled / withdrawn",
    ENTERED_IN_ERROR: "Entered in error",
    REVIEW_OVERDUE: "Review date passed: needs review (not current)",
    NOT_YET_ACTIVE: "Draft / not yet in force",
}

UNKNOWN_SOURCE = "unknown source"
NOT_FOR_CPR = "not-for-cpr"
FOR_CPR = "for-cpr"


@dataclass(frozen=True)
class FhirDate:
    """A FHIR date/dateTime with its precision: ``start`` and ``end`` of the period it names."""

    text: str
    start: datetime
    end: datetime

    @property
    def day(self) -> date:
        return self.start.date()


_DATE_RE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")


def parse_fhir_date(value: object) -> FhirDate | None:
    """Parse a FHIR ``date``/``dateTime``/``instant``; None when absent or malformed."""
    if not isinstance(value, str) or not value:
        return None
    m = _DATE_RE.match(value)
    try:
        if m:
            y, mo, d = int(m.group(1)), m.group(2), m.group(3)
            if d:
                start = datetime(y, int(mo), int(d), tzinfo=UTC)
                end = start + timedelta(days=1) - timedelta(microseconds=1)
            elif mo:
                start = datetime(y, int(mo), 1, tzinfo=UTC)
                nxt = datetime(y + (int(mo) == 12), int(mo) % 12 + 1, 1, tzinfo=UTC)
                end = nxt - timedelta(microseconds=1)
            else:
                start = datetime(y, 1, 1, tzinfo=UTC)
                end = datetime(y + 1, 1, 1, tzinfo=UTC) - timedelta(microseconds=1)
            return FhirDate(value, start, end)
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=UTC)
        ts = ts.astimezone(UTC)
        return FhirDate(value, ts, ts)
    except ValueError:
        return None


@dataclass
class Preference:
    """One care-preference decision or statement recognised in a source resource."""

    kind: str
    resource_type: str
    resource_id: str
    label: str  # what it says, e.g. "Not for attempted cardiopulmonary resuscitation"
    record_status: str  # normalised: active | cancelled | entered-in-error | draft
    source: str  # source system label shown to people (tag display / code, meta.source)
    cpr: str | None = None  # NOT_FOR_CPR | FOR_CPR for kind "cpr"
    topic: str = ""  # sub-grouping for supersession (e.g. the decision a capacity test is about)
    decided: FhirDate | None = None
    review: FhirDate | None = None
    author_ref: str | None = None
    author_display: str | None = None
    source_org: str | None = None
    details: list[str] = field(default_factory=list)
    document: str | None = None  # where the signed form / full document is
    linked: list[str] = field(default_factory=list)  # references in flag-detail (e.g. the LPA's attorney)
    last_updated: str | None = None
    source_id: str = ""  # source system identity used for supersession (tag system|code)
    # filled in by eol_current.assess
    state: str = ""
    superseded_by: str | None = None
    needs_review: bool = False

    @property
    def reference(self) -> str:
        return f"{self.resource_type}/{self.resource_id}"

    @property
    def group_key(self) -> tuple[str, str, str]:
        """Decisions supersede one another within (source, kind, topic). A record whose
        source is unknown is its own group: never silently superseded, so disagreement
        with it shows as a conflict rather than disappearing."""
        source = self.source_id or self.source
        if source == UNKNOWN_SOURCE:
            source = f"{UNKNOWN_SOURCE} {self.reference}"
        return (source, self.kind, self.topic)

    @property
    def is_current(self) -> bool:
        return self.state == CURRENT

    def sort_key(self) -> tuple[datetime, str]:
        when = self.decided.start if self.decided else datetime.min.replace(tzinfo=UTC)
        return (when, self.last_updated or "")


@dataclass
class Attorney:
    """A person holding a lasting power of attorney (a RelatedPerson)."""

    resource_id: str
    name: str
    role: str
    active: bool
    telecom: list[str] = field(default_factory=list)
    address: str | None = None
    source: str = ""
    source_id: str = ""  # source system identity (as Preference.source_id)
    also: list[str] = field(default_factory=list)  # other RelatedPersons merged into this one

    @property
    def reference(self) -> str:
        return f"RelatedPerson/{self.resource_id}"


@dataclass
class Conflict:
    """Current decisions of one kind from different sources that disagree."""

    kind: str
    summary: str
    items: list[Preference]


@dataclass
class CareWarning:
    """Something the clinician must know that is not itself a decision."""

    code: str  # review-overdue | incomplete | withheld | notice
    text: str
    item: Preference | None = None
    reason: str = ""  # for "withheld": "sharing" (consent / labels) or "scope" (the token's SMART scopes)


@dataclass
class Assessment:
    """Every recognised preference with its state, plus conflicts and warnings."""

    items: list[Preference]
    attorneys: list[Attorney]
    conflicts: list[Conflict]
    warnings: list[CareWarning]
    as_of: datetime

    def of_kind(self, kind: str) -> list[Preference]:
        return [p for p in self.items if p.kind == kind]

    def current(self, kind: str | None = None) -> list[Preference]:
        return [p for p in self.items if p.is_current and (kind is None or p.kind == kind)]
