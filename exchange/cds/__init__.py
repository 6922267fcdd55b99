"""CDS Hooks service for care preferences (https://cds-hooks.hl7.org, 1.0 / 2.0).

``exchange.cds.routes.router`` serves discovery (``GET /cds-services``) and the
``patient-view`` service ``care-preferences-patient-view``; cards are built by
:mod:`exchange.cds.cards` from the same assessment as ``$care-preferences``.
"""
