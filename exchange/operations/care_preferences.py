"""``GET [base]/Patient/{id}/$care-preferences``: resuscitation and end of life preferences.

FHIR R4 operations.html (an instance-level, idempotent operation on Patient; the
OperationDefinition is ``care_preferences_opdef.json``). Returns a document Bundle
(documents.html) built by :mod:`exchange.operations.eol_document` from what
:func:`exchange.operations.eol_load.gather` released through the disclosure choke point
and :mod:`exchange.operations.eol_current` assessed. See docs/care-preferences.md.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection

from exchange.operations.eol_document import CANONICAL_BASE, render_document
from exchange.operations.eol_load import gather
from exchange.pipeline.context import RequestContext
from exchange.settings import Settings

OPERATION_NAME = "care-preferences"
OPERATION_URL = f"{CANONICAL_BASE}/OperationDefinition/Patient-care-preferences"
OPDEF_FILE = Path(__file__).with_name("care_preferences_opdef.json")


def care_preferences(
    conn: Connection,
    ctx: RequestContext,
    settings: Settings,
    patient_id: str,
    base_url: str,
    *,
    now: datetime | None = None,
) -> bytes:
    """The care-preferences document Bundle of ``patient_id`` as JSON bytes.

    Raises NotFound / Gone / Forbidden (exchange.outcome) for an unknown, deleted or
    invisible patient. ``settings`` is accepted for symmetry with other operations
    (``base_url`` defaults to ``settings.base_url`` when empty).
    """
    now = now or datetime.now(UTC)
    if ctx.operation is None:
        ctx.operation = f"${OPERATION_NAME}"
    got = gather(conn, ctx, patient_id, now=now)
    resources: list[dict[str, Any]] = [s.data for s in got.preferences + got.supporting]
    bundle = render_document(
        got.assessment,
        patient=got.patient.data,
        resources=resources,
        base_url=base_url or settings.base_url,
        now=now,
    )
    return orjson.dumps(bundle)


@lru_cache(maxsize=1)
def operation_definition() -> dict[str, Any]:
    """The OperationDefinition resource for the CapabilityStatement (and ``GET OperationDefinition/...``)."""
    return orjson.loads(OPDEF_FILE.read_bytes())
