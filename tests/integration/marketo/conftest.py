"""Fixtures: the simulator on a loopback TestServer and a MarketoClient on the same fast clock.

The simulator runs on a `ScaledClock`; the client reads the same clock and its ``sleep`` waits
``seconds / time_scale`` real seconds, so 20-second windows, token lifetimes and midnight are
crossed in a fraction of a real second while both sides agree on the time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from mkto_sim_env import MakeEnv, SimEnv

from orchestrator.marketo import MarketoClient
from orchestrator.settings import Settings
from orchestrator.simulator import ScaledClock, SimulatorConfig, create_app


@pytest.fixture
async def make_env(make_settings: Callable[..., Settings]) -> AsyncIterator[MakeEnv]:
    """Build ``SimEnv(...)``: ``make_env(scale=50, start=None, marketo={}, limits={},
    wait_for_quota=True, **simulator_config)``."""
    opened: list[tuple[TestServer, MarketoClient, aiohttp.ClientSession]] = []

    async def factory(
        *,
        scale: float = 50.0,
        start: float | None = None,
        marketo: dict[str, Any] | None = None,
        limits: dict[str, Any] | None = None,
        wait_for_quota: bool = True,
        **sim_config: Any,
    ) -> SimEnv:
        clock = ScaledClock(time_scale=scale, start=start)
        server = TestServer(create_app(SimulatorConfig(**sim_config), clock=clock))
        await server.start_server()
        base = str(server.make_url("")).rstrip("/")
        settings = make_settings(
            marketo={
                "base_url": base,
                "client_id": "leadflow-sim",
                "client_secret": "leadflow-sim-secret",
                "retry_base_s": 0.2,
                "retry_max_s": 5.0,
                **(marketo or {}),
            },
            limits=limits or {},
        )

        async def sleep(seconds: float) -> None:
            await asyncio.sleep(max(seconds, 0.0) / scale)

        client = MarketoClient(
            settings, clock=clock.now, sleep=sleep, wait_for_quota=wait_for_quota
        )
        await client.__aenter__()
        admin = aiohttp.ClientSession()
        opened.append((server, client, admin))
        return SimEnv(server, clock, settings, client, admin)

    yield factory
    for server, client, admin in opened:
        await client.close()
        await admin.close()
        await server.close()
