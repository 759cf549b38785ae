"""Fixtures: the simulator on a loopback TestServer (sped-up clock) and daemon settings."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from daemon_sim import MakeSim, SimHandle

from orchestrator.settings import Settings
from orchestrator.simulator import SimulatorConfig, create_app

#: Simulated seconds per real second in these tests.
TIME_SCALE = 20.0


@pytest.fixture
async def make_sim() -> AsyncIterator[MakeSim]:
    """Start a simulator; keyword arguments are ``SimulatorConfig`` fields."""
    servers: list[TestServer] = []

    async def factory(time_scale: float = TIME_SCALE, **config: Any) -> SimHandle:
        app = create_app(SimulatorConfig(**config), time_scale=time_scale)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return SimHandle(str(server.make_url("")).rstrip("/"))

    yield factory
    for server in servers:
        await server.close()


@pytest.fixture
def daemon_settings(make_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    """Settings pointing at a simulator URL, with small uploads and fast loops."""

    def factory(url: str, **overrides: Any) -> Settings:
        sections: dict[str, dict[str, Any]] = {
            "marketo": {"base_url": url, "retry_base_s": 0.01, "retry_max_s": 0.1,
                        "token_refresh_margin_s": 0.0},
            "limits": {"max_upload_bytes": 4096, "calls_per_20s": 100,
                       "max_concurrent_calls": 5},
            "polling": {"min_interval_s": 0.02, "max_interval_s": 0.2},
            "daemon": {"idle_tick_s": 0.05, "shutdown_grace_s": 0.5,
                       "queue_full_backoff_s": 0.2, "queue_full_backoff_max_s": 1.0,
                       "results_retry_s": 0.1},
        }
        merged: dict[str, Any] = dict(sections)
        for key, value in overrides.items():
            merged[key] = {**sections.get(key, {}), **value} if isinstance(value, dict) else value
        return make_settings(**merged)

    return factory
