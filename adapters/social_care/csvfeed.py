"""The social care adapter's CSV reader: :mod:`adapters.csvkit.reader` (shared with the
community adapter). Kept as an import path for the social care mapping modules."""

from adapters.csvkit.reader import CsvRow, read_csv

__all__ = ["CsvRow", "read_csv"]
