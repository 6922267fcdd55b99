"""Result parameters (search.html#return): _sort, _count and paging links, _total,
_summary, _elements, _include/_revinclude (:iterate, *), lenient handling, system and
compartment search."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest

from exchange.db.engine import read_tx
from exchange.outcome import FhirError
from exchange.search import service


def _links(bundle):
    return {link["relation"]: link["url"] for link in bundle["link"]}


def _page(sx, url, ctx=None):
    import orjson

    cursor = parse_qs(urlparse(url).query)["_getpages"][0]
    with read_tx(sx.engine) as conn:
        return orjson.loads(service.search_page(conn, ctx or sx.context(), sx.settings, cursor, sx.base))


def test_sort_keys_directions_and_ties(sx):
    assert sx.ordered(sx.fetch("Patient", "_sort=birthdate")) == ["p4", "p1", "p2", "p3"]
    assert sx.ordered(sx.fetch("Patient", "_sort=-birthdate")) == ["p3", "p4", "p2", "p1"]
    assert sx.ordered(sx.fetch("Patient", "_sort=family")) == ["p4", "p3", "p1", "p2"]
    assert sx.ordered(sx.fetch("Patient", "_sort=-_id")) == ["p4", "p3", "p2", "p1"]
    # ties on gender keep rid order; missing values sort first ascending
    assert sx.ordered(sx.fetch("Observation", "_sort=status,-date")) == ["o5", "o1", "o3", "o4", "o2"]


def test_paging_walks_forward_and_back(sx):
    first = sx.fetch("Observation", "_sort=date&_count=2")
    seen = sx.ordered(first)
    links = _links(first)
    assert "previous" not in links and links["self"].startswith(sx.base + "/Observation?")
    pages = [list(seen)]
    while "next" in links:
        page = _page(sx, links["next"])
        pages.append(sx.ordered(page))
        seen += sx.ordered(page)
        links = _links(page)
    assert seen == ["o4", "o3", "o1", "o2", "o5"]
    assert [len(p) for p in pages] == [2, 2, 1]
    back = _page(sx, links["previous"])
    assert sx.ordered(back) == pages[1]
    back2 = _page(sx, _links(back)["previous"])
    assert sx.ordered(back2) == pages[0] and "previous" not in _links(back2)
    assert sx.ordered(_page(sx, _links(back2)["next"])) == pages[1]
    assert sx.ordered(_page(sx, links["first"])) == pages[0]


def test_count_is_capped_and_total_modes(sx):
    big = sx.fetch("Patient", "_count=100000")
    assert len(sx.ordered(big)) == 4 and "total" not in big
    assert sx.fetch("Patient", "_total=accurate&gender=male")["total"] == 1
    assert sx.fetch("Patient", "_count=0&_totalMethod=count")["total"] == 4  # what fhirpy's count() sends
    counted = sx.fetch("Patient", "_summary=count")
    assert counted["total"] == 4 and "entry" not in counted
    with pytest.raises(FhirError):
        sx.fetch("Patient", "_count=abc")
    with pytest.raises(FhirError):
        sx.fetch("Patient", "_total=maybe")


def test_summary_and_elements_subset(sx):
    b = sx.fetch("Patient", "_id=p1&_elements=gender")
    res = b["entry"][0]["resource"]
    assert res["gender"] == "male" and "name" not in res and res["id"] == "p1"
    assert any(t["code"] == "SUBSETTED" for t in res["meta"]["tag"])
    s = sx.fetch("Patient", "_id=p1&_summary=true")["entry"][0]["resource"]
    assert "name" in s and "telecom" in s and "address" in s
    s = sx.fetch("Observation", "_id=o1&_summary=true")["entry"][0]["resource"]
    assert "valueQuantity" in s and "category" not in s  # category is not a summary element
    data = sx.fetch("Observation", "_id=o1&_summary=data")["entry"][0]["resource"]
    assert "category" in data


def test_include_and_revinclude(sx):
    b = sx.fetch("Observation", "_id=o1&_include=Observation:subject")
    assert sx.ids(b) == {"o1"} and sx.ids(b, "include") == {"p1"}
    b = sx.fetch("Observation", "_id=o1&_include=Observation:subject:Practitioner")
    assert sx.ids(b, "include") == set()
    b = sx.fetch("Observation", "_id=o1&_include=*")
    assert sx.ids(b, "include") == {"p1", "dr1", "e1"}
    b = sx.fetch("Observation", "_id=o1&_revinclude=Provenance:target")
    assert sx.ids(b, "include") == {"pv1"}
    b = sx.fetch("Provenance", "_id=pv1&_include=Provenance:target&_include:iterate=Observation:subject")
    assert sx.ids(b, "include") == {"o1", "p1"}
    b = sx.fetch("Patient", "_id=p1&_revinclude=Observation:subject&_revinclude:iterate=Provenance:target")
    assert sx.ids(b, "include") == {"o1", "o3", "pv1"}
    full = f"{sx.base}/Patient/p1"
    assert [e["fullUrl"] for e in b["entry"]][0] == full


def test_include_cap_reports_too_costly(sx):
    import orjson

    from exchange.db.engine import read_tx as rt

    settings = sx.settings.with_(max_include=1)
    with rt(sx.engine) as conn:
        body = service.search(conn, sx.context(), settings, resource_type="Patient",
                              params=[("_id", "p1"), ("_revinclude", "Observation:subject")], base_url=sx.base)
    b = orjson.loads(body)
    assert len(sx.ids(b, "include")) == 1
    outcome = [e for e in b["entry"] if e["search"]["mode"] == "outcome"]
    assert outcome and outcome[0]["resource"]["issue"][0]["code"] == "too-costly"


def test_unknown_parameter_strict_and_lenient(sx):
    with pytest.raises(FhirError) as err:
        sx.fetch("Patient", "gender=male&shoe-size=9")
    assert err.value.status == 400 and err.value.code == "not-supported"
    b = sx.fetch("Patient", "gender=male&shoe-size=9", lenient=True)
    assert sx.ids(b) == {"p1"}
    assert "shoe-size" not in _links(b)["self"] and "gender=male" in _links(b)["self"]
    outcome = [e for e in b["entry"] if e["search"]["mode"] == "outcome"][0]["resource"]
    assert outcome["issue"][0]["severity"] == "warning"
    with pytest.raises(FhirError):
        sx.fetch("Patient", "gender:below=male")


def test_system_and_compartment_search(sx):
    assert sx.find(None, "_type=Patient,Practitioner&name=wh") == {"dr1"}
    assert sx.find(None, "_type=Patient,Organization&_id=p1,org2") == {"p1", "org2"}
    assert sx.find(None, "_id=o1,e1") == {"o1", "e1"}
    assert sx.find("Observation", "", compartment=("Patient", "p1")) == {"o1", "o3"}
    assert sx.find("Observation", "code=8480-6", compartment=("Patient", "p1")) == {"o3"}
    assert sx.find("Condition", "", compartment=("Patient", "p2")) == {"c2"}
    assert sx.find("Encounter", "", compartment=("Patient", "p1")) == {"e1"}
    assert sx.find("Organization", "", compartment=("Patient", "p1")) == set()


def test_find_rids_for_conditional_interactions(sx):
    with read_tx(sx.engine) as conn:
        rids = service.find_rids(conn, sx.context(), "Patient",
                                 [("identifier", "https://fhir.nhs.uk/Id/nhs-number|9000000009")])
        assert len(rids) == 1
        assert len(service.find_rids(conn, sx.context(), "Patient", [("birthdate", "1970")])) == 3
        with pytest.raises(FhirError):
            service.find_rids(conn, sx.context(), "Patient", [("nope", "1")])
