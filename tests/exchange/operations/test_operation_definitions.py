"""The exchange's own OperationDefinitions are resolvable (gaps-6 #7): every operation
the CapabilityStatement names by a canonical URL under the exchange's base has a
definition served read-only by :func:`exchange.operations.definitions.read_definition`
(``GET [base]/OperationDefinition/{id}``), valid R4, and agreeing with the route table."""

from __future__ import annotations

import orjson
import pytest
from fhir.resources.R4B.operationdefinition import OperationDefinition

from exchange.interactions.types import FhirRequest
from exchange.operations.definitions import OWN_DEFINITIONS, definition, read_definition, served_url
from exchange.operations.eol_document import CANONICAL_BASE
from exchange.operations.registry import OPERATIONS, available
from exchange.outcome import NotFound
from exchange.pipeline.context import RequestContext, Requester

HL7 = "http://hl7.org/fhir/OperationDefinition/"


def _get(def_id: str):  # noqa: ANN202
    ctx = RequestContext(requester=Requester(kind="anonymous"))
    ctx.resource_type, ctx.resource_id = "OperationDefinition", def_id
    return read_definition(None, ctx, FhirRequest(method="GET", parts=["OperationDefinition", def_id]), None)  # type: ignore[arg-type]


@pytest.mark.parametrize("op", OPERATIONS, ids=lambda o: o.name)
def test_every_advertised_operation_definition_resolves(op) -> None:  # noqa: ANN001
    if op.definition.startswith(HL7):
        return  # HL7's own definitions resolve at hl7.org
    assert op.definition.startswith(f"{CANONICAL_BASE}/OperationDefinition/")
    def_id = served_url(op.definition)
    assert def_id is not None, op.definition
    od = definition(def_id)
    assert od["url"] == op.definition and od["id"] == def_id
    assert od["code"] == op.name and od["resource"] == [op.resource_type]
    assert od["instance"] is op.instance and od["type"] is op.type_level and od["system"] is False
    assert od["affectsState"] is op.affects_state
    r = _get(def_id)
    assert r.status == 200 and orjson.loads(r.body) == od and r.headers["ETag"] == f'W/"{od["version"]}"'


@pytest.mark.parametrize("def_id", sorted(OWN_DEFINITIONS))
def test_served_definitions_are_valid_r4(def_id: str) -> None:
    OperationDefinition.model_validate(definition(def_id))


def test_unknown_definition_is_not_found() -> None:
    with pytest.raises(NotFound):
        _get("Patient-everything")  # HL7's: not served here
    with pytest.raises(NotFound):
        _get("nope")
    assert served_url("https://elsewhere.example/OperationDefinition/Patient-care-preferences") is None


def test_capability_statement_names_only_resolvable_definitions(client) -> None:  # noqa: ANN001
    cs = client.get("/fhir/metadata").json()
    named = {o["definition"] for r in cs["rest"][0]["resource"] for o in r.get("operation", [])}
    assert named == {o.definition for o in available()}
    for url in named:
        assert url.startswith(HL7) or served_url(url) is not None, url
