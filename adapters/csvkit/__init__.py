"""The CSV toolkit shared by adapters whose sources export CSV files (docs/adapters.md).

* :mod:`adapters.csvkit.reader`: stream a CSV extract (declared encoding, RFC 4180
  quoting) into rows with their place in the source, reporting each defective row as
  an :class:`adapters.base.RecordError` with its file and line.
* :mod:`adapters.csvkit.records`: find an extract's files; rows to source records,
  with repeated rows marked.
* :mod:`adapters.csvkit.fields`: parse cell values (UK and ISO dates, Europe/London
  local date-times, NHS numbers with the Modulus 11 check, SNOMED CT ids with the
  Verhoeff check, Y/N flags, decimals) into FHIR R4 primitive values.

Used by the social care and community adapters; a new CSV adapter imports from here.
"""

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
from adapters.csvkit.reader import CsvRow, read_csv
from adapters.csvkit.records import extract_records, locate_files, note_repeat, rows_with_repeats

__all__ = [
    "LONDON", "NHS_NUMBER_SYSTEM", "ODS_SYSTEM", "SNOMED", "UCUM", "CsvRow", "decimal_value", "extract_records",
    "fhir_number", "note_repeat",
    "iso_date", "local_datetime", "locate_files", "nhs_number", "nhs_number_is_valid", "read_csv",
    "rows_with_repeats", "snomed_id_is_valid", "uk_date", "yes_no",
]
