"""A synthetic community-services extract (the community adapter's own CSV format,
docs/adapters/community.md) large enough that an ingest spans several batches, so a
process killed part-way through leaves some batches committed and others not."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path


def nhs_number(i: int) -> str:
    """A valid Modulus 11 NHS number in the 999 test range, unique per ``i``."""
    for base_n in (2 * i, 2 * i + 1):
        base = f"999{base_n:06d}"
        check = 11 - sum(int(d) * w for d, w in zip(base, range(10, 1, -1), strict=True)) % 11
        check = 0 if check == 11 else check
        if check != 10:
            return base + str(check)
    raise AssertionError("one of two neighbours always has a check digit")


def _table(folder: Path, name: str, header: list[str], rows: Iterable[list[str]]) -> None:
    with (folder / name).open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def write_community_feed(folder: Path, patients: int, contacts: int = 3, first: int = 400_000) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    people = range(patients)
    _table(folder, "patients.csv",
           ["PATIENT_ID", "NHS_NUMBER", "SURNAME", "FORENAMES", "DOB", "SEX", "POSTCODE", "GP_PRACTICE_CODE"],
           ([f"F-{i}", nhs_number(first + i), f"FAULT{i}", "Sam", "1944-03-02", "F" if i % 2 else "M",
             "L5 6PX", "N82001"] for i in people))
    _table(folder, "referrals.csv",
           ["REFERRAL_ID", "PATIENT_ID", "SERVICE", "REFERRAL_SOURCE", "RECEIVED_DATE", "PRIORITY", "STATUS",
            "DISCHARGED_DATE"],
           ([f"FR-{i}", f"F-{i}", "District Nursing", "GP", "2026-10-01", "Routine", "Open", ""] for i in people))
    _table(folder, "contacts.csv",
           ["CONTACT_ID", "REFERRAL_ID", "PATIENT_ID", "CONTACT_DATETIME", "LOCATION", "CLINICIAN_NAME",
            "CLINICIAN_ROLE", "OUTCOME", "ATTENDED"],
           ([f"FC-{i}-{k}", f"FR-{i}", f"F-{i}", f"2026-10-{k + 2:02d}T09:30", "Home", "Nurse A. Begum",
             "District Nurse", "Seen", "Y"] for i in people for k in range(contacts)))
    _table(folder, "activities.csv", ["ACTIVITY_ID", "CONTACT_ID", "SNOMED_CODE", "DESCRIPTION"],
           ([f"FA-{i}-{k}", f"FC-{i}-{k}", "225358003", "Wound care"] for i in people for k in range(contacts)))
    _table(folder, "observations.csv",
           ["OBSERVATION_ID", "CONTACT_ID", "CODE_SYSTEM", "CODE", "DESCRIPTION", "VALUE", "UNIT"],
           ([f"FO-{i}-{k}", f"FC-{i}-{k}", "LOCAL", "WATERLOW", "Waterlow pressure ulcer risk score",
             str(10 + k), "score"] for i in people for k in range(contacts)))
    _table(folder, "eol_register.csv",
           ["RECORD_ID", "PATIENT_ID", "ON_REGISTER_DATE", "CPR_DECISION", "CPR_DECISION_DATE", "CPR_REVIEW_DATE",
            "CPR_DECIDED_BY", "RESPECT_FORM", "RESPECT_CARE_PRIORITY", "PREFERRED_PLACE_OF_CARE",
            "PREFERRED_PLACE_OF_DEATH", "LPA_HEALTH_WELFARE", "LPA_NAME", "LPA_PHONE", "ADRT", "ADRT_DETAIL",
            "STATUS", "LAST_UPDATED"], [])
