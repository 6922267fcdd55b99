"""The ingest report and the terminal progress bar (adapters.report)."""

from __future__ import annotations

import io
import json

from adapters.base import SourceLocation
from adapters.report import IngestReport, ProgressBar


def sample_report() -> IngestReport:
    r = IngestReport(adapter="tiny", source_system="SYS", feed="a.csv", run_id="r1")
    r.read, r.created, r.updated, r.unchanged, r.rejected, r.unmatched = 10, 4, 2, 3, 1, 1
    r.seconds = 2.0
    r.problem("error", "validation", "bad date", location=SourceLocation("a.csv", 7, detail="DOB"),
              element="Patient.birthDate", source_id="P7")
    r.problem("warning", "codemap", "unmapped code urn:x|Q")
    return r


def test_report_json_lists_every_problem_with_location(tmp_path):
    path = tmp_path / "report.json"
    sample_report().write(path)
    data = json.loads(path.read_text())
    assert data["counts"] == {"read": 10, "created": 4, "updated": 2, "unchanged": 3, "deleted": 0,
                              "rejected": 1, "unmatched": 1}
    assert data["resources"] == 9 and data["resourcesPerSecond"] == 4.5
    err, warn = data["problems"]
    assert err == {"severity": "error", "kind": "validation", "reason": "bad date",
                   "location": {"file": "a.csv", "line": 7, "detail": "DOB"}, "where": "a.csv, line 7, DOB",
                   "element": "Patient.birthDate", "source_id": "P7"}
    assert warn == {"severity": "warning", "kind": "codemap", "reason": "unmapped code urn:x|Q"}


def test_progress_bar_shows_counts_on_a_pipe_and_redraws_on_a_tty():
    pipe = io.StringIO()
    bar = ProgressBar(stream=pipe)
    bar(sample_report())
    bar(sample_report())  # unchanged line: not repeated
    assert pipe.getvalue().count("\n") == 1
    line = pipe.getvalue().strip()
    for part in ("read=10", "created=4", "updated=2", "unchanged=3", "rejected=1", "unmatched=1"):
        assert part in line

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    bar = ProgressBar(stream=tty, total=20)
    bar(sample_report())
    bar.close()
    assert tty.getvalue().startswith("\r[############............] 10/20")
    assert tty.getvalue().endswith("\n")


def test_summary_mentions_dry_run():
    r = sample_report()
    r.dry_run, r.status = True, "complete"
    assert r.summary().startswith("tiny [SYS] complete: read 10") and "dry run" in r.summary()
