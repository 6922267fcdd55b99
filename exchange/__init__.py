"""The integrated care record exchange: a FHIR R4 facade over a shared care record.

Public entry points: :func:`exchange.app.create_app` and :class:`exchange.settings.Settings`.
"""

__version__ = "0.1.0"
