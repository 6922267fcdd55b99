"""The social care adapter's cell parsers: :mod:`adapters.csvkit.fields` (shared with the
community adapter). Kept as an import path for the social care mapping modules."""

from adapters.csvkit.fields import (
    LONDON,
    NHS_NUMBER_SYSTEM,
    ODS_SYSTEM,
    SNOMED,
    UCUM,
    decimal_value,
    fhir_number,
    iso_date,
    local_datetime,
    nhs_number,
    nhs_number_is_valid,
    snomed_id_is_valid,
    uk_date,
    yes_no,
)

__all__ = [
    "LONDON", "NHS_NUMBER_SYSTEM", "ODS_SYSTEM", "SNOMED", "UCUM", "decimal_value", "fhir_number", "iso_date",
    "local_datetime", "nhs_number", "nhs_number_is_valid", "snomed_id_is_valid", "uk_date", "yes_no",
]
