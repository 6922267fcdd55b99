"""Defective community extracts: each defect reported with file and line, good rows still
map (docs/adapters/community.md, "Defects")."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from adapters.base import MappingContext, MappingError, RecordError, SourceRecord
from adapters.community import CommunityAdapter

SAMPLES = Path(__file__).resolve().parents[3] / "adapters" / "community" / "samples"


def extract(tmp_path: Path, **files: bytes) -> Path:
    folder = tmp_path / "extract"
    folder.mkdir()
    for f in SAMPLES.glob("*.csv"):
        shutil.copy(f, folder / f.name)
    for name, data in files.items():
        (folder / f"{name}.csv").write_bytes(data)
    return folder


def lf(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode("utf-8")


def outcome(folder: Path) -> tuple[dict[str, list], list[tuple[str, int | None, str, str | None]], list[str]]:
    adapter = CommunityAdapter()
    ctx = MappingContext(source_system="RW4", feed="test")
    mapped: dict[str, list] = {}
    problems = []
    for item in adapter.read([folder]):
        if isinstance(item, RecordError):
            problems.append((item.location.file, item.location.line, item.reason, item.element))
            continue
        assert isinstance(item, SourceRecord)
        try:
            mapped[item.source_id] = adapter.map(item, ctx)
        except MappingError as exc:
            problems.append((item.location.file, item.location.line, exc.reason, exc.element))
    return mapped, problems, ctx.warnings


PATIENTS = "PATIENT_ID,NHS_NUMBER,SURNAME,FORENAMES,DOB,SEX,POSTCODE,GP_PRACTICE_CODE"
OBSERVATIONS = "OBSERVATION_ID,CONTACT_ID,CODE_SYSTEM,CODE,DESCRIPTION,VALUE,UNIT"


def test_patients_bad_date_bad_check_digit_wrong_encoding(tmp_path: Path) -> None:
    data = (
        lf(
            PATIENTS,
            "S1C-40000,9990000425,WHITFIELD,Joan,1936-02-30,F,L5 6PX,N82001",
            "S1C-40001,9990000434,O'HARE,Dennis,1948-07-30,M,L3 6JR,N82002",
        )
        + "S1C-40002,,DUBOIS,Renée,1929-12-01,F,L17 4JP,N82003\n".encode("cp1252")
        + lf("S1C-40003,9990000441,NOLAN,Peter,1958-05-19,M,L4 4AP,N82001")
    )
    mapped, problems, warnings = outcome(extract(tmp_path, patients=data))
    patients = [(line, reason, el) for f, line, reason, el in problems if f == "patients.csv"]
    assert [(line, el) for line, _, el in patients] == [(2, "DOB"), (4, None)]
    assert "not a real date" in patients[0][1]
    assert "0xE9" in patients[1][1] and "utf-8" in patients[1][1]
    dennis = mapped["patient/S1C-40001"][0]
    assert all(not i["system"].endswith("nhs-number") for i in dennis["identifier"])
    assert any("Modulus 11" in w for w in warnings)
    assert "patient/S1C-40003" in mapped


def test_observation_defects(tmp_path: Path) -> None:
    data = lf(
        OBSERVATIONS,
        "OBS1,CON80000,SNOMED,278897005,Waterlow,16,score",  # check digit wrong
        "OBS2,CON99999,LOCAL,WATERLOW,Waterlow,16,score",  # no such contact
        "OBS3,CON80000,READ,XaJ9o,Something,1,",  # unsupported code system
        "OBS4,CON80000,LOCAL,WATERLOW,Waterlow,16",  # truncated line
        "OBS5,CON80001,LOCAL,WATERLOW,Waterlow pressure ulcer risk score,18,score",
    )
    mapped, problems, _ = outcome(extract(tmp_path, observations=data))
    obs = [(line, el) for f, line, _, el in problems if f == "observations.csv"]
    assert obs == [(2, "CODE"), (3, "CONTACT_ID"), (4, "CODE_SYSTEM"), (5, None)]
    assert mapped["observation/OBS5"][0]["valueQuantity"]["value"] == 18


def test_activity_with_invalid_snomed_code(tmp_path: Path) -> None:
    data = lf(
        "ACTIVITY_ID,CONTACT_ID,SNOMED_CODE,DESCRIPTION",
        "ACT1,CON80000,225358004,Wound care",
        "ACT2,CON80000,225358003,Wound care",
    )
    mapped, problems, _ = outcome(extract(tmp_path, activities=data))
    assert [(f, line, el) for f, line, _, el in problems] == [("activities.csv", 2, "SNOMED_CODE")]
    assert "activity/ACT2" in mapped


def test_register_missing_column_and_bad_values(tmp_path: Path) -> None:
    header = (
        "RECORD_ID,PATIENT_ID,ON_REGISTER_DATE,CPR_DECISION,CPR_DECISION_DATE,CPR_REVIEW_DATE,"
        "CPR_DECIDED_BY,RESPECT_FORM,RESPECT_CARE_PRIORITY,PREFERRED_PLACE_OF_CARE,"
        "PREFERRED_PLACE_OF_DEATH,LPA_HEALTH_WELFARE,LPA_NAME,LPA_PHONE,ADRT,STATUS,LAST_UPDATED"
    )  # no ADRT_DETAIL column
    data = lf(
        header,
        "EPC1,S1C-40000,2026-10-01,DNR,2026-10-01,2027-04-01,Dr P Shah (GP),N,,,,N,,,N,Active,2026-10-01T12:00:00",
        "EPC2,S1C-40000,2026-10-01,DNACPR,2026-10-01,2027-04-01,Dr P Shah (GP),Y,11,,,N,,,N,Active,2026-10-01T12:00:00",
        "EPC3,S1C-40000,2026-10-01,DNACPR,2026-10-01,2026-09-01,Dr P Shah (GP),N,,,,N,,,N,Active,2026-10-01T12:00:00",
        "EPC4,S1C-40000,2026-10-01,DNACPR,2026-10-01,2027-04-01,Dr P Shah (GP),N,,,,N,,,Y,Revoked,2026-10-01T12:00:00",
        "EPC5,S1C-40000,2026-10-01,DNACPR,2026-10-01,2027-04-01,Dr P Shah (GP),N,,Home,Home,N,,,Y,Superseded,2026-10-01T12:00:00",
    )
    mapped, problems, _ = outcome(extract(tmp_path, eol_register=data))
    reg = [(line, el) for f, line, _, el in problems if f == "eol_register.csv"]
    assert reg == [(1, "ADRT_DETAIL"), (2, "CPR_DECISION"), (3, "RESPECT_CARE_PRIORITY"),
                   (4, "CPR_REVIEW_DATE"), (5, "STATUS")]
    superseded = {r["id"]: r for r in mapped["eol-register/EPC5"]}
    assert superseded["EPC5-cpr"]["status"] == "inactive"
    assert superseded["EPC5-adrt"]["code"].get("text") is None  # no detail column
    assert superseded["EPC5-ppd"]["status"] == "cancelled"
    assert superseded["EPC5-cpr"]["extension"][0]["valueCoding"]["code"] == "superseded"


@pytest.mark.parametrize(
    ("when", "warning"),
    [("2026-03-29T01:30", "does not exist"), ("2026-10-25T01:30", "ambiguous")],
)
def test_clock_change_times_are_reported(tmp_path: Path, when: str, warning: str) -> None:
    data = lf(
        "CONTACT_ID,REFERRAL_ID,PATIENT_ID,CONTACT_DATETIME,LOCATION,CLINICIAN_NAME,CLINICIAN_ROLE,OUTCOME,ATTENDED",
        f"CON1,REF60000,S1C-40000,{when},Home,Nurse A. Begum,District Nurse,Seen,Y",
    )
    mapped, problems, warnings = outcome(extract(tmp_path, contacts=data))
    assert not [p for p in problems if p[0] == "contacts.csv"]
    assert any(warning in w for w in warnings)
    assert mapped["contact/CON1"][0]["period"]["start"].startswith(when)
