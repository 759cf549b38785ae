"""Running the simulator as a server until cancelled (``leadflow simulator``)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import structlog
from aiohttp import web

from orchestrator.simulator.app import SIMULATOR_KEY, create_app
from orchestrator.simulator.config import SimulatorConfig

log = structlog.get_logger(__name__)

#: Default listening port of ``leadflow simulator``.
DEFAULT_PORT = 8780


async def serve(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    config_path: Path | None = None,
    time_scale: float | None = None,
) -> None:
    """Serve the simulator until cancelled or until SIGINT/SIGTERM arrives.

    Logs ``simulator_started`` with the URL, the default instance and the credentials, and
    ``simulator_stopped`` on the way out.

    Args:
        host: Interface to bind; loopback by default.
        port: TCP port; 0 picks a free one (the log line shows it).
        config_path: A TOML file for `SimulatorConfig.from_toml`; defaults apply without it.
        time_scale: Simulated seconds per real second (default 1, real time).

    Raises:
        OSError: The port cannot be bound or the config file cannot be read.
        pydantic.ValidationError: The config file is invalid.
    """
    config = SimulatorConfig.from_toml(config_path) if config_path else SimulatorConfig()
    app = create_app(config, time_scale=time_scale)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # not the main thread, or no support
            pass
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = runner.addresses[0][1] if runner.addresses else port
        sim = app[SIMULATOR_KEY]
        log.info(
            "simulator_started",
            url=f"http://{host}:{bound_port}",
            munchkin_id=sim.config.instances[0],
            instances=list(sim.config.instances),
            client_id=sim.config.client_id,
            client_secret=sim.config.client_secret,
            time_scale=1.0 if time_scale is None else time_scale,
        )
        await stop.wait()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        await runner.cleanup()
        log.info("simulator_stopped")
