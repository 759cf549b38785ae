"""The simulator assembled and served: ``create_app`` and ``serve`` (``leadflow simulator``).

``create_app`` puts Marketo's API (``app``) and the admin API (``admin``) on one aiohttp
application; ``serve`` runs it as a server until cancelled.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import structlog
from aiohttp import web

from orchestrator.simulator.admin import add_admin_routes
from orchestrator.simulator.app import SIMULATOR_KEY, add_marketo_routes
from orchestrator.simulator.clock import Clock
from orchestrator.simulator.config import SimulatorConfig
from orchestrator.simulator.engine import Simulator

log = structlog.get_logger(__name__)

#: Default listening port of ``leadflow simulator``.
DEFAULT_PORT = 8780


def create_app(
    config: SimulatorConfig | None = None,
    *,
    clock: Clock | None = None,
    time_scale: float | None = None,
) -> web.Application:
    """Build the simulator as an aiohttp application (docs/reference/marketo-api.md §8).

    Args:
        config: Settings; defaults to `SimulatorConfig()` (one instance ``123-ABC-456``,
            client ``leadflow-sim`` / ``leadflow-sim-secret``, Marketo's limits).
        clock: A `ManualClock` for tests, or any `Clock`; defaults to a `ScaledClock`.
        time_scale: Simulated seconds per real second for the default clock (default 1).

    Returns:
        The application; ``app[SIMULATOR_KEY]`` is its `Simulator`. The admin API lives
        under ``/_sim/``.
    """
    app = web.Application(client_max_size=1 << 20)
    app[SIMULATOR_KEY] = Simulator(config, clock, time_scale)
    add_admin_routes(app)
    add_marketo_routes(app)
    return app


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
