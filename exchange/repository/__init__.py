"""Storage of FHIR resources: immutable versions, current pointers, history."""

from exchange.repository.stored import StoredResource

__all__ = ["StoredResource"]
