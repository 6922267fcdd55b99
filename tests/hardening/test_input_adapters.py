"""Hostile feeds through the real ingest pipeline (issue 11, "Bad input": invalid HL7 v2
and malformed CSV; docs/adapters/*.md "Defects").

The files are in corpus/hl7v2 and corpus/csv. Every defective record must be rejected
with a clear report entry (severity error, file and line), the run must complete
(never an exception), and nothing may be written for a rejected record (database
fingerprint unchanged). Hostile *values* that are valid data (SQL metacharacters, path
traversal in a hospital number) are stored verbatim as data and found again by exact
search. The unit-level defect tests of each adapter (tests/adapters/*/test_*_defects.py,
test_hl7v2_robustness.py) are not repeated here. SQLite and PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from adapters.community.adapter import CommunityAdapter
from adapters.hl7v2.adapter import Hl7v2Adapter
from adapters.pipeline import ingest
from adapters.social_care import SocialCareAdapter
from exchange.settings import Settings

CORPUS = Path(__file__).parent / "corpus"
HL7_REJECTED = [
    "truncated-in-msh.hl7", "truncated-after-msh.hl7", "wrong-field-delimiter.hl7", "wrong-encoding-chars.hl7",
    "no-msh.hl7", "utf16.hl7", "binary-garbage.hl7", "nul-in-field.hl7", "control-chars.hl7",
    "bad-message-type.hl7", "empty-message-type.hl7", "no-control-id.hl7", "lf-only-and-garbage-segments.hl7",
]
CSV_REJECTED = [("social_care", d) for d in ("wrong-delimiter", "unterminated-quote", "nul-bytes", "utf16", "binary",
                                             "bad-values", "short-row")]
CSV_REJECTED += [("community", d) for d in ("wrong-delimiter", "nul-bytes", "bad-values", "extra-fields", "huge-field")]
ADAPTERS = {"social_care": SocialCareAdapter, "community": CommunityAdapter}


def _errors_are_located(report) -> None:  # noqa: ANN001
    errors = [p for p in report.problems if p.severity == "error"]
    assert errors, "a defective feed must report at least one error"
    for p in errors:
        assert p.reason and p.location is not None and p.location.file, p


@pytest.mark.parametrize("name", HL7_REJECTED)
def test_invalid_hl7v2_is_rejected_and_changes_nothing(full_engine: Engine, full_settings: Settings, fingerprint,  # noqa: ANN001
                                                       name: str) -> None:
    before = fingerprint()
    report = ingest(full_engine, full_settings, Hl7v2Adapter(), [CORPUS / "hl7v2" / name])
    assert report.status == "complete"
    assert report.rejected >= 1 and report.created == report.updated == 0, report.counts()
    _errors_are_located(report)
    assert all(p.location.line for p in report.problems if p.severity == "error")
    assert fingerprint() == before


def test_empty_hl7v2_file_reads_nothing(full_engine: Engine, full_settings: Settings, fingerprint) -> None:  # noqa: ANN001
    before = fingerprint()
    report = ingest(full_engine, full_settings, Hl7v2Adapter(), [CORPUS / "hl7v2" / "empty.hl7"])
    assert report.status == "complete" and report.read == 0 and fingerprint() == before


def test_nul_in_hl7v2_is_a_validation_error_not_a_database_error(full_engine: Engine, full_settings: Settings) -> None:
    """Regression: a NUL inside a field used to reach PostgreSQL's search index and abort
    the batch (text fields cannot hold NUL); validation now rejects the message."""
    report = ingest(full_engine, full_settings, Hl7v2Adapter(), [CORPUS / "hl7v2" / "nul-in-field.hl7"])
    kinds = {(p.kind, p.reason) for p in report.problems if p.severity == "error"}
    assert ("validation", "Control characters are not allowed in strings") in kinds


@pytest.mark.parametrize(("adapter", "folder"), CSV_REJECTED, ids=[f"{a}-{d}" for a, d in CSV_REJECTED])
def test_malformed_csv_is_rejected_and_changes_nothing(full_engine: Engine, full_settings: Settings, fingerprint,  # noqa: ANN001
                                                       adapter: str, folder: str) -> None:
    before = fingerprint()
    report = ingest(full_engine, full_settings, ADAPTERS[adapter](), [CORPUS / "csv" / adapter / folder])
    assert report.status == "complete"
    assert report.created == report.updated == report.deleted == 0, report.counts()
    _errors_are_located(report)
    assert fingerprint() == before


def test_missing_columns_are_reported_at_the_header(full_engine: Engine, full_settings: Settings) -> None:
    report = ingest(full_engine, full_settings, SocialCareAdapter(), [CORPUS / "csv" / "social_care" / "missing-columns"])
    header = [p for p in report.problems if p.location and p.location.file == "persons.csv" and p.location.line == 1]
    assert header and "missing column" in header[0].reason


@pytest.mark.parametrize(("name", "value"), [("sql-in-identifier.hl7", "1' OR '1'='1"),
                                              ("traversal-in-identifier.hl7", "../../etc/passwd")])
def test_hostile_identifier_is_stored_as_data(full_engine: Engine, full_settings: Settings, full_client,  # noqa: ANN001
                                              system_headers, name: str, value: str) -> None:
    report = ingest(full_engine, full_settings, Hl7v2Adapter(), [CORPUS / "hl7v2" / name])
    assert report.status == "complete" and report.rejected == 0, report.problems
    r = full_client.get("/fhir/Patient", params={"identifier": value}, headers=system_headers)
    assert r.status_code == 200, r.text
    found = r.json().get("entry", [])
    assert len(found) == 1
    assert any(i["value"] == value for i in found[0]["resource"]["identifier"])
    # and nothing else matched: the metacharacters were data, not query syntax
    everyone = full_client.get("/fhir/Patient", params={"identifier": "1"}, headers=system_headers).json()
    assert everyone.get("entry", []) == []
