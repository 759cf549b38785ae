"""Shared time helpers: the one backoff formula, waiting on events."""

from __future__ import annotations

import asyncio

import pytest

from orchestrator.timing import environment_retry_delay, equal_jitter_backoff, wait_any


@pytest.mark.parametrize(
    ("streak", "rand", "expected"),
    [(1, 0.0, 2.5), (1, 0.999999, 5.0), (2, 0.0, 5.0), (3, 0.0, 10.0), (10, 0.0, 60.0),
     (10, 0.999999, 120.0)],
)
def test_backoff_doubles_jitters_and_caps(streak: int, rand: float, expected: float) -> None:
    assert equal_jitter_backoff(streak, 5.0, 120.0, rand) == pytest.approx(expected, 1e-5)


def test_backoff_grows_exponentially_within_jitter_and_cap() -> None:
    assert equal_jitter_backoff(1, 1.0, 8.0, 0.0) == 0.5
    assert equal_jitter_backoff(1, 1.0, 8.0, 0.999) == pytest.approx(0.9995)
    assert equal_jitter_backoff(3, 1.0, 8.0, 0.0) == 2.0
    assert equal_jitter_backoff(10, 1.0, 8.0, 0.0) == 4.0  # capped at 8, half of it minimum
    for retry in range(1, 12):
        for rand in (0.0, 0.3, 0.99):
            raw = min(8.0, 2.0 ** (retry - 1))
            assert raw / 2 <= equal_jitter_backoff(retry, 1.0, 8.0, rand) < raw or raw == 0
    assert equal_jitter_backoff(1000, 1.0, 8.0, 0.5) == 6.0  # huge exponents do not overflow


async def test_wait_any_returns_on_the_first_event_set() -> None:
    first, second = asyncio.Event(), asyncio.Event()
    second.set()
    await wait_any((first, second), None)
    assert not first.is_set()


async def test_wait_any_returns_at_once_on_a_spent_timeout() -> None:
    never = asyncio.Event()
    await wait_any((never,), 0)
    assert not never.is_set()


def test_environment_retry_delay_is_the_nominal_backoff_without_jitter() -> None:
    waits = [environment_retry_delay(n, 10.0, 300.0) for n in range(1, 8)]
    assert waits == [10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0]
    assert environment_retry_delay(3, 10.0, 5.0) == 10.0  # never below the first wait
    assert environment_retry_delay(10_000, 1.0, 8.0) == 8.0
