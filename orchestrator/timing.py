"""Time helpers every part of the daemon shares: the clock, waiting, backoff, the quota day.

- ``Clock``: what every component takes to read the time (``time.time`` in production, a
  fake in tests), so decisions are functions of ``now`` and tests never sleep.
- ``wait_any``: wait for the first of some ``asyncio.Event`` s, or a timeout.
- ``equal_jitter_backoff``: the one exponential backoff formula (retries of a Marketo call,
  ``1016`` back-pressure, uploads whose create call failed); ``environment_retry_delay``
  is its nominal wait without jitter (files and uploads held after environment failures).
- ``quota_day`` / ``next_quota_reset``: Marketo's daily quota resets at midnight
  America/Chicago (docs/reference/marketo-api.md §6).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

CHICAGO = ZoneInfo("America/Chicago")


class Clock(Protocol):
    """Returns the current time as epoch seconds (``time.time`` fits)."""

    def __call__(self) -> float:
        """Return epoch seconds."""
        ...


async def wait_any(events: Iterable[asyncio.Event], timeout: float | None) -> None:
    """Return when any of ``events`` is set or ``timeout`` seconds have passed (None: never).

    Never raises on timeout; the caller re-checks its state.
    """
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        if timeout is not None and timeout <= 0:
            return
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def equal_jitter_backoff(attempt: int, base_s: float, cap_s: float, rand: float) -> float:
    """Return the wait after the ``attempt``-th consecutive failure, seconds.

    Exponential with "equal jitter": the nominal wait ``min(cap_s, base_s * 2**(attempt-1))``
    is halved and the other half is scaled by ``rand``, so the wait lies in
    ``[nominal/2, nominal)``. Randomness comes in as an argument, so tests pin it.

    Args:
        attempt: 1 for the first failure (or retry), 2 for the second, ...
        base_s: the first nominal wait, seconds.
        cap_s: the longest nominal wait, seconds.
        rand: a number in ``[0, 1)`` (values outside are clamped).
    """
    exponent = min(max(attempt - 1, 0), 32)
    nominal = min(cap_s, base_s * (2.0**exponent))
    return nominal / 2 + nominal / 2 * min(max(rand, 0.0), 1.0)


def environment_retry_delay(failures: int, first_s: float, max_s: float) -> float:
    """Seconds before a step that failed because of the machine is tried again.

    An environment failure (a folder that cannot be written, a file that cannot be read
    while it is there) is no fault of the file nor of Marketo; intake and the scheduler hold
    the file or upload and try again after this long: ``equal_jitter_backoff``'s nominal
    wait, without jitter (no other client competes for the retry).

    Args:
        failures: consecutive environment failures, counting this one (>= 1).
        first_s: the first wait (``intake.rescan_interval_s``).
        max_s: the longest wait (``intake.environment_retry_max_s``).

    Returns:
        ``first_s * 2 ** (failures - 1)``, capped at ``max_s`` (never below ``first_s``).
    """
    return equal_jitter_backoff(failures, first_s, max(max_s, first_s), 1.0)


def quota_day(ts: float) -> str:
    """Return the ``YYYY-MM-DD`` quota day (America/Chicago) of epoch seconds ``ts``."""
    return datetime.fromtimestamp(ts, CHICAGO).date().isoformat()


def next_quota_reset(ts: float) -> float:
    """Return epoch seconds of the first America/Chicago midnight after ``ts``."""
    local = datetime.fromtimestamp(ts, CHICAGO)
    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), CHICAGO)
    return midnight.timestamp()
