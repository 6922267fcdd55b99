"""Care-relationship link ends are stored in UTC on both databases (SQLite keeps only
the wall time of an aware datetime, so an offset end used to count an hour too long)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, select

from consent.facts import index_facts, index_facts_many, links_of
from consent.tables import consent_fact, consent_link
from exchange.db.engine import write_tx

ENC = {"resourceType": "Encounter", "id": "pe-enc", "status": "finished", "class": {"code": "AMB"},
       "subject": {"reference": "Patient/pe-p"}, "serviceProvider": {"reference": "Organization/pe-org"},
       "period": {"start": "2026-10-02T09:00:00+01:00", "end": "2026-10-02T09:30:00+01:00"}}
CLOSED = {"resourceType": "EpisodeOfCare", "id": "pe-eoc", "status": "finished", "patient": {"reference": "Patient/pe-p"},
          "managingOrganization": {"reference": "Organization/pe-org"}, "period": {"start": "2026-06-01T00:30:00+02:00"}}


def _utc(v: datetime) -> datetime:
    return v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)


def test_link_end_is_utc_in_python() -> None:
    assert links_of(ENC)[0].period_end == datetime(2026, 10, 2, 8, 30, tzinfo=UTC)
    assert links_of(ENC)[0].period_end.utcoffset().total_seconds() == 0
    assert links_of(CLOSED)[0].period_end == datetime(2026, 5, 31, 22, 30, tzinfo=UTC)


def test_stored_link_end_is_the_utc_instant(engine) -> None:  # noqa: ANN001
    with write_tx(engine) as conn:
        index_facts(conn, 880001, "Encounter", ENC)
        index_facts_many(conn, [(880002, "EpisodeOfCare", CLOSED)], fresh={880002})
        ends = dict(conn.execute(select(consent_link.c.rid, consent_link.c.period_end)
                                 .where(consent_link.c.rid.in_([880001, 880002]))).all())
        conn.execute(delete(consent_link).where(consent_link.c.rid.in_([880001, 880002])))
        conn.execute(delete(consent_fact).where(consent_fact.c.rid.in_([880001, 880002])))
    assert _utc(ends[880001]) == datetime(2026, 10, 2, 8, 30, tzinfo=UTC)
    assert _utc(ends[880002]) == datetime(2026, 5, 31, 22, 30, tzinfo=UTC)
