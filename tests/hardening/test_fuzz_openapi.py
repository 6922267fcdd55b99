"""Property-based fuzzing of the real app from its own OpenAPI document (issue 11,
"Bad input"; openapi/openapi.json served at /openapi.json).

Schemathesis derives a Hypothesis strategy for every operation in the document (206
paths, every method); cases are sent through the ASGI app with authorisation, consent
and audit on, with a valid system token (and, in the unauthenticated run, none).
Properties: no response is a 5xx, and every 4xx of the FHIR facade carries a valid R4
OperationOutcome (the token endpoint answers OAuth errors, RFC 6749 5.2, and is
excluded from that check). Both positive (schema-conforming) and negative
(schema-violating) data are generated.

The normal suite runs a short, derandomised run (fixed examples, a few seconds); the
long run is marked ``slow`` (``pytest -m slow``; .ci/run) and is bounded to about two
minutes. Nothing is filtered: the bugs it first found (unknown ``_sort``, a newline in
the URL path, a huge version id, parameter names that are not printable) are fixed
and pinned by corpus cases in test_input_http.py.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import schemathesis
from fhir.resources.R4B.operationoutcome import OperationOutcome
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.generation.modes import GenerationMode

SHORT_EXAMPLES = int(os.environ.get("EXCHANGE_FUZZ_EXAMPLES", "60"))
LONG_EXAMPLES = int(os.environ.get("EXCHANGE_FUZZ_LONG_EXAMPLES", "500"))
#: the counts of the last runs, for docs/hardening-figures.md
FIGURES: dict[str, int] = {}


def _problems(case: Any, response: Any) -> list[str]:
    path = case.formatted_path
    status = response.status_code
    if status >= 500:
        return [f"{status} on {case.method} {path} query={case.query!r}: {response.text[:300]}"]
    fhir = path.startswith("/fhir") and not path.startswith(("/fhir/auth", "/fhir/.well-known"))
    if 400 <= status < 500 and fhir and case.method.upper() != "HEAD":
        try:
            body = orjson.loads(response.content)
            assert body.get("resourceType") == "OperationOutcome"
            assert body.get("issue")
            OperationOutcome.model_validate(body)
        except Exception as exc:  # noqa: BLE001
            return [f"{status} without a valid OperationOutcome on {case.method} {path}: {exc!r} {response.text[:200]}"]
    return []


def _send(client: Any, case: Any, headers: dict[str, str]) -> Any:
    """Send a case through the module's TestClient (``case.call`` would start and stop
    the app's lifespan on every call, shutting the shared audit sink down)."""
    kw = case.as_transport_kwargs(base_url="http://testserver", headers=headers)
    kw.pop("cookies", None)
    data = kw.pop("data", None)
    if data is not None:
        if isinstance(data, (bytes, str)):
            kw["content"] = data
        else:
            kw["data"] = data
    if "json" in kw:
        kw["content"] = json.dumps(kw.pop("json")).encode()  # stdlib: integers beyond 64 bits too
        kw["headers"].setdefault("Content-Type", "application/json")
    # non-ASCII header values travel as raw UTF-8 bytes, as a hostile client would send them
    kw["headers"] = {k: v.encode() if isinstance(v, str) and not v.isascii() else v for k, v in kw["headers"].items()}
    return client.request(**kw)


def fuzz(client: Any, headers: dict[str, str], *, examples: int, mode: GenerationMode, seed_label: str) -> list[str]:
    """Run ``examples`` generated cases through ``client``; return the problems found."""
    # from the file the app serves (from_asgi would run, and so end, the app's lifespan)
    from exchange.app import OPENAPI_PATH

    schema = schemathesis.openapi.from_path(OPENAPI_PATH)
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) > 300, len(operations)
    strategy = st.one_of([op.as_strategy(generation_mode=mode) for op in operations])
    found: list[str] = []
    sent = {"n": 0}

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate])
    @given(case=strategy)
    def run(case: Any) -> None:
        sent["n"] += 1
        found.extend(_problems(case, _send(client, case, headers)))

    run()
    FIGURES[seed_label] = sent["n"]
    return found


@pytest.mark.parametrize(("mode", "who"), [(GenerationMode.POSITIVE, "system"), (GenerationMode.NEGATIVE, "clinician")],
                         ids=["positive-system", "negative-clinician"])
def test_fuzz_short_no_server_errors(full_client, system_headers: dict[str, str], token_for,  # noqa: ANN001
                                     mode: GenerationMode, who: str) -> None:
    """A system token reaches every route; a clinician's token also runs the consent gate."""
    headers = system_headers if who == "system" else token_for(organization="A81001", scope="user/*.cruds",
                                                                client_id="fuzz-clinician")
    problems = fuzz(full_client, headers, examples=SHORT_EXAMPLES, mode=mode, seed_label=f"short-{mode}-{who}")
    assert not problems, "\n".join(problems[:20])


def test_fuzz_short_unauthenticated(full_client, fingerprint: Callable[[], Any]) -> None:  # noqa: ANN001
    """Without a token nothing is served and nothing changes, whatever is sent."""
    before = fingerprint()
    problems = fuzz(full_client, {}, examples=SHORT_EXAMPLES, mode=GenerationMode.NEGATIVE, seed_label="anon")
    assert not problems, "\n".join(problems[:20])
    assert fingerprint() == before


@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
def test_fuzz_long_no_server_errors(full_client, system_headers: dict[str, str],  # noqa: ANN001
                                    mode: GenerationMode) -> None:
    problems = fuzz(full_client, system_headers, examples=LONG_EXAMPLES, mode=mode, seed_label=f"long-{mode}")
    assert not problems, "\n".join(problems[:20])


def test_fuzz_detects_a_server_error() -> None:
    """The property itself works: a 500 and a non-OperationOutcome 4xx are reported."""

    class _Case:
        method, formatted_path, query = "GET", "/fhir/Patient", {}

    class _Resp:
        def __init__(self, status: int, content: bytes) -> None:
            self.status_code, self.content, self.text = status, content, content.decode()

    assert _problems(_Case(), _Resp(500, b"boom"))
    assert _problems(_Case(), _Resp(404, b'{"detail":"Not Found"}'))
    assert not _problems(_Case(), _Resp(404, orjson.dumps({"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "not-found", "diagnostics": "x"}]})))
