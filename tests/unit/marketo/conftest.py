"""Fixtures for the Marketo client's unit tests: fake time, settings, aioresponses."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aioresponses.core as aioresponses_core
import pytest
from aioresponses import aioresponses
from mkto_helpers import BASE, CompatResponse, FakeTime

from orchestrator.marketo import MarketoClient
from orchestrator.settings import Settings


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(
        marketo={
            "base_url": BASE,
            "client_id": "cid",
            "client_secret": "top-secret-value",
            "retry_attempts": 4,
            "retry_base_s": 0.5,
            "retry_max_s": 4.0,
            "token_refresh_margin_s": 60.0,
        }
    )


@pytest.fixture
def mocked(monkeypatch: pytest.MonkeyPatch) -> Iterator[aioresponses]:
    monkeypatch.setattr(aioresponses_core, "ClientResponse", CompatResponse)
    with aioresponses() as m:
        yield m


@pytest.fixture
async def client(
    settings: Settings, fake_time: FakeTime, mocked: aioresponses
) -> AsyncIterator[MarketoClient]:
    async with MarketoClient(
        settings, clock=fake_time.clock, sleep=fake_time.sleep, rand=lambda: 0.5
    ) as c:
        yield c


@pytest.fixture
def upload_file(tmp_path: Path) -> Path:
    path = tmp_path / "upload-0001.csv"
    path.write_bytes(b"email,firstName\r\na@example.com,Ann\r\nb@example.com,Bob\r\n")
    return path
