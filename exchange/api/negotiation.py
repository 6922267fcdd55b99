"""Content negotiation (FHIR R4 http.html#mime-type, #parameters for _format/_pretty).

The exchange speaks FHIR JSON only: ``application/fhir+json`` (and ``application/json``).
XML or any other requested format is answered 406; a body in another content type 415.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from exchange.interactions.types import check_param_name, check_text
from exchange.outcome import FhirError

JSON_TYPES = {"application/fhir+json", "application/json", "application/json+fhir", "json", "text/json"}
FORMAT_ALIASES = {"json": "application/fhir+json", "application/fhir+json": "application/fhir+json",
                  "application/json": "application/json", "application/json+fhir": "application/fhir+json"}
XMLISH = {"xml", "text/xml", "application/xml", "application/fhir+xml", "application/xml+fhir", "ttl", "text/turtle",
          "html", "text/html"}


def response_type(accept: str | None, fmt: str | None) -> str:
    """The media type to answer with, or raise 406."""
    if fmt:
        f = fmt.strip().lower().replace(" ", "+")
        base = f.split(";")[0]
        if base in FORMAT_ALIASES:
            return FORMAT_ALIASES[base]
        raise FhirError("not-supported", f"_format {fmt[:60]!r} is not supported; use json", status=406)
    if not accept:
        return "application/fhir+json"
    ranges = [r.split(";")[0].strip().lower() for r in accept.split(",") if r.strip()]
    for r in ranges:
        if r in ("application/fhir+json", "application/json+fhir"):
            return "application/fhir+json"
        if r in ("application/json", "text/json"):
            return "application/json"
        if r in ("*/*", "application/*"):
            return "application/fhir+json"
    raise FhirError("not-supported", "This server answers only application/fhir+json (or application/json)", status=406)


def check_request_type(method: str, content_type: str | None, has_body: bool, is_search: bool, is_patch: bool) -> None:
    if method not in ("POST", "PUT", "PATCH") or not has_body:
        return
    raw = (content_type or "").lower()
    base = raw.split(";")[0].strip()
    if "charset=" in raw:
        charset = raw.split("charset=", 1)[1].split(";")[0].strip().strip('"')
        if charset not in ("utf-8", "utf8"):
            raise FhirError("not-supported", f"Only UTF-8 bodies are accepted, not {charset[:40]!r}", status=415)
    if is_patch and base == "application/json-patch+json":
        return
    if is_search and base == "application/x-www-form-urlencoded":
        return
    if base in ("application/fhir+json", "application/json", "application/json+fhir"):
        return
    if base.startswith("application/x-www-form-urlencoded") and method == "POST":
        return
    raise FhirError("not-supported", f"Content-Type {base[:60] or '(none)'!r} is not accepted; send application/fhir+json", status=415)


def check_search_form(body: bytes) -> None:
    """A POST _search form body (search.html#Introduction): UTF-8, no control characters
    in parameter names or values, or 400 before it reaches the search layer."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise FhirError("structure", "The search form body is not valid UTF-8", status=400) from None
    for name, value in parse_qsl(text, keep_blank_values=True):
        check_param_name(name)
        check_text(value, f"Parameter {name[:60]!r}", expression=name[:60])
