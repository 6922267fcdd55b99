"""The long-lived collaborators of a running exchange, built once by ``create_app``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from exchange.settings import Settings


@dataclass
class Services:
    settings: Settings
    engine: Engine
    gate: Any  # a DisclosureGate (consent.gate.ConsentGate, or PermitAll when consent is off)
    audit: Any | None = None  # exchange.audit.sink.AuditSink, None when auditing is off
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return self.settings.base_url.rstrip("/")
