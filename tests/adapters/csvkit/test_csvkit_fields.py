"""adapters.csvkit.fields: cell values to FHIR R4 primitives, malformed values named by column."""

from __future__ import annotations

from decimal import Decimal

import pytest

from adapters.base import MappingError
from adapters.csvkit import (
    decimal_value,
    fhir_number,
    iso_date,
    local_datetime,
    nhs_number,
    snomed_id_is_valid,
    uk_date,
    yes_no,
)


def test_dates() -> None:
    assert uk_date("1/9/2026", "D") == "2026-09-01" and uk_date("", "D") is None
    assert iso_date("2026-02-28", "D") == "2026-02-28"
    with pytest.raises(MappingError) as exc:
        uk_date("31/09/2026", "START_DATE")
    assert exc.value.element == "START_DATE" and "not a real date" in exc.value.reason
    with pytest.raises(MappingError):
        iso_date("28/02/2026", "D")


def test_local_date_times_get_the_london_offset_and_clock_changes_warn() -> None:
    assert local_datetime("2026-01-10 09:30", "T") == "2026-01-10T09:30:00+00:00"
    assert local_datetime("2026-07-10T09:30:00", "T") == "2026-07-10T09:30:00+01:00"
    warnings: list[str] = []
    assert local_datetime("2026-03-29 01:30", "T", warnings) == "2026-03-29T01:30:00+00:00"
    local_datetime("2026-10-25 01:30", "T", warnings)
    assert "does not exist" in warnings[0] and "ambiguous" in warnings[1]


def test_nhs_numbers() -> None:
    assert nhs_number("999 000 0425") == ("9990000425", None)
    assert nhs_number("") == (None, None)
    assert nhs_number("9990000426")[1] == "NHS number '9990000426' fails the Modulus 11 check digit"
    assert "not 10 digits" in (nhs_number("12345")[1] or "")


def test_snomed_ids_yes_no_and_numbers() -> None:
    assert snomed_id_is_valid("450476008") and snomed_id_is_valid("304253006")
    assert not snomed_id_is_valid("450476009") and not snomed_id_is_valid("450476018")
    assert (yes_no("y", "C"), yes_no("No", "C"), yes_no("", "C")) == (True, False, None)
    with pytest.raises(MappingError):
        yes_no("maybe", "C")
    assert decimal_value("10.50", "V") == Decimal("10.50") and fhir_number(Decimal("10.50")) == 10.5
    assert fhir_number(Decimal("12.0")) == 12
    with pytest.raises(MappingError):
        decimal_value("NaN", "V")
