"""``serve()``: runs on a real port until cancelled and logs how to reach it."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import aiohttp
import structlog
from structlog.testing import capture_logs

from orchestrator.simulator import serve


async def _started(logs: list[MutableMapping[str, Any]]) -> MutableMapping[str, Any]:
    for _ in range(1000):
        for entry in logs:
            if entry["event"] == "simulator_started":
                return entry
        await asyncio.sleep(0.01)  # waiting for the server to bind, not for simulated time
    raise AssertionError("no simulator_started line")


async def test_serve_until_cancelled_with_a_config_file(tmp_path: Path) -> None:
    config = tmp_path / "sim.toml"
    config.write_text('instances = ["555-EEE-555"]\nmax_queued = 3\n')
    structlog.configure(cache_logger_on_first_use=False)
    with capture_logs() as logs:
        task = asyncio.create_task(serve(port=0, config_path=config, time_scale=60.0))
        line = await _started(logs)
        assert line["client_id"] == "leadflow-sim"
        assert line["client_secret"] == "leadflow-sim-secret"
        assert line["munchkin_id"] == "555-EEE-555"
        url = str(line["url"])
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
        async with aiohttp.ClientSession() as session:
            async with session.get(url + "/_sim/settings") as resp:
                assert (await resp.json())["max_queued"] == 3
            async with session.get(url + "/_sim/clock") as resp:
                assert (await resp.json())["time_scale"] == 60.0
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
    assert logs[-1]["event"] == "simulator_stopped"
