"""The request context: who is asking, as whom, for what, about whom (one per request).

Every interaction receives a :class:`RequestContext`. Authentication fills in the
:class:`Requester`; the disclosure choke point (``exchange.pipeline.disclosure``) records
what was released and what was withheld; the audit sink turns the finished context into
an AuditEvent (IHE BALP, https://profiles.ihe.net/ITI/BALP/). Handlers never call
consent or audit themselves.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

RequesterKind = Literal["system", "user", "patient", "anonymous"]


@dataclass(frozen=True)
class Requester:
    """The authenticated party behind a request (SMART App Launch 2 / Backend Services).

    ``kind`` is ``system`` for backend-services clients, ``user`` for a clinician's
    system acting for a practitioner, ``patient`` for a citizen's own app and
    ``anonymous`` only when authorisation is switched off (development / baseline).
    """

    kind: RequesterKind
    client_id: str | None = None
    scopes: frozenset[str] = frozenset()
    practitioner_id: str | None = None  # SDS user id
    practitioner_name: str | None = None
    role: str | None = None  # national RBAC job role code, e.g. R8000
    organization: str | None = None  # ODS code
    purpose_of_use: str | None = None  # TREAT | ETREAT | BTG (v3 PurposeOfUse)
    break_glass_reason: str | None = None
    patient_id: str | None = None  # the patient a patient/ token is bound to
    token_id: str | None = None  # jti of the access token
    issuer: str | None = None

    @property
    def is_break_glass(self) -> bool:
        return self.purpose_of_use == "BTG"

    @property
    def key(self) -> str:
        """A stable identity string used to bind paging cursors to this requester."""
        return "|".join(
            str(x or "")
            for x in (
                self.kind,
                self.client_id,
                self.practitioner_id,
                self.organization,
                self.role,
                self.purpose_of_use,
                self.patient_id,
                " ".join(sorted(self.scopes)),
            )
        )


ANONYMOUS = Requester(kind="anonymous", scopes=frozenset({"system/*.*"}))


@dataclass
class Released:
    resource_type: str
    resource_id: str
    version_id: str


@dataclass
class RequestContext:
    """Everything known about one request while it is being served."""

    requester: Requester
    method: str = "GET"
    path: str = ""
    query: str = ""
    interaction: str = ""  # read, vread, update, patch, delete, create, search-type,
    # search-system, history-instance, history-type, history-system, capabilities,
    # batch, transaction, operation
    resource_type: str | None = None
    resource_id: str | None = None
    operation: str | None = None  # e.g. "$everything"
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    remote_addr: str | None = None
    user_agent: str | None = None
    patients: set[str] = field(default_factory=set)  # ids of patients concerned
    released: list[Released] = field(default_factory=list)
    withheld: int = 0
    withheld_rules: Counter = field(default_factory=Counter)
    redacted: int = 0
    #: patients of resources the choke point withheld (for the access log only: it never
    #: reaches a response); recorded on this context and every parent (batch entries)
    withheld_patients: set[str] = field(default_factory=set)
    #: types whose queries the gate narrowed in SQL before LIMIT, and the narrowing rules
    #: the gate reported in force for the request (``DisclosureGate.narrowing_rules``);
    #: for the access log: SQL narrowing has no per-resource count (docs/ig-guide.md)
    narrowed_types: set[str] = field(default_factory=set)
    narrowing_rules: set[str] = field(default_factory=set)
    informational: list[str] = field(default_factory=list)  # notes shown to the client
    outcome_status: int | None = None
    outcome_detail: str | None = None
    parent: RequestContext | None = None  # set for batch / transaction entries
    gate: object | None = None  # the DisclosureGate for this request (set by the pipeline)
    #: write the AuditEvent of a write inside the write's own transaction (set by the API
    #: and the CLI): the write and its record commit together or not at all
    audit_in_transaction: bool = False
    audited: bool = False  # the AuditEvent is already committed (with the write)

    def child(self, *, method: str, path: str, query: str = "") -> RequestContext:
        """A context for one entry of a batch or transaction (same requester)."""
        return RequestContext(
            requester=self.requester,
            method=method,
            path=path,
            query=query,
            remote_addr=self.remote_addr,
            user_agent=self.user_agent,
            parent=self,
        )
