"""The access log (issue 7): AuditEvents (IHE BALP), a signed hash chain, reports.

Public entry points: :class:`exchange.audit.sink.AuditSink`,
:func:`exchange.audit.verify.verify`, :func:`exchange.audit.fhir.search_audit`,
:func:`exchange.audit.fhir.read_audit`, :data:`exchange.audit.reports.REPORTS` and
:func:`exchange.audit.cli.register`.
"""
