"""The simulator-plus-client pair used by the Marketo client's integration tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from orchestrator.marketo import MarketoClient
from orchestrator.settings import Settings
from orchestrator.simulator import DEFAULT_MUNCHKIN_ID, ScaledClock


@dataclass
class SimEnv:
    """A running simulator and a client configured against it."""

    server: TestServer
    clock: ScaledClock
    settings: Settings
    client: MarketoClient
    admin: aiohttp.ClientSession

    async def stats(self) -> dict[str, Any]:
        async with self.admin.get(self.url("/_sim/stats")) as resp:
            body: dict[str, Any] = await resp.json()
        stats: dict[str, Any] = body["instances"][DEFAULT_MUNCHKIN_ID]
        return stats

    async def requests(self) -> list[dict[str, Any]]:
        async with self.admin.get(self.url("/_sim/requests")) as resp:
            body: list[dict[str, Any]] = await resp.json()
        return body

    async def patch(self, settings: dict[str, Any]) -> None:
        async with self.admin.patch(self.url("/_sim/settings"), json=settings) as resp:
            assert resp.status == 200, await resp.text()

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))


MakeEnv = Callable[..., Awaitable[SimEnv]]
