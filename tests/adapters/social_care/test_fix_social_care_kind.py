"""Social care and community codings use the canonical care-preference-kind system (issue 6, 9).

The kind CodeSystem's canonical URL is ``systems.kind`` of
exchange/operations/eol_codes.yaml; the earlier spelling is only a recognised alias
and must never be emitted.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from adapters.base import MappingContext, SourceAdapter, SourceRecord
from adapters.community import CommunityAdapter
from adapters.social_care import SocialCareAdapter, terms
from exchange.operations.eol_classify import classify
from exchange.operations.eol_codes import codebook

ROOT = Path(__file__).resolve().parents[3] / "adapters"


def mapped(adapter: SourceAdapter, samples: Path) -> Iterator[dict[str, Any]]:
    ctx = MappingContext(source_system=adapter.default_source_system, feed="test")
    for item in adapter.read([samples]):
        if isinstance(item, SourceRecord):
            yield from adapter.map(item, ctx)


def kind_codings(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if "care-preference-kind" in str(node.get("system", "")):
            yield node
        for v in node.values():
            yield from kind_codings(v)
    elif isinstance(node, list):
        for v in node:
            yield from kind_codings(v)


def test_kind_is_the_code_list_canonical_url() -> None:
    assert codebook().kind_system == terms.KIND


def test_both_csv_adapters_emit_only_the_canonical_kind_system() -> None:
    canonical = codebook().kind_system
    for adapter, samples in ((SocialCareAdapter(), ROOT / "social_care" / "samples"),
                             (CommunityAdapter(), ROOT / "community" / "samples")):
        resources = list(mapped(adapter, samples))
        codings = [c for r in resources for c in kind_codings(r)]
        assert codings, adapter.name
        assert {c["system"] for c in codings} == {canonical}, adapter.name
        coded = [r for r in resources if any(True for _ in kind_codings(r.get("code")))]
        assert coded and all(classify(r) is not None for r in coded), adapter.name
