"""Timestamps as documents write them, and back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from otsec.timefmt import epoch, iso


def parsed(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@given(st.floats(min_value=0, max_value=4e9, allow_nan=False))
def test_epoch_of_iso_is_what_datetime_reads(ts: float) -> None:
    text = iso(ts)
    assert epoch(text) == parsed(text)
    assert abs(epoch(text) - ts) <= 1e-6


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1),
                    timezones=st.sampled_from([UTC, timezone(timedelta(hours=2))])))
def test_epoch_reads_any_iso_text(when: datetime) -> None:
    text = when.isoformat()
    assert epoch(text) == when.timestamp()
