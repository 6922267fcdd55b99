"""persons.csv -> Patient (FHIR R4 patient.html; UK Core Patient conventions).

Field by field: docs/adapters/social-care.md, "persons.csv". An NHS number that fails
the Modulus 11 check is reported and left out: the person is still loaded with the
council's own identifier and goes through demographic matching (never a guess).
"""

from __future__ import annotations

from typing import Any

from adapters.base import MappingContext, MappingError
from adapters.csvkit.fields import NHS_NUMBER_SYSTEM, nhs_number, uk_date
from adapters.social_care import terms

GENDER = {"M": "male", "F": "female", "U": "unknown", "I": "other"}
ETHNIC_CATEGORY_URL = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-EthnicCategory"
ETHNIC_CATEGORY_SYSTEM = "https://fhir.hl7.org.uk/CodeSystem/UKCore-EthnicCategoryEngland"
ETHNIC_CODES = set("ABCDEFGHJKLMNPRSTWZ")


def nhs_identifier(cell: str, column: str, ctx: MappingContext) -> list[dict[str, Any]]:
    """The NHS number identifier, or none (with a warning) when the cell is not valid."""
    digits, problem = nhs_number(cell)
    if problem:
        ctx.warnings.append(f"{column}: {problem}; loaded without an NHS number")
    if not digits:
        return []
    return [{"system": NHS_NUMBER_SYSTEM, "value": digits}]


def map_person(row: dict[str, str], ctx: MappingContext) -> list[dict[str, Any]]:
    pid = row["PERSON_ID"]
    identifiers = nhs_identifier(row.get("NHS_NUMBER", ""), "NHS_NUMBER", ctx)
    identifiers.append(
        {"system": terms.local_system(ctx.source_system, "person-id"), "value": pid}
    )
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "id": pid,
        "meta": terms.meta(),
        "identifier": identifiers,
        "managingOrganization": terms.org_ref(ctx.source_system, terms.COUNCIL_NAME),
    }
    name: dict[str, Any] = {"use": "official"}
    if row.get("SURNAME"):
        name["family"] = row["SURNAME"]
    if row.get("FORENAME"):
        name["given"] = row["FORENAME"].split()
    if len(name) > 1:
        patient["name"] = [name]
    gender = row.get("GENDER", "").upper()
    if gender:
        if gender not in GENDER:
            raise MappingError(f"GENDER {row['GENDER']!r} is not M, F, U or I", "GENDER")
        patient["gender"] = GENDER[gender]
    birth = uk_date(row.get("DATE_OF_BIRTH", ""), "DATE_OF_BIRTH")
    if birth:
        patient["birthDate"] = birth
    death = uk_date(row.get("DATE_OF_DEATH", ""), "DATE_OF_DEATH")
    if death:
        patient["deceasedDateTime"] = death
    lines = [row[c] for c in ("ADDRESS_LINE_1", "ADDRESS_LINE_2") if row.get(c)]
    address: dict[str, Any] = {"use": "home"}
    if lines:
        address["line"] = lines
    if row.get("TOWN"):
        address["city"] = row["TOWN"]
    if row.get("POSTCODE"):
        address["postalCode"] = row["POSTCODE"].upper()
    if len(address) > 1:
        patient["address"] = [address]
    if row.get("PHONE"):
        patient["telecom"] = [{"system": "phone", "value": row["PHONE"], "use": "home"}]
    ethnicity = row.get("ETHNICITY", "").upper()
    if ethnicity:
        if ethnicity in ETHNIC_CODES:
            patient["extension"] = [
                {
                    "url": ETHNIC_CATEGORY_URL,
                    "valueCodeableConcept": {
                        "coding": [{"system": ETHNIC_CATEGORY_SYSTEM, "code": ethnicity}]
                    },
                }
            ]
        else:
            ctx.warnings.append(
                f"ETHNICITY {row['ETHNICITY']!r} is not an NHS ethnic category; not loaded"
            )
    return [patient]
