"""The hospital HL7 v2 adapter (files and the MLLP listener); see docs/adapters/hl7v2.md."""

from adapters.hl7v2.adapter import Hl7v2Adapter

__all__ = ["Hl7v2Adapter"]
