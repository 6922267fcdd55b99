"""FHIR search: index extraction on write, query building, paging, bundles."""
