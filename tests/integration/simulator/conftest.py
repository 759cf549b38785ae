"""Fixtures: the simulator on a loopback TestServer with a manual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sim_helpers import MakeSim, Sim

from orchestrator.simulator import ManualClock, SimulatorConfig, create_app


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def make_sim(clock: ManualClock) -> AsyncIterator[MakeSim]:
    clients: list[TestClient[Any, Any]] = []

    async def factory(**config: Any) -> Sim:
        app = create_app(SimulatorConfig(**config), clock=clock)
        client: TestClient[Any, Any] = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return Sim(client, clock)

    yield factory
    for client in clients:
        await client.close()


@pytest.fixture
async def sim(make_sim: MakeSim) -> Sim:
    return await make_sim()
