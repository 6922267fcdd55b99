"""Parsing the cell values of CSV extracts into FHIR R4 primitive values.

Each parser raises :class:`adapters.base.MappingError` naming the column when a value
is present but malformed (the record is then reported with its place and not
loaded); an empty cell means "not recorded" and parses to ``None``.

* Dates: ``dd/mm/yyyy`` (social care) or ISO ``yyyy-mm-dd`` (community), FHIR ``date``.
* Local date-times without offset (Europe/London) become FHIR ``dateTime`` with the
  offset in force at that moment (GMT +00:00 or BST +01:00). A time that does not
  exist (the spring-forward hour) or is ambiguous (the autumn fall-back hour) is
  resolved to the earlier offset and a warning says so.
* NHS numbers: spaces removed, 10 digits, Modulus 11 check digit (NHS Data Dictionary,
  "NHS Number"). Identifier system ``https://fhir.nhs.uk/Id/nhs-number``.
* SNOMED CT concept ids: 6-18 digits, partition 00 or 10, Verhoeff check digit
  (SNOMED CT Technical Implementation Guide, 6.7 "Check-digit").
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from adapters.base import MappingError

LONDON = ZoneInfo("Europe/London")
NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"

_UK_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")
_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


def uk_date(value: str, column: str) -> str | None:
    """``dd/mm/yyyy`` -> ``yyyy-mm-dd``; empty -> None."""
    if not value:
        return None
    m = _UK_DATE.match(value)
    if not m:
        raise MappingError(f"{column} {value!r} is not a dd/mm/yyyy date", column)
    try:
        return date(int(m[3]), int(m[2]), int(m[1])).isoformat()
    except ValueError as exc:
        raise MappingError(f"{column} {value!r} is not a real date ({exc})", column) from exc


def iso_date(value: str, column: str) -> str | None:
    """``yyyy-mm-dd`` checked for being a real date; empty -> None."""
    if not value:
        return None
    m = _ISO_DATE.match(value)
    if not m:
        raise MappingError(f"{column} {value!r} is not a yyyy-mm-dd date", column)
    try:
        return date(int(m[1]), int(m[2]), int(m[3])).isoformat()
    except ValueError as exc:
        raise MappingError(f"{column} {value!r} is not a real date ({exc})", column) from exc


def local_datetime(value: str, column: str, warnings: list[str] | None = None) -> str | None:
    """A local (Europe/London) date-time without offset -> FHIR dateTime with offset.

    Accepts ``yyyy-mm-ddThh:mm[:ss]`` and ``yyyy-mm-dd hh:mm[:ss]``.
    """
    if not value:
        return None
    try:
        naive = datetime.fromisoformat(value.replace(" ", "T"))
    except ValueError as exc:
        raise MappingError(f"{column} {value!r} is not a date-time", column) from exc
    if naive.tzinfo is not None:
        return naive.isoformat()
    first = naive.replace(tzinfo=LONDON, fold=0)
    second = naive.replace(tzinfo=LONDON, fold=1)
    roundtrip = first.astimezone(ZoneInfo("UTC")).astimezone(LONDON).replace(tzinfo=None)
    if warnings is not None and roundtrip != naive:
        warnings.append(
            f"{column} {value!r} does not exist in Europe/London (clock change); "
            "read with the offset before the change"
        )
    elif warnings is not None and first.utcoffset() != second.utcoffset():
        warnings.append(f"{column} {value!r} is ambiguous in Europe/London; read as the earlier")
    return first.isoformat(timespec="seconds")


def nhs_number_is_valid(digits: str) -> bool:
    """Modulus 11 check of a 10-digit NHS number."""
    if len(digits) != 10 or not digits.isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(digits[:9], range(10, 1, -1), strict=True))
    check = 11 - total % 11
    if check == 11:
        check = 0
    return check != 10 and check == int(digits[9])


def nhs_number(value: str) -> tuple[str | None, str | None]:
    """Normalise an NHS number cell: (digits, None) if valid, (None, problem) if not.

    Blank -> (None, None). Spaces and hyphens (``999 000 0425``) are removed.
    """
    if not value:
        return None, None
    digits = re.sub(r"[\s-]", "", value)
    if len(digits) != 10 or not digits.isdigit():
        return None, f"NHS number {value!r} is not 10 digits"
    if not nhs_number_is_valid(digits):
        return None, f"NHS number {value!r} fails the Modulus 11 check digit"
    return digits, None


def yes_no(value: str, column: str) -> bool | None:
    """``Y``/``N`` (any case) -> bool; empty -> None."""
    if not value:
        return None
    v = value.strip().upper()
    if v in {"Y", "YES"}:
        return True
    if v in {"N", "NO"}:
        return False
    raise MappingError(f"{column} {value!r} is not Y or N", column)


def decimal_value(value: str, column: str) -> Decimal | None:
    """A decimal number cell; empty -> None."""
    if not value:
        return None
    try:
        number = Decimal(value)
    except InvalidOperation as exc:
        raise MappingError(f"{column} {value!r} is not a number", column) from exc
    if not number.is_finite():
        raise MappingError(f"{column} {value!r} is not a number", column)
    return number


def fhir_number(number: Decimal) -> int | float:
    """A Decimal as a JSON number (int when integral, keeping 10.5 as 10.5)."""
    return int(number) if number == number.to_integral_value() else float(number)


# Verhoeff dihedral-group tables (SNOMED CT check digit).
_D = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
    [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
    [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
    [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
    [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
    [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
    [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
]
_P = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
    [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
    [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
    [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
    [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
    [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
    [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
]


def snomed_id_is_valid(code: str) -> bool:
    """Structure check of a SNOMED CT concept id: digits, length, partition, Verhoeff."""
    if not code.isdigit() or not 6 <= len(code) <= 18 or code.startswith("0"):
        return False
    if code[-3:-1] not in {"00", "10"}:  # concept partition (short or extension namespace)
        return False
    c = 0
    for i, ch in enumerate(reversed(code)):
        c = _D[c][_P[i % 8][int(ch)]]
    return c == 0
