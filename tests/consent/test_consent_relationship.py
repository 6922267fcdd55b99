"""The look-back cut-off for a *recent* care relationship (consent/relationship.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from consent.relationship import relationship_cutoff


def test_cutoff_is_rounded_up_to_the_minute_never_down() -> None:
    now = datetime(2026, 11, 30, 7, 15, 42, 123456, tzinfo=UTC)
    cut = relationship_cutoff(now, 365)
    exact = now - timedelta(days=365)
    assert exact <= cut < exact + timedelta(minutes=1)  # the window only ever shortens
    assert cut == datetime(2025, 11, 30, 7, 16, tzinfo=UTC)
    on_the_minute = datetime(2026, 11, 30, 7, 15, tzinfo=UTC)
    assert relationship_cutoff(on_the_minute, 30) == on_the_minute - timedelta(days=30)


def test_requests_within_one_minute_share_a_cutoff() -> None:
    a = datetime(2026, 11, 30, 7, 15, 1, tzinfo=UTC)
    assert relationship_cutoff(a, 365) == relationship_cutoff(a + timedelta(seconds=58), 365)
