"""The community services adapter (``community``): the community health system's weekly extract.

Input as described in /work/shared/samples/community/README.md and
docs/adapters/community.md: six CSV files (patients, referrals, contacts, activities,
observations, eol_register), UTF-8, LF, ISO dates, local Europe/London times without
offset. Issue 9, "Community services".

Activities and observations name only their contact: ``read`` first indexes
contacts.csv (id -> patient, time, referral; a few strings per contact) so that each
activity or observation record carries its patient and time. A row repeated in the
extract is mapped again to the same resources and reported as information.

The weekly extract is not documented as complete (``full_extract`` is False): a row
missing from one week's files is not taken as a deletion. A decision that was cancelled
stays in the extract with STATUS Cancelled and is loaded as such.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from adapters.base import MappingContext, RecordError, SourceAdapter, SourceRecord
from adapters.community import map_care, map_eol, terms
from adapters.csvkit.reader import CsvRow, read_csv
from adapters.csvkit.records import extract_records, locate_files, note_repeat

ENCODING = "utf-8"

Mapper = Callable[[dict[str, str], MappingContext], list[dict[str, Any]]]

#: file -> (record kind, key column, expected columns, mapper), in reading order
FILES: dict[str, tuple[str, str, tuple[str, ...], Mapper]] = {
    "patients.csv": (
        "patient",
        "PATIENT_ID",
        ("PATIENT_ID", "NHS_NUMBER", "SURNAME", "FORENAMES", "DOB", "SEX", "POSTCODE",
         "GP_PRACTICE_CODE"),
        map_care.map_patient,
    ),
    "referrals.csv": (
        "referral",
        "REFERRAL_ID",
        ("REFERRAL_ID", "PATIENT_ID", "SERVICE", "REFERRAL_SOURCE", "RECEIVED_DATE", "PRIORITY",
         "STATUS", "DISCHARGED_DATE"),
        map_care.map_referral,
    ),
    "contacts.csv": (
        "contact",
        "CONTACT_ID",
        ("CONTACT_ID", "REFERRAL_ID", "PATIENT_ID", "CONTACT_DATETIME", "LOCATION",
         "CLINICIAN_NAME", "CLINICIAN_ROLE", "OUTCOME", "ATTENDED"),
        map_care.map_contact,
    ),
    "activities.csv": (
        "activity",
        "ACTIVITY_ID",
        ("ACTIVITY_ID", "CONTACT_ID", "SNOMED_CODE", "DESCRIPTION"),
        map_care.map_activity,
    ),
    "observations.csv": (
        "observation",
        "OBSERVATION_ID",
        ("OBSERVATION_ID", "CONTACT_ID", "CODE_SYSTEM", "CODE", "DESCRIPTION", "VALUE", "UNIT"),
        map_care.map_observation,
    ),
    "eol_register.csv": (
        "eol-register",
        "RECORD_ID",
        ("RECORD_ID", "PATIENT_ID", "ON_REGISTER_DATE", "CPR_DECISION", "CPR_DECISION_DATE",
         "CPR_REVIEW_DATE", "CPR_DECIDED_BY", "RESPECT_FORM", "RESPECT_CARE_PRIORITY",
         "PREFERRED_PLACE_OF_CARE", "PREFERRED_PLACE_OF_DEATH", "LPA_HEALTH_WELFARE",
         "LPA_NAME", "LPA_PHONE", "ADRT", "ADRT_DETAIL", "STATUS", "LAST_UPDATED"),
        map_eol.map_register,
    ),
}
MAPPERS: dict[str, Mapper] = {kind: mapper for kind, _, _, mapper in FILES.values()}
CONTACT_INDEX_COLUMNS = ("PATIENT_ID", "CONTACT_DATETIME", "REFERRAL_ID")


def index_contacts(path: Path | None) -> dict[str, dict[str, str]]:
    """CONTACT_ID -> the few cells activities and observations need (defects skipped here;
    they are reported when contacts.csv itself is read)."""
    if path is None:
        return {}
    index: dict[str, dict[str, str]] = {}
    for row in read_csv(path, encoding=ENCODING, expected=FILES["contacts.csv"][2]):
        if isinstance(row, CsvRow) and row.cells.get("CONTACT_ID") and row.cells.get("PATIENT_ID"):
            index[row.cells["CONTACT_ID"]] = {c: row.cells.get(c, "") for c in CONTACT_INDEX_COLUMNS}
    return index


class CommunityAdapter(SourceAdapter):
    """Community health system weekly CSV extract, with the EPaCCS register."""

    name = "community"
    version = "1"
    description = "Community health services weekly CSV extract with the EPaCCS register"
    default_source_system = terms.TRUST_ODS
    source_kind = "community"
    full_extract = False
    concept_maps = ("../conceptmaps/community-observations.json",)

    def read(self, paths: Sequence[Path]) -> Iterator[SourceRecord | RecordError]:
        contacts = index_contacts(locate_files(paths, ["contacts.csv"])["contacts.csv"])
        for kind, item in extract_records(paths, FILES, encoding=ENCODING):
            if isinstance(item, SourceRecord) and kind in ("activity", "observation"):
                contact = contacts.get(item.data.get("CONTACT_ID", ""))
                if contact:
                    item.data["_contact"] = contact
            yield item

    def map(self, record: SourceRecord, ctx: MappingContext) -> list[dict[str, Any]]:
        note_repeat(record, ctx)
        return MAPPERS[record.kind](record.data, ctx)  # the pipeline copies before rewriting
