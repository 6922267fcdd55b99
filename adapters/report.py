"""The ingest report: counts, every problem with its place in the source, and a progress bar.

The JSON form (``exchange ingest --report FILE``) is documented in docs/adapters.md,
"Reference: the report file". Counts are of *source records* (read, rejected,
unmatched) and of *resources* (created, updated, unchanged, deleted).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from adapters.base import SourceLocation

COUNT_NAMES = ("read", "created", "updated", "unchanged", "deleted", "rejected", "unmatched")


@dataclass
class Problem:
    severity: str  # error (record rejected) | warning (record kept, something reported)
    kind: str  # read | mapping | validation | reference | identity | codemap | write
    reason: str
    location: SourceLocation | None = None
    element: str | None = None
    source_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"severity": self.severity, "kind": self.kind, "reason": self.reason}
        if self.location is not None:
            out["location"] = {k: v for k, v in asdict(self.location).items() if v is not None}
            out["where"] = str(self.location)
        if self.element:
            out["element"] = self.element
        if self.source_id:
            out["source_id"] = self.source_id
        return out


@dataclass
class IngestReport:
    adapter: str
    source_system: str
    feed: str
    dry_run: bool = False
    run_id: str | None = None
    status: str = "running"  # running | complete | failed
    read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    rejected: int = 0
    unmatched: int = 0
    batches_written: int = 0
    provenance_written: int = 0
    seconds: float = 0.0
    problems: list[Problem] = field(default_factory=list)

    @property
    def resources(self) -> int:
        return self.created + self.updated + self.unchanged + self.deleted

    def counts(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COUNT_NAMES}

    def problem(self, severity: str, kind: str, reason: str, *, location: SourceLocation | None = None,
                element: str | None = None, source_id: str | None = None) -> None:
        self.problems.append(Problem(severity, kind, reason, location, element, source_id))

    def to_dict(self) -> dict[str, Any]:
        return {
            "adapter": self.adapter,
            "sourceSystem": self.source_system,
            "feed": self.feed,
            "dryRun": self.dry_run,
            "runId": self.run_id,
            "status": self.status,
            "counts": self.counts(),
            "resources": self.resources,
            "batchesWritten": self.batches_written,
            "provenanceWritten": self.provenance_written,
            "seconds": round(self.seconds, 3),
            "resourcesPerSecond": round(self.resources / self.seconds, 1) if self.seconds else None,
            "problems": [p.to_dict() for p in self.problems],
        }

    def write(self, path: Path) -> None:
        Path(path).write_bytes(orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2))

    def summary(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in self.counts().items())
        mode = " (dry run: nothing written)" if self.dry_run else ""
        return f"{self.adapter} [{self.source_system}] {self.status}: {counts}{mode}"


ProgressCallback = Callable[[IngestReport], None]


class ProgressBar:
    """A one-line terminal progress display with the running counts (no dependencies)."""

    def __init__(self, stream: IO[str] | None = None, total: int | None = None, width: int = 24) -> None:
        self.stream = stream or sys.stderr
        self.total = total
        self.width = width
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last = ""

    def __call__(self, report: IngestReport) -> None:
        line = self.render(report)
        if self.tty:
            self.stream.write("\r" + line.ljust(len(self._last)))
            self.stream.flush()
        elif line != self._last:
            self.stream.write(line + "\n")
        self._last = line

    def render(self, report: IngestReport) -> str:
        spin = "|/-\\"[report.batches_written % 4]
        if self.total:
            done = min(report.read, self.total)
            filled = int(self.width * done / self.total)
            bar = "[" + "#" * filled + "." * (self.width - filled) + f"] {done}/{self.total}"
        else:
            bar = f"[{spin}]"
        counts = " ".join(f"{k}={v}" for k, v in report.counts().items())
        return f"{bar} {counts}"

    def close(self) -> None:
        if self.tty and self._last:
            self.stream.write("\n")
            self.stream.flush()
