"""The simulator for the benchmarks, in its own process, on a fast clock.

The simulator parses every upload in pure Python (about 30 MB/s): in the daemon's process
that would block the daemon's event loop for ~0.3 s per 9.5 MB upload, i.e. 30 simulated
seconds at 100x, and the figures would measure the benchmark rather than the scheduler. So it
runs in a child process (the second core) started by `SimHost`::

    async with SimHost({"rows_per_second": 10}, time_scale=100) as sim:
        sim.url; await sim.stats(); sim.sim_time(time.monotonic())

The child builds ``create_app(config, clock=ScaledClock(scale, start))`` and prints one JSON
line ``{"port", "start", "mono0", "time_scale"}``. ``CLOCK_MONOTONIC`` is system-wide on Linux,
so the parent converts its own ``time.monotonic()`` readings to simulated time exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from types import TracebackType
from typing import Any, Self

import aiohttp
from aiohttp import web

from orchestrator.simulator import ScaledClock, SimulatorConfig, create_app


class SimHost:
    """Start the simulator in a child process; admin helpers over HTTP.

    Args:
        config: ``SimulatorConfig`` fields as JSON-ready values (``faults`` nested).
        time_scale: simulated seconds per real second.
    """

    def __init__(self, config: dict[str, Any], time_scale: float) -> None:
        self.config = config
        self.time_scale = time_scale
        self.url = ""
        self.start = 0.0
        self.mono0 = 0.0
        self._proc: asyncio.subprocess.Process | None = None
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.simhost", json.dumps(self.config), str(self.time_scale),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )
        assert self._proc.stdout is not None
        line = await asyncio.wait_for(self._proc.stdout.readline(), timeout=30)
        if not line:
            raise RuntimeError("the simulator process exited before it was ready")
        info = json.loads(line)
        self.url = f"http://127.0.0.1:{info['port']}"
        self.start, self.mono0 = info["start"], info["mono0"]
        self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            try:
                await asyncio.wait_for(self._proc.wait(), timeout=10)
            except TimeoutError:
                self._proc.kill()
                await self._proc.wait()

    def sim_time(self, mono: float) -> float:
        """Simulated epoch seconds at this process's ``time.monotonic()`` reading ``mono``."""
        return self.start + (mono - self.mono0) * self.time_scale

    def now(self) -> float:
        """Simulated epoch seconds now."""
        return self.sim_time(time.monotonic())

    async def _admin(self, method: str, path: str, body: Any = None) -> Any:
        assert self._session is not None
        async with self._session.request(method, self.url + path, json=body) as resp:
            data = await resp.json(content_type=None)
            if resp.status != 200:
                raise RuntimeError(f"{method} {path}: {resp.status} {data}")
            return data

    async def stats(self) -> dict[str, Any]:
        """``/_sim/stats`` of the default instance (see ``Simulator.stats``)."""
        data = await self._admin("GET", "/_sim/stats")
        return dict(next(iter(data["instances"].values())))

    async def patch_settings(self, patch: dict[str, Any]) -> dict[str, Any]:
        """``PATCH /_sim/settings`` (faults, limits) while it runs."""
        return dict(await self._admin("PATCH", "/_sim/settings", patch))

    async def foreign_jobs(self, count: int, duration_s: float) -> dict[str, Any]:
        """``POST /_sim/foreign-jobs``: another integration's jobs take queue places."""
        return dict(await self._admin("POST", "/_sim/foreign-jobs",
                                      {"count": count, "duration_s": duration_s}))


async def _serve(config_json: str, time_scale: float) -> None:
    config = SimulatorConfig.model_validate(json.loads(config_json))
    start, mono0 = time.time(), time.monotonic()
    clock = ScaledClock(time_scale, start=start)
    # ScaledClock reads its own monotonic origin; align ours with it.
    mono0 = clock._mono0
    app = create_app(config, clock=clock)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    print(json.dumps({"port": port, "start": start, "mono0": mono0, "time_scale": time_scale}),
          flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with contextlib.suppress(KeyboardInterrupt, SystemExit):
        asyncio.run(_serve(sys.argv[1], float(sys.argv[2])))
