"""Fixtures for the reporter's integration tests: a real store and a hand-moved clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from orchestrator.settings import Settings
from orchestrator.store import Store


class HandClock:
    """Epoch seconds that tests move by hand."""

    def __init__(self, now: float = 1_790_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> HandClock:
    return HandClock()


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(
        daemon={"results_retry_s": 30.0},
        routes=[{"name": "events", "folder": "events"}],
    )


@pytest.fixture
async def store(settings: Settings, clock: HandClock) -> AsyncIterator[Store]:
    async with Store.open(settings.paths.database, clock=clock) as opened:
        yield opened


@pytest.fixture
def results_root(settings: Settings) -> Path:
    return settings.paths.results
