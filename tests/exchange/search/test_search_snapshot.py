"""The paging snapshot bound (docs/search.md, "Paging"): the first page reads the highest
rid with its own query; when it reads no rows (``_count=0``, an empty page) the bound
still comes from the first page's transaction, so later pages never show resources
created after it."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import orjson
import pytest

from exchange.db.engine import read_tx, write_tx
from exchange.search import service


def _obs(oid: str, code: str) -> dict:
    return {"resourceType": "Observation", "id": oid, "status": "final",
            "code": {"coding": [{"system": "http://example.org", "code": code}]},
            "subject": {"reference": "Patient/p4"}}


def _follow(sx, url: str) -> dict:
    cursor = parse_qs(urlparse(url).query)["_getpages"][0]
    with read_tx(sx.engine) as conn:
        return orjson.loads(service.search_page(conn, sx.context(), sx.settings, cursor, sx.base))


def _link(bundle: dict, rel: str) -> str:
    return {link["relation"]: link["url"] for link in bundle["link"]}[rel]


@pytest.mark.parametrize("first", ["_count=0", "_summary=count", "_count=2"])
def test_first_link_excludes_resources_created_after_the_first_page(sx, first):
    code = "snap-" + first.replace("=", "-").replace("_", "")
    with write_tx(sx.engine) as conn:
        for i in range(3):
            sx.put(conn, _obs(f"{code}-{i}", code))
    page = sx.fetch("Observation", f"code=http://example.org|{code}&{first}&_total=accurate")
    assert page["total"] == 3
    with write_tx(sx.engine) as conn:
        sx.put(conn, _obs(f"{code}-late", code))
    page = _follow(sx, _link(page, "first"))
    assert page["total"] == 3  # counted under the first page's bound: the late one is not there
    seen = sx.ordered(page)
    while "next" in {link["relation"] for link in page["link"]}:
        page = _follow(sx, _link(page, "next"))
        seen += sx.ordered(page)
    assert seen == ([f"{code}-{i}" for i in range(3)] if first == "_count=2" else [])


def test_empty_first_page_still_binds_later_pages(sx):
    page = sx.fetch("Observation", "code=http://example.org|snap-empty&_count=5")
    assert sx.ordered(page) == []
    with write_tx(sx.engine) as conn:
        sx.put(conn, _obs("snap-empty-late", "snap-empty"))
    assert sx.ordered(_follow(sx, _link(page, "first"))) == []
    assert sx.find("Observation", "code=http://example.org|snap-empty") == {"snap-empty-late"}
