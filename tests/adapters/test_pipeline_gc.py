"""The ingest runs the cyclic garbage collector less often and always restores it."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from adapters import pipeline
from adapters.pipeline import INGEST_GC_THRESHOLD, _fewer_collections, ingest
from adapters.registry import load

SAMPLES = Path(__file__).resolve().parents[2] / "adapters" / "community" / "samples"


def test_threshold_raised_during_an_ingest_and_restored_after(engine, settings) -> None:  # noqa: ANN001
    before = gc.get_threshold()
    seen: list[int] = []
    report = ingest(engine, settings, load("community"), [SAMPLES], progress=lambda r: seen.append(gc.get_threshold()[0]))
    assert report.created > 0
    assert seen and all(t >= INGEST_GC_THRESHOLD for t in seen)
    assert gc.get_threshold() == before


def test_restored_after_a_failure_and_after_nested_runs() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), _fewer_collections():
        with _fewer_collections():
            assert gc.get_threshold()[0] >= INGEST_GC_THRESHOLD
        assert gc.get_threshold()[0] >= INGEST_GC_THRESHOLD  # the outer run still going
        raise RuntimeError("adapter failed")
    assert gc.get_threshold() == before
    assert pipeline._gc_runs == 0


def test_a_higher_threshold_already_set_is_kept() -> None:
    before = gc.get_threshold()
    gc.set_threshold(INGEST_GC_THRESHOLD * 2, *before[1:])
    try:
        with _fewer_collections():
            assert gc.get_threshold()[0] == INGEST_GC_THRESHOLD * 2
    finally:
        gc.set_threshold(*before)
