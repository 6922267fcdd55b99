"""Damaged messages never crash parsing or mapping: they map or are rejected clearly."""

from __future__ import annotations

import random
from pathlib import Path

from adapters.base import MappingContext, MappingError, RecordError
from adapters.hl7v2.adapter import Hl7v2Adapter, decode, record_from_text
from adapters.hl7v2.parser import RawMessage, split_messages

ROOT = Path(__file__).resolve().parents[3]
SOURCES = [ROOT / "adapters" / "hl7v2" / "samples", Path("/work/shared/samples/hl7v2")]


def _messages() -> list[str]:
    texts = []
    for folder in SOURCES:
        for f in sorted(folder.glob("*.hl7")) if folder.is_dir() else []:
            texts += [m.text for m in split_messages(decode(f.read_bytes()))
                      if isinstance(m, RawMessage)]
    return texts


def test_damaged_messages_are_mapped_or_rejected_never_crash() -> None:
    texts = _messages()
    rnd = random.Random(20261130)
    alphabet = "|^~\\&\r#AZ09 .-+"
    outcomes = {"unparseable": 0, "rejected": 0, "mapped": 0}
    for _ in range(2000):
        t = rnd.choice(texts)
        cut = rnd.randrange(len(t))
        op = rnd.random()
        if op < 0.3:
            t = t[:cut]
        elif op < 0.7:
            chars = list(t)
            for _ in range(rnd.randint(1, 8)):
                chars[rnd.randrange(len(chars))] = rnd.choice(alphabet)
            t = "".join(chars)
        else:
            t = t[:cut] + t[rnd.randrange(len(t)):]
        rec = record_from_text(t, "fuzz.hl7")
        if isinstance(rec, RecordError):
            assert rec.reason and rec.location.file == "fuzz.hl7"
            outcomes["unparseable"] += 1
            continue
        try:
            Hl7v2Adapter().map(rec, MappingContext("REM", "fuzz"))
            outcomes["mapped"] += 1
        except MappingError as exc:
            assert exc.reason
            outcomes["rejected"] += 1
    assert all(outcomes.values()), outcomes
