"""Marketo's quota day: it resets at midnight America/Chicago (contract section 6)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

CHICAGO = ZoneInfo("America/Chicago")


def quota_day(ts: float) -> str:
    """Return the ``YYYY-MM-DD`` quota day (America/Chicago) of epoch seconds ``ts``."""
    return datetime.fromtimestamp(ts, CHICAGO).date().isoformat()


def next_quota_reset(ts: float) -> float:
    """Return epoch seconds of the first America/Chicago midnight after ``ts``."""
    local = datetime.fromtimestamp(ts, CHICAGO)
    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), CHICAGO)
    return midnight.timestamp()
