"""One module per FHIR interaction (R4 http.html), free of web-framework types.

Each handler is ``handler(svc, ctx, req, conn) -> FhirResponse``; the route table in
:mod:`exchange.interactions.router` maps method + path to handlers so that batch and
transaction entries re-enter exactly the same table.
"""
