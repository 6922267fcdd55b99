"""The adult social care adapter (``social-care``): the council's nightly CSV extract.

Input as described in /work/shared/samples/social-care/README.md and
docs/adapters/social-care.md: seven CSV files (persons, services, assessments,
workers, allocations, alerts, contacts), Windows-1252, CRLF, header row, a full
extract every night (a row absent today was deleted in the source: ``full_extract``,
the pipeline turns absences into deletions). Issue 9, "Adult social care".

``read`` takes the extract's directory (or the files themselves), yields workers
first (allocations and assessments name their worker and team), then persons, then
the rest. A row repeated by the report tool is mapped once more to the same resources
(so nothing changes) and reported as information; a repeated id with different cells
is reported as a warning and the later row wins.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from adapters.base import MappingContext, RecordError, SourceAdapter, SourceRecord
from adapters.csvkit.records import extract_records, note_repeat
from adapters.social_care import map_people, map_person, map_services, terms

ENCODING = "cp1252"

Mapper = Callable[[dict[str, str], MappingContext], list[dict[str, Any]]]

#: file -> (record kind, key column, expected columns, mapper), in reading order
FILES: dict[str, tuple[str, str, tuple[str, ...], Mapper]] = {
    "workers.csv": (
        "worker",
        "WORKER_ID",
        ("WORKER_ID", "NAME", "ROLE", "TEAM", "TEAM_EMAIL", "PHONE"),
        map_people.map_worker,
    ),
    "persons.csv": (
        "person",
        "PERSON_ID",
        (
            "PERSON_ID", "NHS_NUMBER", "FORENAME", "SURNAME", "DATE_OF_BIRTH", "GENDER",
            "ADDRESS_LINE_1", "ADDRESS_LINE_2", "TOWN", "POSTCODE", "PHONE", "ETHNICITY",
            "DATE_OF_DEATH", "LAST_UPDATED",
        ),
        map_person.map_person,
    ),
    "services.csv": (
        "service",
        "SERVICE_ID",
        (
            "SERVICE_ID", "PERSON_ID", "SERVICE_TYPE", "CLD_SERVICE_TYPE", "PROVIDER_NAME",
            "PROVIDER_CQC_ID", "START_DATE", "END_DATE", "PLANNED_HOURS_PER_WEEK", "STATUS",
            "LAST_UPDATED",
        ),
        map_services.map_service,
    ),
    "assessments.csv": (
        "assessment",
        "ASSESSMENT_ID",
        (
            "ASSESSMENT_ID", "PERSON_ID", "ASSESSMENT_TYPE", "START_DATE", "COMPLETED_DATE",
            "OUTCOME", "WORKER_ID", "LAST_UPDATED",
        ),
        map_services.map_assessment,
    ),
    "allocations.csv": (
        "allocation",
        "ALLOCATION_ID",
        ("ALLOCATION_ID", "PERSON_ID", "WORKER_ID", "START_DATE", "END_DATE"),
        map_people.map_allocation,
    ),
    "alerts.csv": (
        "alert",
        "ALERT_ID",
        ("ALERT_ID", "PERSON_ID", "ALERT_TYPE", "DETAIL", "START_DATE", "END_DATE", "CONFIDENTIAL"),
        map_people.map_alert,
    ),
    "contacts.csv": (
        "contact",
        "CONTACT_ID",
        (
            "CONTACT_ID", "PERSON_ID", "RELATIONSHIP", "NAME", "PHONE", "IS_CARER", "LPA_TYPE",
            "LAST_UPDATED",
        ),
        map_people.map_contact,
    ),
}
MAPPERS: dict[str, Mapper] = {kind: mapper for kind, _, _, mapper in FILES.values()}


class SocialCareAdapter(SourceAdapter):
    """Adult social care case-management export (seven CSV files, nightly full extract)."""

    name = "social-care"
    version = "1"
    description = "Adult social care case-management nightly CSV extract (Windows-1252)"
    default_source_system = terms.COUNCIL_ODS
    source_kind = "social-care"
    full_extract = True

    def read(self, paths: Sequence[Path]) -> Iterator[SourceRecord | RecordError]:
        workers: dict[str, dict[str, str]] = {}
        for kind, item in extract_records(paths, FILES, encoding=ENCODING):
            if isinstance(item, SourceRecord):
                if kind == "worker":
                    workers[item.data["WORKER_ID"]] = {
                        k: item.data.get(k, "") for k in ("NAME", "TEAM", "TEAM_EMAIL")
                    }
                elif item.data.get("WORKER_ID") in workers:
                    item.data["_worker"] = workers[item.data["WORKER_ID"]]
            yield item

    def map(self, record: SourceRecord, ctx: MappingContext) -> list[dict[str, Any]]:
        note_repeat(record, ctx)
        return MAPPERS[record.kind](record.data, ctx)  # the pipeline copies before rewriting
