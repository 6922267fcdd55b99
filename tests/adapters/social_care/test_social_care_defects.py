"""Defective social care extracts: every defect is reported with file and line, the
good rows still map (docs/adapters/social-care.md, "Defects")."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from adapters.base import MappingContext, MappingError, RecordError, SourceRecord
from adapters.social_care import SocialCareAdapter

SAMPLES = Path(__file__).resolve().parents[3] / "adapters" / "social_care" / "samples"
PERSONS_HEADER = (
    "PERSON_ID,NHS_NUMBER,FORENAME,SURNAME,DATE_OF_BIRTH,GENDER,ADDRESS_LINE_1,"
    "ADDRESS_LINE_2,TOWN,POSTCODE,PHONE,ETHNICITY,DATE_OF_DEATH,LAST_UPDATED"
)


def extract(tmp_path: Path, **files: bytes) -> Path:
    """The sample extract with some files replaced (name without .csv -> raw bytes)."""
    folder = tmp_path / "extract"
    folder.mkdir()
    for f in SAMPLES.glob("*.csv"):
        shutil.copy(f, folder / f.name)
    for name, data in files.items():
        (folder / f"{name}.csv").write_bytes(data)
    return folder


def crlf(*lines: str, encoding: str = "cp1252") -> bytes:
    return ("\r\n".join(lines) + "\r\n").encode(encoding)


def outcome(folder: Path) -> tuple[dict[str, list], list[tuple[str, int | None, str, str | None]], list[str]]:
    """(resources by source id, problems as (file, line, reason, source id), warnings)."""
    adapter = SocialCareAdapter()
    ctx = MappingContext(source_system="LA1", feed="test")
    mapped: dict[str, list] = {}
    problems = []
    for item in adapter.read([folder]):
        if isinstance(item, RecordError):
            problems.append((item.location.file, item.location.line, item.reason, item.source_id))
            continue
        assert isinstance(item, SourceRecord)
        try:
            mapped[item.source_id] = adapter.map(item, ctx)
        except MappingError as exc:
            problems.append((item.location.file, item.location.line, exc.reason, item.source_id))
    return mapped, problems, ctx.warnings


def test_bad_date_rejects_that_row_only(tmp_path: Path) -> None:
    folder = extract(
        tmp_path,
        alerts=crlf(
            "ALERT_ID,PERSON_ID,ALERT_TYPE,DETAIL,START_DATE,END_DATE,CONFIDENTIAL",
            "AT300,LAS100200,Key safe,Key safe code held by care provider,31/02/2026,,N",
            "AT301,LAS100200,Lives alone,,2026-08-20,,N",
            "AT310,LAS100201,Risk to staff,Dog on premises - call ahead,08/11/2026,,Y",
        ),
    )
    mapped, problems, _ = outcome(folder)
    assert [(f, line, sid) for f, line, _, sid in problems] == [
        ("alerts.csv", 2, "alert/AT300"),
        ("alerts.csv", 3, "alert/AT301"),
    ]
    assert "not a real date" in problems[0][2]
    assert "not a dd/mm/yyyy date" in problems[1][2]
    assert mapped["alert/AT310"][0]["status"] == "active"
    assert "person/LAS100200" in mapped


def test_bad_nhs_check_digit_is_reported_and_person_kept_without_it(tmp_path: Path) -> None:
    folder = extract(
        tmp_path,
        persons=crlf(
            PERSONS_HEADER,
            "LAS100200,999 000 0426,Joan,Whitfield,11/02/1936,F,14 Breck Road,,Liverpool,L5 6PX,,A,,2026-11-28 22:00:01",
            "LAS100201,9990000433,Dennis,O'Hare,30/07/1948,M,2 Scotland Road,,Liverpool,L3 6JR,,A,,2026-11-28 22:00:01",
        ),
    )
    mapped, problems, warnings = outcome(folder)
    assert problems == []
    joan = mapped["person/LAS100200"][0]
    assert [i["system"] for i in joan["identifier"]] == ["https://exchange.example.nhs.uk/Id/LA1/person-id"]
    assert any("Modulus 11" in w and "999 000 0426" in w for w in warnings)
    dennis = mapped["person/LAS100201"][0]
    assert dennis["identifier"][0]["value"] == "9990000433"


def test_missing_columns(tmp_path: Path) -> None:
    folder = extract(
        tmp_path,
        contacts=crlf(
            "CONTACT_ID,PERSON_ID,RELATIONSHIP,NAME,PHONE,IS_CARER,LAST_UPDATED",
            "CT800,LAS100200,Daughter,Karen Whitfield,07700 900101,Y,2026-11-28 22:00:01",
        ),
        workers=crlf("NAME,ROLE,TEAM,TEAM_EMAIL,PHONE", "Sarah O'Neill,Social Worker,North,n@x.example,0151"),
    )
    mapped, problems, _ = outcome(folder)
    by_file = {f: (line, reason) for f, line, reason, _ in problems if f in ("contacts.csv", "workers.csv")}
    assert by_file["contacts.csv"][0] == 1 and "LPA_TYPE" in by_file["contacts.csv"][1]
    assert "read as not recorded" in by_file["contacts.csv"][1]
    assert "WORKER_ID" in by_file["workers.csv"][1] and "file skipped" in by_file["workers.csv"][1]
    # the contact still maps (no LPA recorded); no worker was read
    assert [r["resourceType"] for r in mapped["contact/CT800"]] == ["RelatedPerson"]
    assert not [k for k in mapped if k.startswith("worker/")]


def test_wrong_encoding_and_truncated_lines(tmp_path: Path) -> None:
    good = "LAS100201,9990000433,Dennis,O'Hare,30/07/1948,M,2 Scotland Road,,Liverpool,L3 6JR,,A,,2026-11-28 22:00:01"
    utf8_line = "LAS100202,,Renée,Dubois,01/12/1929,F,Flat 3,,Liverpool,L17 4JP,,A,,2026-11-28 22:00:01"
    data = (
        crlf(PERSONS_HEADER)
        + utf8_line.encode("utf-8") + b"\r\n"  # a line re-saved as UTF-8
        + b"LAS100204,,Bad\x81Byte,Smith,01/01/1950,M,,,,,,,,\r\n"  # undefined in Windows-1252
        + crlf(good)
        + b"LAS100203,9990000441,Peter,Nol"  # the export was cut off mid-row
    )
    folder = extract(tmp_path, persons=data)
    mapped, problems, _ = outcome(folder)
    persons = [(line, reason, sid) for f, line, reason, sid in problems if f == "persons.csv"]
    assert [(line, sid) for line, _, sid in persons] == [
        (2, "person/LAS100202"),
        (3, "person/LAS100204"),
        (5, "person/LAS100203"),
    ]
    assert "UTF-8" in persons[0][1]
    assert "0x81" in persons[1][1]
    assert "truncated" in persons[2][1]
    assert "person/LAS100201" in mapped
    # rows elsewhere that name a person whose row was defective still map (the
    # pipeline rejects them if the person is unknown to the exchange)
    assert "service/SV5000" in mapped


def test_unterminated_quote_and_blank_key(tmp_path: Path) -> None:
    folder = extract(
        tmp_path,
        contacts=crlf(
            "CONTACT_ID,PERSON_ID,RELATIONSHIP,NAME,PHONE,IS_CARER,LPA_TYPE,LAST_UPDATED",
            ",LAS100200,Daughter,Karen Whitfield,07700 900101,Y,,2026-11-28 22:00:01",
            "CT810,LAS100201,Wife,Maureen O'Hare,0151 000 3003,Y,,2026-11-28 22:00:01",
            'CT830,LAS100203,Wife,"Ann Nolan',
        ),
    )
    mapped, problems, _ = outcome(folder)
    contacts = [(line, reason) for f, line, reason, _ in problems if f == "contacts.csv"]
    assert contacts[0] == (2, "CONTACT_ID is empty: the row cannot be identified")
    assert contacts[1][0] == 4 and "cannot be parsed" in contacts[1][1]
    assert "contact/CT810" in mapped


def test_missing_file_is_reported(tmp_path: Path) -> None:
    folder = extract(tmp_path)
    (folder / "alerts.csv").unlink()
    mapped, problems, _ = outcome(folder)
    assert problems == [("alerts.csv", None, "file missing from the extract: none of its records were read", None)]
    assert "person/LAS100200" in mapped


@pytest.mark.parametrize(
    ("row", "element"),
    [
        ("SV9,LAS100200,Home Care,XX,P,,01/09/2026,,,Active,2026-11-28 22:00:01", "CLD_SERVICE_TYPE"),
        ("SV9,LAS100200,Home Care,HC,P,,01/09/2026,,,Paused,2026-11-28 22:00:01", "STATUS"),
        ("SV9,LAS100200,Home Care,HC,P,,01/09/2026,01/08/2026,,Ended,2026-11-28 22:00:01", "END_DATE"),
        ("SV9,LAS100200,Home Care,HC,P,,01/09/2026,,ten,Active,2026-11-28 22:00:01", "PLANNED_HOURS_PER_WEEK"),
        ("SV9,,Home Care,HC,P,,01/09/2026,,,Active,2026-11-28 22:00:01", "PERSON_ID"),
    ],
)
def test_bad_service_values_name_the_column(tmp_path: Path, row: str, element: str) -> None:
    header = (
        "SERVICE_ID,PERSON_ID,SERVICE_TYPE,CLD_SERVICE_TYPE,PROVIDER_NAME,PROVIDER_CQC_ID,"
        "START_DATE,END_DATE,PLANNED_HOURS_PER_WEEK,STATUS,LAST_UPDATED"
    )
    folder = extract(tmp_path, services=crlf(header, row))
    adapter = SocialCareAdapter()
    record = next(r for r in adapter.read([folder]) if isinstance(r, SourceRecord) and r.kind == "service")
    with pytest.raises(MappingError) as info:
        adapter.map(record, MappingContext(source_system="LA1", feed="t"))
    assert info.value.element == element
