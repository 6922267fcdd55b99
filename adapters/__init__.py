"""Source-system adapters: turn what each source system exports into FHIR R4.

The public interface an integrator writes against lives in :mod:`adapters.base`; the
pipeline every record goes through (validation, identity, ids, references, labels,
code mapping, provenance, batched transactional writes) in :mod:`adapters.pipeline`.
See docs/adapters.md.
"""

from adapters.base import (
    MappingContext,
    MappingError,
    MergeRequest,
    RecordError,
    Retraction,
    SourceAdapter,
    SourceLocation,
    SourceRecord,
)

__all__ = [
    "MappingContext",
    "MappingError",
    "MergeRequest",
    "RecordError",
    "Retraction",
    "SourceAdapter",
    "SourceLocation",
    "SourceRecord",
]
