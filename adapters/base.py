"""The small interface every source adapter implements.

An adapter does two things, both plain and unit-testable:

1. :meth:`SourceAdapter.read` turns the source (files, a directory, a stream) into
   :class:`SourceRecord` objects, each with a stable ``source_id`` and a
   :class:`SourceLocation` (file, line, message id) so any problem can be reported with
   its place in the source. A record that cannot even be parsed is yielded as a
   :class:`RecordError` instead; reading carries on.
2. :meth:`SourceAdapter.map` turns one record into FHIR R4 resources (plain dicts).
   Mapping must not touch the database: identity matching, deterministic ids,
   provenance, security labels, code translation and writing are the pipeline's job
   (``adapters.pipeline``).

Conventions for mapped resources
--------------------------------
* Each resource carries ``id`` = a *local* key unique within its record's source system
  and resource type (for example ``"LAS100200"`` or ``"LAS100200-alert-17"``). The
  pipeline turns (source system, local key, resource type) into the stored id, so a
  re-run of the same feed creates no new version.
* References between resources of the same feed use the local keys
  (``{"reference": "EpisodeOfCare/SRV55"}``); the pipeline rewrites them.
* A reference to the person is ``{"reference": "Patient/<local person key>"}``; the
  pipeline resolves that Patient to the shared identity (NHS number first) and rewrites
  the reference to the shared Patient's id.
* A mapping problem that should reject the record raises :class:`MappingError` with the
  element and reason; problems that lose nothing critical are added to
  ``ctx.warnings`` (they appear in the ingest report, never silently dropped).
* A reference of the form ``Type/@<id>`` names an already stored resource by its exact
  id (for example ``Organization/@ods-N82001``); the pipeline only strips the ``@``.

Signals besides resources (see docs/adapters.md, "Merges and retractions")
--------------------------------------------------------------------------
* ``ctx.request_merge(survivor=..., merged=...)``: the source merged two of its
  person records (HL7 v2 ADT^A40); both are *local person keys*. The pipeline links
  the shared Patients (``Patient.link`` replaces / replaced-by) and moves references.
* ``ctx.retract(resource_type, local_key)``: the source retracted a record (HL7 v2
  A11/A13 cancellations, a deleted row). It becomes ``entered-in-error`` where the
  resource type has that status, otherwise it is deleted; Provenance records it.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class SourceLocation:
    """Where a record came from: file, line (1-based) and/or message id."""

    file: str
    line: int | None = None
    message_id: str | None = None
    detail: str | None = None  # e.g. a segment or column name

    def __str__(self) -> str:
        parts = [self.file]
        if self.line is not None:
            parts.append(f"line {self.line}")
        if self.message_id:
            parts.append(f"message {self.message_id}")
        if self.detail:
            parts.append(self.detail)
        return ", ".join(parts)


@dataclass
class SourceRecord:
    """One record of the source, not yet mapped."""

    source_id: str  # stable id of the record in the source system
    kind: str  # e.g. "person", "alert", "ADT^A01"
    data: Any  # the parsed record (a dict of columns, an HL7 message, a JSON object)
    location: SourceLocation


@dataclass
class RecordError:
    """A record that could not be read or mapped, with its place in the source."""

    location: SourceLocation
    reason: str
    element: str | None = None
    source_id: str | None = None


class MappingError(Exception):
    """Raised by ``map`` when a record cannot be mapped; names the element and reason."""

    def __init__(self, reason: str, element: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.element = element


@dataclass(frozen=True)
class MergeRequest:
    """The source merged person ``merged`` into ``survivor`` (both local person keys)."""

    survivor: str
    merged: str


@dataclass(frozen=True)
class Retraction:
    """The source retracted the record mapped to (resource type, local key)."""

    resource_type: str
    local_key: str


@dataclass
class MappingContext:
    """What ``map`` may know besides the record itself (no database access)."""

    source_system: str  # e.g. an ODS code such as "N82001" or a system URI
    feed: str  # a name for this run's input (file or directory)
    warnings: list[str] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)  # shared across one run's records
    merges: list[MergeRequest] = field(default_factory=list)
    retractions: list[Retraction] = field(default_factory=list)

    def request_merge(self, *, survivor: str, merged: str) -> None:
        """Ask the pipeline to merge person ``merged`` into ``survivor`` (local keys)."""
        self.merges.append(MergeRequest(survivor=survivor, merged=merged))

    def retract(self, resource_type: str, local_key: str) -> None:
        """Ask the pipeline to retract a previously ingested record (local key)."""
        self.retractions.append(Retraction(resource_type=resource_type, local_key=local_key))


class SourceAdapter(abc.ABC):
    """Base class of every adapter; registered under the ``exchange.adapters`` entry point."""

    #: the entry point name, e.g. "social-care"
    name: str = ""
    #: the adapter's own version, recorded in Provenance
    version: str = "1"
    #: a one-line description for ``exchange adapters list``
    description: str = ""
    #: the source system identifier used when --source-system is not given
    default_source_system: str = ""
    #: what kind of source this is, for demographic authority when sources disagree:
    #: "gp" > "hospital" > "community" > "social-care" > anything else
    source_kind: str = ""
    #: True when every run delivers the whole extract: records absent from a complete
    #: run are treated as deleted in the source (see docs/adapters.md, "Deletions in full extracts")
    full_extract: bool = False
    #: ConceptMap JSON files (paths, or names relative to the adapter's module folder);
    #: by default every ``*.json`` in a ``concept_maps`` folder beside the module
    concept_maps: tuple[str, ...] = ()

    @abc.abstractmethod
    def read(self, paths: Sequence[Path]) -> Iterator[SourceRecord | RecordError]:
        """Yield the source's records in source order; stream, never load whole feeds."""

    @abc.abstractmethod
    def map(self, record: SourceRecord, ctx: MappingContext) -> list[dict[str, Any]]:
        """Map one record to FHIR R4 resources (see the module docstring's conventions)."""

    def concept_map_paths(self) -> list[Path]:
        """The ConceptMap files the pipeline translates this adapter's codes through."""
        import inspect

        here = Path(inspect.getfile(type(self))).resolve().parent
        if self.concept_maps:
            return [p if p.is_absolute() else here / p for p in map(Path, self.concept_maps)]
        folder = here / "concept_maps"
        return sorted(folder.glob("*.json")) if folder.is_dir() else []

    def deleted_ids(self, seen: set[str], ctx: MappingContext) -> Iterator[tuple[str, str]]:
        """For full extracts: (resource type, local key) of records no longer present.

        The default says nothing is deleted. Adapters whose source sends full extracts
        (a row absent today was deleted) override this; the pipeline compares with what
        the previous run of the same source system stored.
        """
        return iter(())
