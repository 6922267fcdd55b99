"""FHIR operations ($everything, $care-preferences, $match, $access-check)."""
