"""Fixtures of intake's integration tests: a real store, a fake describe, an Intake factory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from intake_support import Clock, FakeDescribe

from orchestrator.intake import Intake
from orchestrator.settings import Settings
from orchestrator.store import Store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with Store.open(tmp_path / "leadflow.db") as opened:
        yield opened


@pytest.fixture
def describe() -> FakeDescribe:
    return FakeDescribe()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_intake(
    make_settings: Callable[..., Settings], store: Store, describe: FakeDescribe, clock: Clock
) -> Callable[..., Intake]:
    def factory(**overrides: Any) -> Intake:
        return Intake(make_settings(**overrides), store, describe=describe, clock=clock)

    return factory
