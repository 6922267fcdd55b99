"""SMART on FHIR authorisation: who is asking, as whom, and for what (issue 4).

Public API (see docs/authorisation.md)::

    authenticate(conn, settings, authorization_header) -> Requester   # 401 Unauthorized
    check_access(requester, interaction, resource_type)                # 403 Forbidden
    granular_filters(requester, resource_type) -> [(param, value)] | None
    patient_restriction(requester) -> patient id | None
    router                       FastAPI routes: token, introspect, jwks, smart-configuration
    smart_security_extension(settings) -> CapabilityStatement.rest.security
    smart_configuration(settings) -> the .well-known/smart-configuration document
"""

from exchange.auth.authenticate import authenticate
from exchange.auth.routes import router, smart_configuration, smart_security_extension
from exchange.auth.scopes import check_access, check_patient, granular_filters, patient_restriction

__all__ = [
    "authenticate",
    "check_access",
    "check_patient",
    "granular_filters",
    "patient_restriction",
    "router",
    "smart_configuration",
    "smart_security_extension",
]
