"""String (search.html#string) and date (search.html#date, #prefix) search."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(("query", "expected"), [
    ("name=smith", {"p1", "p2", "p3"}),
    ("name=SMI", {"p1", "p2", "p3"}),
    ("family=smith", {"p1", "p2"}),
    ("family=smithers", {"p2"}),
    ("family:exact=Smíth", {"p1"}),
    ("family:exact=smith", set()),
    ("name:contains=ither", {"p2"}),
    ("given=elodie", {"p4"}),
    ("given=ÉLO", {"p4"}),
    ("address-city=leeds", {"p1", "p2"}),
    ("address=1 high", {"p1"}),
    ("address=high", set()),
    ("address-postalcode=ls1", {"p1"}),
    ("name=smith&gender=female", {"p2"}),
    ("name=jones,dubois", {"p3", "p4"}),
    ("name=mith", set()),
])
def test_patient_strings(sx, query, expected):
    assert sx.find("Patient", query) == expected


def test_string_percent_is_literal(sx):
    assert sx.find("Patient", "name=%mith") == set()
    assert sx.find("Patient", "name:contains=_") == set()


@pytest.mark.parametrize(("query", "expected"), [
    ("birthdate=1970", {"p1", "p2", "p4"}),
    ("birthdate=1970-05", {"p1"}),
    ("birthdate=1970-05-15", {"p1"}),
    ("birthdate=eq1970-05-16", set()),
    ("birthdate=lt1970-06", {"p1", "p4"}),
    ("birthdate=ge1970-06", {"p2", "p3", "p4"}),
    ("birthdate=gt1970-06", {"p3", "p4"}),
    ("birthdate=le1970-05-15", {"p1", "p4"}),
    ("birthdate=sa1970-05-31", {"p2", "p3"}),
    ("birthdate=eb1970-06-01", {"p1"}),
    ("birthdate=ne1970", {"p3"}),
    ("birthdate=ge1970-01-01&birthdate=le1970-12-31", {"p1", "p2", "p4"}),
    ("death-date=2020", {"p3"}),
])
def test_patient_dates(sx, query, expected):
    assert sx.find("Patient", query) == expected


@pytest.mark.parametrize(("query", "expected"), [
    ("date=2024-01-01", {"o1"}),
    ("date=2024-01-01T10:00:00Z", {"o1"}),
    ("date=2024-01-01T11:00:00+01:00", {"o1"}),
    ("date=2024-01-02T04:30:00Z", {"o5"}),
    ("date=ge2024-01-02", {"o2", "o5"}),
    ("date=ne2024-01-01", {"o2", "o3", "o4", "o5"}),
    ("date=lt2024-01-01", {"o3", "o4"}),
    ("date=2023", {"o4"}),
    ("date=eb2023-12-31", {"o4"}),
    ("date=ap2024-01-01", {"o1", "o2", "o3", "o5"}),
])
def test_observation_dates_and_periods(sx, query, expected):
    assert sx.find("Observation", query) == expected


def test_encounter_period_and_last_updated(sx):
    assert sx.find("Encounter", "date=2024-01-01") == {"e1"}
    assert sx.find("Encounter", "date=gt2024-01-01T10:30:00Z") == {"e1"}
    assert sx.find("Encounter", "date=sa2024-01-01T10:30:00Z") == set()
    assert sx.find("Patient", "_lastUpdated=gt2000-01-01") == {"p1", "p2", "p3", "p4"}
    assert sx.find("Patient", "_lastUpdated=lt2000-01-01") == set()


def test_invalid_date_is_400(sx):
    from exchange.outcome import FhirError

    with pytest.raises(FhirError) as err:
        sx.find("Patient", "birthdate=yesterday")
    assert err.value.status == 400
