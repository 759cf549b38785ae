"""Simulated time: one clock per simulator, scaled or manual (docs/reference/marketo-api.md §8.1).

All simulator time is read from a clock returning epoch seconds. `ScaledClock` runs at
``time_scale`` times real time; `ManualClock` only moves when a test calls `advance`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol
from zoneinfo import ZoneInfo

#: Marketo's daily quota resets at midnight in this zone (docs/reference/marketo-api.md §6).
CHICAGO = ZoneInfo("America/Chicago")

#: Where a `ManualClock` starts by default: Monday 2026-03-02 09:00 America/Chicago.
DEFAULT_MANUAL_START = datetime(2026, 3, 2, 9, 0, tzinfo=CHICAGO).timestamp()


class Clock(Protocol):
    """Anything that tells simulated time."""

    def now(self) -> float:
        """Return simulated time as epoch seconds."""
        ...

    def advance(self, seconds: float) -> None:
        """Jump simulated time forward by ``seconds`` (>= 0)."""
        ...


class ScaledClock:
    """Simulated time = start + real monotonic elapsed * ``time_scale`` + jumps.

    Args:
        time_scale: Simulated seconds per real second (1 = real time, 60 = a minute a second).
        start: Simulated epoch seconds at creation; defaults to the current real time.

    Raises:
        ValueError: ``time_scale`` is not positive.
    """

    def __init__(self, time_scale: float = 1.0, start: float | None = None) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.time_scale = time_scale
        self._start = time.time() if start is None else start
        self._mono0 = time.monotonic()
        self._offset = 0.0

    def now(self) -> float:
        """Return simulated epoch seconds."""
        return self._start + (time.monotonic() - self._mono0) * self.time_scale + self._offset

    def advance(self, seconds: float) -> None:
        """Jump forward by ``seconds`` simulated seconds on top of the scaled flow.

        Raises:
            ValueError: ``seconds`` is negative (time never runs backwards).
        """
        if seconds < 0:
            raise ValueError("cannot move the clock backwards")
        self._offset += seconds


class ManualClock:
    """A clock that stands still until `advance` or `set` moves it (for tests).

    Args:
        start: Simulated epoch seconds to start at; defaults to `DEFAULT_MANUAL_START`.
    """

    time_scale = 0.0

    def __init__(self, start: float | None = None) -> None:
        self._now = DEFAULT_MANUAL_START if start is None else start

    def now(self) -> float:
        """Return the current simulated epoch seconds."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move forward by ``seconds``.

        Raises:
            ValueError: ``seconds`` is negative.
        """
        if seconds < 0:
            raise ValueError("cannot move the clock backwards")
        self._now += seconds

    def set(self, when: float | datetime) -> None:
        """Move to an absolute time (epoch seconds or an aware datetime), never backwards.

        Raises:
            ValueError: ``when`` is earlier than now.
        """
        target = when.timestamp() if isinstance(when, datetime) else float(when)
        self.advance(target - self._now)


def iso(ts: float) -> str:
    """Format epoch seconds as an ISO 8601 UTC string with milliseconds."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def chicago_day(ts: float) -> str:
    """Return the America/Chicago calendar date of ``ts`` (the daily-quota key), ``YYYY-MM-DD``."""
    return datetime.fromtimestamp(ts, CHICAGO).date().isoformat()
